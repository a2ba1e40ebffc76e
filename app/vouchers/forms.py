"""Forms of the voucher platform settings."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.core.choices import options
from app.vouchers.platforms import PLATFORM_FIELDS, PLATFORM_LABELS


class PlatformAccountForm(FlaskForm):
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    platform = SelectField(_l("Platform"), choices=options(PLATFORM_LABELS.items()), validators=[DataRequired()])
    base_url = StringField(_l("API address"), validators=[DataRequired(), Length(max=255)])
    app_id = StringField(_l("Our id on the platform"), validators=[DataRequired(), Length(max=128)])
    store_ref = StringField(_l("Store on the platform"), validators=[DataRequired(), Length(max=128)])
    store_name = StringField(_l("Store name shown to the platform"), validators=[Optional(), Length(max=100)])
    secret_sign_key = PasswordField(PLATFORM_FIELDS["meituan"]["secrets"]["sign_key"], validators=[Optional(), Length(max=256)])
    secret_app_auth_token = PasswordField(PLATFORM_FIELDS["meituan"]["secrets"]["app_auth_token"],
                                          validators=[Optional(), Length(max=256)])
    secret_client_secret = PasswordField(PLATFORM_FIELDS["douyin"]["secrets"]["client_secret"],
                                         validators=[Optional(), Length(max=256)])

    def secrets(self) -> dict[str, str]:
        names = PLATFORM_FIELDS.get(self.platform.data, {}).get("secrets", {})
        return {name: self[f"secret_{name}"].data or "" for name in names}


class DealMappingForm(FlaskForm):
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    platform = SelectField(_l("Platform"), choices=options(PLATFORM_LABELS.items()), validators=[DataRequired()])
    deal_id = StringField(_l("Deal id on the platform"), validators=[DataRequired(), Length(max=64)])
    title = StringField(_l("Deal title"), validators=[DataRequired(), Length(max=200)])
    product_id = SelectField(_l("Fulfilled as product"), coerce=int, validators=[DataRequired()])
    quantity = IntegerField(_l("Units per use"), default=1, validators=[DataRequired(), NumberRange(min=1, max=100)])
