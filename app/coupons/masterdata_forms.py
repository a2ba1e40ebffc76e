"""Forms of the master data screens. Each field's rule is the service's own check
(`app.coupons.masterdata`), so the form and the service cannot disagree."""
from __future__ import annotations

from typing import Any, Callable

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.core.choices import options
from app.coupons import masterdata
from app.coupons.masterdata import KIND_LABELS, PartyDetails


class ServiceCheck:
    """A validator that applies one of the service's checks to a field's value."""

    def __init__(self, check: Callable[[Any], Any]):
        self.check = check

    def __call__(self, form: Any, field: Any) -> None:
        try:
            self.check(field.data)
        except masterdata.MasterDataError as exc:
            raise ValidationError(str(exc)) from None


class InstitutionForm(FlaskForm):
    code = StringField(_l("Code"), validators=[InputRequired(_l("Enter the 8-digit code.")),
                                               ServiceCheck(masterdata.clean_code), Length(max=8)])
    name = StringField(_l("Name"), validators=[InputRequired(_l("Enter the name.")),
                                               Length(max=masterdata.NAME_MAX)])
    kind = SelectField(_l("Type"), choices=options(KIND_LABELS.items()), validators=[InputRequired()])
    contact_name = StringField(_l("Contact person"), validators=[Optional(), Length(max=masterdata.CONTACT_NAME_MAX)])
    contact_phone = StringField(_l("Contact phone"), validators=[Optional(), Length(max=30),
                                                                 ServiceCheck(masterdata.clean_phone)])

    def details(self) -> PartyDetails:
        return PartyDetails(code=self.code.data, name=self.name.data, kind=self.kind.data,
                            contact_name=self.contact_name.data, contact_phone=self.contact_phone.data)


class BankForm(InstitutionForm):
    standard_code = StringField(_l("Standard code"), validators=[Optional(), Length(max=20)],
                                description=_l("Letters, e.g. ICBC, CCB, BOC."))
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[InputRequired(_l("Choose the bank's organisation."))],
                         description=_l("The bank organisation whose operators work with this bank's activities."))

    def details(self) -> PartyDetails:
        details = super().details()
        details.standard_code = self.standard_code.data
        details.org_id = self.org_id.data
        return details


class PositionNumberForm(FlaskForm):
    number = StringField(_l("Position number"), validators=[InputRequired(_l("Enter the 23-digit position number.")),
                                                           ServiceCheck(masterdata.clean_position_number)])
    note = StringField(_l("Note"), validators=[Optional(), Length(max=masterdata.NOTE_MAX)])


class PositionNoteForm(FlaskForm):
    note = StringField(_l("Note"), validators=[Optional(), Length(max=masterdata.NOTE_MAX)])


class PositionBulkForm(FlaskForm):
    numbers = TextAreaField(_l("Position numbers, one per line"),
                            validators=[InputRequired(_l("Paste at least one position number, one per line."))],
                            render_kw={"rows": 8})
    note = StringField(_l("Note for all of them"), validators=[Optional(), Length(max=masterdata.NOTE_MAX)])
