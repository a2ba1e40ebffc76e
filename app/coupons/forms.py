"""Forms of the coupon screens and the words shown for tunnels, channels, coupon types and statuses.

The forms only parse what was typed (yuan → fen, percent → basis points, 折 → basis points,
Shanghai time → UTC); the rules live in `app.coupons.activities`, which checks the parsed details.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from app.core.choices import options
from app.core.timeutil import BUSINESS_TZ, to_local
from app.coupons import activities
from app.members.forms import PercentField, YuanField

TUNNEL_LABELS = {"yunshuhui": _l("Yunshuhui"), "internal": _l("Internal"), "direct": _l("Direct"),
                 "other": _l("Other")}
CHANNEL_LABELS = {"wechat": _l("WeChat"), "alipay": _l("Alipay"), "unionpay": _l("UnionPay")}
COUPON_TYPE_LABELS = {"threshold": _l("Threshold discount"), "discount": _l("Percentage discount"),
                      "cash": _l("Cash voucher")}
VALID_TYPE_LABELS = {"absolute": _l("Within the activity time"), "relative": _l("Days after claiming")}
SETTLE_TYPE_LABELS = {"bank": _l("Borne by the bank"), "merchant": _l("Borne by the merchant"),
                      "proportional": _l("Shared by ratio")}
STATUS_LABELS = {"not_started": _l("Not started"), "running": _l("Running"), "ended": _l("Ended"),
                 "terminated": _l("Terminated")}
STATUS_COLOURS = {"not_started": "info", "running": "success", "ended": "secondary", "terminated": "danger"}
ENABLED_LABELS = {True: _l("In effect"), False: _l("Disabled")}


def discount_label(bp: int | None) -> str:
    """9000 → '9折' in Chinese, 'pays 90% of the price' in English.

    折 is counted in tenths of the price paid, a way of saying it other languages do not share, so
    Chinese gets its own words here rather than a translation of the English sentence."""
    if bp is None:
        return ""
    if str(get_locale() or "").startswith("zh"):
        return f"{Decimal(bp) / 1000:.2f}".rstrip("0").rstrip(".") + "折"
    percent = f"{Decimal(bp) / 100:.2f}".rstrip("0").rstrip(".")
    return _("pays %(percent)s%% of the price", percent=percent)


def _optional_int(value) -> int | None:
    if value in (None, "", "None"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class DiscountField(StringField):
    """A discount entered in 折 ('9', '8.5'), held as basis points of the price paid (9000, 8500)."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else f"{Decimal(self.data) / 1000:.2f}".rstrip("0").rstrip(".")

    def process_formdata(self, valuelist: list[str]) -> None:
        raw = (valuelist[0] if valuelist else "").strip().rstrip("折").strip()
        if not raw:
            self.data = None
            return
        try:
            bp = Decimal(raw) * 1000
        except InvalidOperation:
            bp = Decimal("NaN")
        if not bp.is_finite() or bp != bp.to_integral_value():
            self.data = None
            raise ValueError(str(_l("Enter the discount in 折 with at most two decimals, e.g. 8.5.")))
        self.data = int(bp)


class ShanghaiDateTimeField(StringField):
    """A `datetime-local` input read as Asia/Shanghai time, held as an aware UTC datetime."""

    FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return to_local(self.data).strftime("%Y-%m-%dT%H:%M:%S") if self.data else ""

    def process_formdata(self, valuelist: list[str]) -> None:
        raw = (valuelist[0] if valuelist else "").strip()
        self.data = None
        if not raw:
            return
        for fmt in self.FORMATS:
            try:
                local = datetime.strptime(raw, fmt)
            except ValueError:
                continue
            self.data = local.replace(tzinfo=BUSINESS_TZ).astimezone(timezone.utc)
            return
        raise ValueError(str(_l("Enter a date and time as YYYY-MM-DD HH:mm:ss.")))


class Marked:
    """Marks a field as required (the star and the `required` attribute); the service's rule says
    what is missing, so a blank field gets a message that names it."""

    field_flags = {"required": True}

    def __call__(self, form, field) -> None:
        return None


NEEDED = [Optional(), Marked()]  # blank: no parsing error, the service speaks; else: parsed


class CouponActivityForm(FlaskForm):
    """Add a coupon activity. Required marks follow the rules; the rules themselves are the service's."""

    name = StringField(_l("Activity name"), validators=[*NEEDED, Length(max=activities.NAME_MAX)])
    theme = StringField(_l("Theme activity"), validators=[Optional()])
    org_id = SelectField(_l("Bank"), coerce=_optional_int, validate_choice=False)
    institution_id = IntegerField(_l("Institution"), validators=[Optional()])  # the master-data picker's id
    tunnel = SelectField(_l("Tunnel"), choices=options(TUNNEL_LABELS.items()), default="yunshuhui")
    channel = SelectField(_l("Channel"), choices=options(CHANNEL_LABELS.items()), default="wechat")
    coupon_type = SelectField(_l("Coupon type"), choices=options(COUPON_TYPE_LABELS.items()), default="threshold")
    batch_no = StringField(_l("Channel batch no."), validators=NEEDED,
                           render_kw={"maxlength": 9, "inputmode": "numeric", "placeholder": "123456789"})
    upstream_activity_id = StringField(_l("云数汇 activity id"), validators=[Optional()],
                                       render_kw={"maxlength": 10, "inputmode": "numeric"})
    owner_id = StringField(_l("云数汇 owner id"), validators=[Optional()],
                           render_kw={"maxlength": 8, "inputmode": "numeric"})
    promotion_id = StringField(_l("Promotion id"), validators=[Optional()], render_kw={"maxlength": 32})
    show_in_miniprogram = BooleanField(_l("Show in the mini-program"), default=True)
    promo_amount = YuanField(_l("Face value (yuan)"), validators=NEEDED,
                             render_kw={"inputmode": "decimal", "placeholder": "10.00"})
    discount_rate = DiscountField(_l("Discount (折)"), validators=[Optional()],
                                  render_kw={"inputmode": "decimal", "placeholder": "9"})
    threshold = YuanField(_l("Threshold (yuan)"), validators=NEEDED,
                          render_kw={"inputmode": "decimal", "placeholder": "0"})
    start_at = ShanghaiDateTimeField(_l("Start"), validators=NEEDED,
                                     render_kw={"type": "datetime-local", "step": 1})
    end_at = ShanghaiDateTimeField(_l("End"), validators=NEEDED,
                                   render_kw={"type": "datetime-local", "step": 1})
    valid_type = SelectField(_l("Coupon validity"), choices=options(VALID_TYPE_LABELS.items()), default="absolute")
    valid_days = IntegerField(_l("Valid for (days)"), validators=[Optional()], render_kw={"min": 1})
    issue_total = IntegerField(_l("Issue total"), validators=NEEDED, render_kw={"min": 1})
    per_member_limit = IntegerField(_l("Per-customer limit"), validators=NEEDED, default=1,
                                    render_kw={"min": 1})
    settled = BooleanField(_l("Settled with the merchant"))
    settle_type = SelectField(_l("Who bears the cost"), choices=options([("", "—"), *SETTLE_TYPE_LABELS.items()]),
                              validate_choice=False)
    settle_rate = PercentField(_l("Bank's share (%)"), validators=[Optional()],
                               render_kw={"inputmode": "decimal", "placeholder": "50"})
    description = TextAreaField(_l("Usage notes"), validators=[Optional(), Length(max=activities.DESCRIPTION_MAX)],
                                render_kw={"rows": 2})
    usage_rules = TextAreaField(_l("Usage rules"), validators=[Optional(), Length(max=activities.USAGE_RULES_MAX)],
                                render_kw={"rows": 3})

    def details(self) -> activities.ActivityDetails:
        return activities.ActivityDetails(
            name=self.name.data, theme_no=self._theme_no(), org_id=self._value_of("org_id"),
            institution_id=self.institution_id.data, tunnel=self._value_of("tunnel", "yunshuhui"),
            channel=self._value_of("channel", "wechat"), coupon_type=self._value_of("coupon_type", "threshold"),
            batch_no=self._value_of("batch_no"), upstream_activity_id=self.upstream_activity_id.data,
            owner_id=self.owner_id.data, promotion_id=self.promotion_id.data, start_at=self.start_at.data,
            end_at=self.end_at.data, promo_amount_fen=self.promo_amount.data, discount_bp=self.discount_rate.data,
            threshold_fen=self.threshold.data, valid_type=self.valid_type.data, valid_days=self.valid_days.data,
            issue_total=self.issue_total.data, per_member_limit=self.per_member_limit.data,
            show_in_miniprogram=bool(self.show_in_miniprogram.data), settled=bool(self.settled.data),
            settle_type=self.settle_type.data or None, settle_rate_bp=self.settle_rate.data,
            description=self.description.data, usage_rules=self.usage_rules.data)

    def _value_of(self, name: str, default=None):
        """A field's data, or `default` on the edit form, which has no such field (it is locked)."""
        return self._fields[name].data if name in self._fields else default

    def _theme_no(self) -> str | None:
        text = (self._value_of("theme") or "").strip()
        return activities.theme_no_in(text) or (text or None)

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's messages beside their fields (a field with an error of its own keeps it)."""
        for name, message in errors.items():
            target = self._fields.get(name) or self._fields["name"]
            if not target.errors:
                target.errors = [*target.errors, message]


class CouponActivityEditForm(CouponActivityForm):
    """Edit a coupon activity: the theme activity, bank, code, tunnel, channel, coupon type and batch
    no. are fixed once it exists (issued coupons and the bank's API calls depend on them)."""

    theme = None
    org_id = None
    tunnel = None
    channel = None
    coupon_type = None
    batch_no = None

    @classmethod
    def for_activity(cls, activity, **kwargs) -> "CouponActivityEditForm":
        """The edit form filled from an activity (its locked fields are shown, not posted)."""
        data = {name: getattr(activity, name) for name in activities.EDITABLE_FIELDS}
        data.update(promo_amount=activity.promo_amount_fen, threshold=activity.threshold_fen,
                    discount_rate=activity.discount_bp, settle_rate=activity.settle_rate_bp,
                    settle_type=activity.settle_type or "")
        return cls(data=data, **kwargs)


def fill_choices(form: CouponActivityForm, banks: list[tuple[int, str]]) -> None:
    """The options of the bank select (the add form's; the edit form has none)."""
    if form.org_id is not None:
        form.org_id.choices = options([("", "—"), *banks])

