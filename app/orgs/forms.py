"""Organisation forms."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from app.core.choices import options
from app.orgs.models import ORG_KINDS

KIND_LABELS = {
    "platform": _l("Platform"),
    "bank": _l("Bank"),
    "merchant": _l("Merchant"),
    "store": _l("Store"),
}


class OrganisationForm(FlaskForm):
    parent_id = SelectField(_l("Parent organisation"), coerce=int, validators=[DataRequired()])
    kind = SelectField(_l("Kind"), choices=options((k, KIND_LABELS[k]) for k in ORG_KINDS if k != "platform"),
                       validators=[DataRequired()])
    code = StringField(_l("Code"), validators=[
        DataRequired(), Length(min=2, max=32),
        Regexp(r"^[A-Za-z0-9_-]+$", message=_l("Letters, digits, '_' and '-' only."))])
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=100)])
    contact_name = StringField(_l("Contact person"), validators=[Optional(), Length(max=50)])
    contact_phone = StringField(_l("Contact phone"), validators=[
        Optional(), Length(max=30), Regexp(r"^[0-9+\- ]+$", message=_l("Digits, '+', '-' and spaces only."))])


class OrganisationEditForm(OrganisationForm):
    parent_id = None  # an organisation does not move in the tree
    kind = None
