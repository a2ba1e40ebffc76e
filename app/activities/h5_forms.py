"""The form a gift's winner fills in on the H5 game page: where the gift goes.

It checks every field at once, so the customer sees all that is missing in one go, with the same
limits as `fulfilment.leave_address`, which stays the authority (its refusal is shown on the field
it names, in the customer's words: `REFUSAL_MESSAGES`). The phone must be a mainland mobile number
(11 digits starting 13–19; a +86 / 0086 prefix and separators are dropped).
"""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from app.core import crypto

MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
RECIPIENT = _l("Enter the recipient's name (at most 50 characters).")
PHONE = _l("Enter an 11-digit mainland mobile number.")
ADDRESS = _l("Enter the full delivery address (5 to 200 characters).")
REFUSAL_MESSAGES = {"recipient": RECIPIENT, "phone": PHONE, "address": ADDRESS,
                    "draw": _l("This prize does not wait for a delivery address (any more).")}


def _stripped(value):
    return value.strip() if isinstance(value, str) else value


def _phone(value):
    return crypto.normalise_phone(value) if isinstance(value, str) else value


class DeliveryAddressForm(FlaskForm):
    recipient = StringField(_l("Recipient"), filters=[_stripped],
                            validators=[DataRequired(message=RECIPIENT), Length(max=50, message=RECIPIENT)],
                            render_kw={"maxlength": 50, "autocomplete": "name"})
    phone = StringField(_l("Mobile number"), filters=[_phone],
                        validators=[DataRequired(message=PHONE), Regexp(MAINLAND_MOBILE, message=PHONE)],
                        render_kw={"inputmode": "tel", "maxlength": 20, "autocomplete": "tel"})
    address = TextAreaField(_l("Delivery address"), filters=[_stripped],
                            validators=[DataRequired(message=ADDRESS), Length(min=5, max=200, message=ADDRESS)],
                            render_kw={"maxlength": 200, "rows": 3, "autocomplete": "street-address"})
