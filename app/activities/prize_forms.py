"""Forms of the prize pool screen: a prize (added or edited inline) and stock added to one.

They only parse what was typed (yuan → fen, text → numbers); the rules live in
`app.activities.prizes`, which checks the parsed details and answers field by field.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, NumberRange, Optional

from app.core.choices import options
from app.members.forms import YuanField

from . import prizes
from .prize_models import WEIGHT_MAX, WEIGHT_MIN

KIND_CHOICES = options((kind, prizes.KIND_LABELS[kind]) for kind in ("coupon", "points", "cash", "gift"))
WHOLE = _l("Enter a whole number.")


def _optional_int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class PrizeForm(FlaskForm):
    name = StringField(_l("Prize name"), validators=[InputRequired(message=_l("Enter the prize's name."))])
    kind = SelectField(_l("Kind"), choices=KIND_CHOICES)
    coupon_activity_id = SelectField(_l("Coupon activity"), choices=[], validate_choice=False)
    points = IntegerField(_l("Points"), validators=[Optional()])
    cash = YuanField(_l("Cash (yuan)"), validators=[Optional()])
    stock_total = IntegerField(_l("Stock"), validators=[Optional()], render_kw={"min": 0})
    per_member_cap = IntegerField(_l("Per-member cap"), validators=[Optional()],
                                  render_kw={"min": 1, "placeholder": _l("No cap")})
    weight = IntegerField(_l("Weight"), validators=[InputRequired(message=WHOLE)],
                          render_kw={"min": WEIGHT_MIN, "max": WEIGHT_MAX})
    sort_order = IntegerField(_l("Order"), validators=[InputRequired(message=WHOLE)],
                              render_kw={"min": 1, "max": prizes.ORDER_MAX})
    colour = StringField(_l("Colour"), default="#ff6600", render_kw={"type": "color"})
    enabled = BooleanField(_l("On the wheel"), default=True)

    def offer_coupons(self, activities) -> None:
        coupons = [(str(a.id), f"{a.code} · {a.name}") for a in activities]
        self.coupon_activity_id.choices = options([("", "—"), *coupons])

    def details(self) -> prizes.PrizeDetails:
        return prizes.PrizeDetails(
            name=self.name.data, kind=self.kind.data, coupon_activity_id=_optional_int(self.coupon_activity_id.data),
            points=self.points.data, cash_fen=self.cash.data, stock_total=self.stock_total.data,
            per_member_cap=self.per_member_cap.data, weight=self.weight.data, sort_order=self.sort_order.data,
            colour=self.colour.data, enabled=bool(self.enabled.data))

    def fill(self, prize) -> None:
        """The form as the prize is now (the start of an inline edit)."""
        for name in ("name", "kind", "points", "per_member_cap", "weight", "sort_order", "colour", "enabled"):
            getattr(self, name).data = getattr(prize, name)
        self.coupon_activity_id.data = str(prize.coupon_activity_id or "")
        self.cash.data = prize.cash_fen

    def show_errors(self, errors: dict[str, str]) -> None:
        for name, message in errors.items():
            field = getattr(self, {"cash_fen": "cash"}.get(name, name), None)
            if field is not None:
                field.errors = [message]


class StockForm(FlaskForm):
    amount = IntegerField(_l("Units to add"), validators=[InputRequired(message=WHOLE),
                                                          NumberRange(min=1, message=_l("Add at least one unit."))],
                          render_kw={"min": 1})
