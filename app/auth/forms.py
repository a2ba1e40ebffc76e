"""Forms of login and operator management."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

PASSWORD_RULE = _l("At least 10 characters, with letters and digits.")


def strong_password(form, field) -> None:
    value = field.data or ""
    if len(value) < 10 or not any(c.isalpha() for c in value) or not any(c.isdigit() for c in value):
        raise ValidationError(PASSWORD_RULE)


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=50)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class OperatorForm(FlaskForm):
    username = StringField(
        _l("Username"),
        validators=[DataRequired(), Length(min=3, max=50),
                    Regexp(r"^[A-Za-z0-9_.-]+$", message=_l("Letters, digits, '_', '.' and '-' only."))],
    )
    display_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=50)])
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    roles = MultiCheckboxField(_l("Roles"), validators=[DataRequired(message=_l("Choose at least one role."))])
    password = PasswordField(_l("Initial password"), validators=[DataRequired(), strong_password])


class OperatorEditForm(OperatorForm):
    password = None  # passwords are changed by "reset password" only


class ResetPasswordForm(FlaskForm):
    password = PasswordField(_l("New password"), validators=[DataRequired(), strong_password])
    confirm = PasswordField(_l("Repeat the new password"),
                            validators=[DataRequired(), EqualTo("password", message=_l("The two passwords differ."))])


class ChangeOwnPasswordForm(ResetPasswordForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired()])


class EmptyForm(FlaskForm):
    """A form with only the CSRF token, for buttons that change state."""


