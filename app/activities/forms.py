"""Forms of the theme activity screens and the words shown for their statuses.

The forms only parse what was typed (Shanghai time → UTC, text → numbers); the rules live in
`app.activities.services`, which checks the parsed details. The institution, bank and position
number come from the master-data pickers (`templates/macros/pickers.html`) as hidden values.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, StringField, TextAreaField
from wtforms.validators import Length, NumberRange, Optional

from app.activities import services
from app.activities.models import ThemeActivity
from app.coupons.forms import NEEDED, ShanghaiDateTimeField

STATUS_LABELS = {"active": _l("Active"), "paused": _l("Paused"), "expired": _l("Expired")}
STATUS_COLOURS = {"active": "success", "paused": "warning", "expired": "secondary"}
WHEEL_LABELS = {"yes": _l("Wheel on"), "no": _l("Wheel off")}
LINK_OUTCOME_LABELS = {"added": _l("Added"), "already": _l("Already in the list"),
                       "unknown": _l("No such code in the master data"), "disabled": _l("Disabled in the master data"),
                       "invalid": _l("Not an 8-digit code"), "repeated": _l("Repeats an earlier row")}

_LIMIT = [Optional(), NumberRange(min=0, max=services.LIMIT_MAX,
                                  message=_l("Enter a whole number from 0 to 999, or leave it empty for no cap."))]


def _id(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


class ThemeActivityForm(FlaskForm):
    """Add a theme activity. Required marks follow the rules; the rules themselves are the service's."""

    name = StringField(_l("Theme name"), validators=[*NEEDED, Length(
        max=services.NAME_MAX, message=_l("The name may have at most %(max)d characters."))])
    position_no = StringField(_l("Position number"), validators=[Optional()])
    institution_id = StringField(_l("Enrolling institution"), validators=NEEDED)
    partner_bank_id = StringField(_l("Bank"), validators=NEEDED)
    start_at = ShanghaiDateTimeField(_l("Start"), validators=NEEDED, render_kw={"type": "datetime-local", "step": 1})
    end_at = ShanghaiDateTimeField(_l("End"), validators=NEEDED, render_kw={"type": "datetime-local", "step": 1})
    rules = TextAreaField(_l("Participation rules"), validators=[*NEEDED, Length(
        max=services.RULES_MAX, message=_l("The rules may have at most %(max)d characters."))], render_kw={"rows": 5})
    participation_limit = IntegerField(_l("Participations per customer, in all"), validators=_LIMIT,
                                       render_kw={"min": 0, "max": services.LIMIT_MAX, "placeholder": _l("No cap")})
    daily_limit = IntegerField(_l("Participations per customer, per day"), validators=_LIMIT,
                               render_kw={"min": 0, "max": services.LIMIT_MAX, "placeholder": _l("No cap")})
    background_ref = HiddenField()
    background_error: str | None = None  # the image's problem (it has no WTForms field of its own)

    def details(self) -> services.ThemeDetails:
        return services.ThemeDetails(
            name=self.name.data, position_no=self.position_no.data, institution_id=self._id_of("institution_id"),
            partner_bank_id=self._id_of("partner_bank_id"), start_at=self.start_at.data, end_at=self.end_at.data,
            rules=self.rules.data, participation_limit=self.participation_limit.data,
            daily_limit=self.daily_limit.data, background_ref=self.background_ref.data)

    def _id_of(self, name: str) -> int | None:
        """A picker's chosen id, or None on the edit form, which has no such field (it is locked)."""
        return _id(self._fields[name].data) if name in self._fields else None

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's messages beside their fields (a field with an error of its own keeps it).
        The background has no WTForms field: its message is kept in `background_error`."""
        for name, message in errors.items():
            if name == "background":
                self.background_error = self.background_error or message
                continue
            target = self._fields.get(name) or self._fields["name"]
            if not target.errors:
                target.errors = [*target.errors, message]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.background_error)


class ThemeActivityEditForm(ThemeActivityForm):
    """Edit a theme activity: the id, the institution and the bank are fixed once it exists."""

    institution_id = None
    partner_bank_id = None

    @classmethod
    def for_theme(cls, theme: ThemeActivity, **kwargs) -> "ThemeActivityEditForm":
        data = {name: getattr(theme, name) for name in services.EDITABLE_FIELDS}
        return cls(data={**data, "background_ref": theme.background_image}, **kwargs)
