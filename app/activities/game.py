"""The H5 game of a theme activity as its customer sees it: what the page shows and one spin.

- `page_of(theme, open_id)`: the activity (name, time window, rules, background), its wheel (the
  prizes on it, drawn by `wheel_drawing`), whether the customer may spin now and, if not, why in
  the customer's words, the draws left (in total and today) and "my prizes" with the state of each.
- `spin(theme, open_id, key)`: one draw through the engine (`draw.draw`, channel "h5"; the browser's
  key makes a retried request the same draw) and what the page needs to show it: where the wheel
  stops, the prize in words, what happens next, the draws left and whether another spin is possible.
  A refusal is `SpinRefused` with the engine's code and a message for the customer.

The wheel stops on the prize awarded: when the pick's last unit went to someone else a moment ago,
that is the "thanks for taking part" slice, so the wheel never shows a prize the customer did not
get. No `request` here; the customer is the openid the view found in the signed session.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select

from app.core import crypto
from app.core.money import format_fen
from app.core.timeutil import format_local, utcnow
from app.coupons.forms import discount_label
from app.coupons.models import CouponActivity, CouponIssue, PartnerBank
from app.extensions import db

from . import backgrounds, draw, wheel_drawing
from .prizes import on_the_wheel
from .models import ThemeActivity
from .prize_models import Prize, PrizeDelivery, ThemeDraw

THEME_NO = re.compile(r"^\d{10}$")
TIME_FORMAT = "%Y-%m-%d %H:%M"
READY = "READY"

# The engine's refusal codes (and the page's own) in the customer's words.
_REFUSALS = {
    "ACTIVITY_PAUSED": (_l("Paused"), _l("The activity is paused for the moment. Please come back later.")),
    "ACTIVITY_ENDED": (_l("Ended"), _l("The activity has ended. Thank you for your interest!")),
    "ACTIVITY_NOT_STARTED": (_l("Not started yet"), None),  # the message names the start time
    "DRAWS_NOT_ENABLED": (_l("Not open yet"), _l("The prize wheel is not open yet. Please come back later.")),
    "NOT_ELIGIBLE": (_l("Not open"), _l("This activity is not open for taking part.")),
    "PRIZES_NOT_CONFIGURED": (_l("Not open yet"), _l("The prizes are being prepared. Please come back later.")),
    "TOTAL_LIMIT_REACHED": (_l("No draws left"), _l("You have used all your draws in this activity.")),
    "DAILY_LIMIT_REACHED": (_l("No draws left today"), _l("You have used today's draws. Come back tomorrow!")),
    "THEME_NOT_FOUND": (_l("Not available"), _l("This activity does not exist.")),
    "SIGN_IN_REQUIRED": (_l("Spin now"), _l("Please open the activity again to confirm who you are.")),
    "RATE_LIMITED": (_l("Spin now"), _l("Too many tries in a short time. Please wait a moment.")),
}
_SOMETHING_WRONG = (_l("Spin now"), _l("Something went wrong. Please reload the page and try again."))

_NEXT_STEPS = {
    "points": _l("The points will be credited to your account shortly."),
    "cash": _l("The cash will be credited to your account shortly."),
    "coupon": _l("The coupon is being issued to you; you will find it in your WeChat card wallet."),
    "gift": _l("Leave your delivery address under My prizes, and we will send the gift to you."),
    "thanks": _l("Thank you for taking part. Better luck next time!"),
}


class SpinRefused(Exception):
    """No draw: the engine's (or the page's) status and code, and what the customer is told."""

    def __init__(self, status: int, code: str, message: str, spin: "SpinState | None" = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.spin = status, code, message, spin


@dataclass(frozen=True)
class SpinState:
    """Whether the Spin button works now; if not, a short label for the button and why."""

    code: str  # READY or a refusal code
    label: str
    message: str

    @property
    def can_spin(self) -> bool:
        return self.code == READY

    def document(self) -> dict:
        return {"canSpin": self.can_spin, "code": self.code, "label": self.label, "message": self.message}


@dataclass(frozen=True)
class MyPrize:
    """One prize the customer won, and where its fulfilment stands, in the customer's words."""

    draw_no: str
    name: str
    kind: str
    text: str
    drawn_at: datetime
    state: str  # pending, credited, issuing, issued, failed, awaiting_address, address_given, shipped
    label: str
    tone: str  # ok, wait, action, fail: the badge's colour
    tracking_no: str | None = None

    @property
    def awaits_address(self) -> bool:
        return self.state == "awaiting_address"


@dataclass(frozen=True)
class GamePage:
    theme: ThemeActivity
    bank_name: str | None
    wheel: list[wheel_drawing.Segment]
    draws_left: int | None  # None: no lifetime cap
    draws_left_today: int | None  # None: no daily cap
    spin: SpinState
    prizes: list[MyPrize]
    has_background: bool
    coupons: list["CouponOffer"]

    @property
    def window(self) -> tuple[str, str]:
        return format_local(self.theme.start_at, TIME_FORMAT), format_local(self.theme.end_at, TIME_FORMAT)


@dataclass(frozen=True)
class CouponOffer:
    """A coupon activity of the theme shown on its page (§3.3: those marked "show in mini-program")."""

    name: str
    channel: str
    value: str  # ¥10.00 off orders over ¥50.00, pays 90% of the price, a ¥10.00 voucher
    validity: str


@dataclass(frozen=True)
class SpinResult:
    outcome: draw.DrawOutcome
    text: str
    next_step: str
    stop_angle: float | None  # None: the prize is not on the wheel as drawn now
    spin: SpinState

    def document(self) -> dict:
        prize = self.outcome.prize
        return {"drawNo": self.outcome.draw_no, "won": self.outcome.won, "replayed": self.outcome.replayed,
                "prize": {"id": prize.id, "name": prize.name, "kind": prize.kind, "text": self.text},
                "nextStep": self.next_step, "stopAngle": self.stop_angle, "drawsLeft": self.outcome.draws_left,
                "drawsLeftToday": self.outcome.draws_left_today, "spin": self.spin.document()}


# --- finding the activity ---------------------------------------------------------------------------


def find_theme(theme_no: str) -> ThemeActivity | None:
    """A theme activity by its public 10-digit id (None for anything else)."""
    if not THEME_NO.match(theme_no or ""):
        return None
    return db.session.execute(select(ThemeActivity).where(ThemeActivity.theme_no == theme_no)).scalar_one_or_none()


_IDENTITY = select(ThemeActivity.id, ThemeActivity.org_id).where(ThemeActivity.theme_no == bindparam("theme_no"))


def theme_identity(theme_no: str) -> tuple[int, int] | None:
    """(id, bank's organisation) of a theme activity by its 10-digit id: all a spin needs before the
    engine reads the activity itself (loading the whole row here would be done twice)."""
    if not THEME_NO.match(theme_no or ""):
        return None
    row = db.session.execute(_IDENTITY, {"theme_no": theme_no}).one_or_none()
    return (row.id, row.org_id) if row else None


def bank_of(theme: ThemeActivity) -> PartnerBank | None:
    """The activity's bank (whose 云数汇 account identifies its customers), if it is in business."""
    if theme.partner_bank_id is None:
        return None
    bank = db.session.get(PartnerBank, theme.partner_bank_id)
    return bank if bank is not None and bank.status == "normal" and bank.org_id == theme.org_id else None


# --- the page ---------------------------------------------------------------------------------------


def page_of(theme: ThemeActivity, open_id: str, now: datetime | None = None) -> GamePage:
    now = now or utcnow()
    prizes = on_the_wheel(theme)
    left = draw.draws_left_of(theme, _hash(open_id), now)
    bank = bank_of(theme)
    return GamePage(theme=theme, bank_name=bank.name if bank else None, wheel=wheel_drawing.segments(prizes),
                    draws_left=left[0], draws_left_today=left[1],
                    spin=spin_state(theme, left, any(p.is_fallback for p in prizes), now),
                    prizes=my_prizes(theme, open_id), has_background=backgrounds.exists(theme.background_image),
                    coupons=coupon_offers(theme, now))


def spin_state(theme: ThemeActivity, left: tuple[int | None, int | None], prizes_ready: bool,
               now: datetime | None = None) -> SpinState:
    """Whether the customer may spin now (the engine's own checks, read without drawing)."""
    refusal = draw.theme_refusal(theme, now)
    if refusal is not None:
        code = refusal.code
    elif not prizes_ready:
        code = "PRIZES_NOT_CONFIGURED"
    elif left[0] == 0:
        code = "TOTAL_LIMIT_REACHED"
    elif left[1] == 0:
        code = "DAILY_LIMIT_REACHED"
    else:
        return SpinState(READY, _("Spin now"), "")
    label, _message = _REFUSALS[code]
    return SpinState(code, str(label), customer_message(code, theme))


def customer_message(code: str, theme: ThemeActivity | None = None) -> str:
    """What the customer is told for a refusal code."""
    if code == "ACTIVITY_NOT_STARTED" and theme is not None:
        return _("The activity starts at %(time)s. See you then!", time=format_local(theme.start_at, TIME_FORMAT))
    return str(_REFUSALS.get(code, _SOMETHING_WRONG)[1] or _SOMETHING_WRONG[1])


CHANNEL_NAMES = {"wechat": _l("WeChat Pay"), "alipay": _l("Alipay"), "unionpay": _l("UnionPay QuickPass")}


def coupon_offers(theme: ThemeActivity, now: datetime | None = None) -> list[CouponOffer]:
    """The theme's coupon activities its page shows: marked to be shown, in effect and not over yet."""
    now = now or utcnow()
    activities = db.session.execute(
        select(CouponActivity).where(CouponActivity.theme_activity_id == theme.id,
                                     CouponActivity.org_id == theme.org_id,
                                     CouponActivity.show_in_miniprogram.is_(True), CouponActivity.enabled.is_(True),
                                     CouponActivity.terminated_at.is_(None), CouponActivity.end_at > now)
        .order_by(CouponActivity.start_at, CouponActivity.id)).scalars()
    return [CouponOffer(a.name, str(CHANNEL_NAMES.get(a.channel, a.channel)), coupon_value(a), coupon_validity(a))
            for a in activities]


def coupon_value(activity: CouponActivity) -> str:
    """A coupon's worth in the customer's words."""
    if activity.coupon_type == "discount":
        return discount_label(activity.discount_bp)
    amount = format_fen(activity.promo_amount_fen)
    if activity.coupon_type == "threshold" and activity.threshold_fen:
        return _("%(amount)s off orders over %(threshold)s", amount=amount, threshold=format_fen(activity.threshold_fen))
    return _("%(amount)s voucher", amount=amount)


def coupon_validity(activity: CouponActivity) -> str:
    if activity.valid_type == "relative" and activity.valid_days:
        return _("Valid for %(days)s days after you receive it", days=activity.valid_days)
    return _("Valid until %(time)s", time=format_local(activity.end_at, TIME_FORMAT))


# --- a spin -----------------------------------------------------------------------------------------


def spin(theme_id: int, open_id: str, key: str, now: datetime | None = None) -> SpinResult:
    """One draw for the customer (committed by the engine); raises SpinRefused."""
    try:
        outcome = draw.draw(theme_id, open_id, key, channel="h5", now=now)
    except draw.DrawRefused as exc:
        theme = db.session.get(ThemeActivity, theme_id)
        state = None
        if theme is not None and exc.code not in ("THEME_NOT_FOUND", "INVALID_OPEN_ID"):
            state = spin_state(theme, draw.draws_left_of(theme, _hash(open_id), now), True, now)
        raise SpinRefused(exc.status, exc.code, customer_message(exc.code, theme), state) from exc
    theme = outcome.theme or db.session.get(ThemeActivity, theme_id)  # a replay did not read it
    wheel = wheel_drawing.segments(list(outcome.wheel) or on_the_wheel(theme))  # a replay did not read the wheel
    left = (outcome.draws_left, outcome.draws_left_today)
    return SpinResult(outcome, prize_text(outcome.prize), next_step(outcome.prize.kind),
                      wheel_drawing.stop_angle(wheel, outcome.prize.id), spin_state(theme, left, True, now))


def next_step(kind: str) -> str:
    """What happens after winning a prize of this kind, in the customer's words."""
    return str(_NEXT_STEPS[kind])


def prize_text(prize) -> str:
    """A prize in a few words: 100 points, ¥5.00 cash, or its name (coupons, gifts, the fallback). The
    name itself when it already says as much ("188积分"), so the page does not show it twice."""
    if prize.kind == "points" and prize.points:
        text = _("%(points)s points", points=prize.points)
    elif prize.kind == "cash" and prize.cash_fen:
        text = _("%(amount)s cash", amount=format_fen(prize.cash_fen))
    else:
        return prize.name
    return prize.name if "".join(text.split()) == "".join(prize.name.split()) else text


# --- my prizes --------------------------------------------------------------------------------------


def my_prizes(theme: ThemeActivity, open_id: str) -> list[MyPrize]:
    """The prizes the customer won in this activity (newest first), with the state of each."""
    won = [(record, prize) for record, prize in draw.draws_of(theme.id, open_id) if record.won]
    ids = [record.id for record, _prize in won]
    deliveries = {d.draw_id: d for d in db.session.execute(
        select(PrizeDelivery).where(PrizeDelivery.draw_id.in_(ids))).scalars()} if ids else {}
    issue_ids = [record.coupon_issue_id for record, _prize in won if record.coupon_issue_id]
    issues = {i.id: i for i in db.session.execute(
        select(CouponIssue).where(CouponIssue.id.in_(issue_ids))).scalars()} if issue_ids else {}
    return [_my_prize(record, prize, deliveries.get(record.id), issues.get(record.coupon_issue_id))
            for record, prize in won]


def _my_prize(record: ThemeDraw, prize: Prize, delivery: PrizeDelivery | None, issue: CouponIssue | None) -> MyPrize:
    state, label, tone = fulfilment_in_words(prize.kind, record.fulfilment_status, issue)
    return MyPrize(draw_no=record.draw_no, name=prize.name, kind=prize.kind, text=prize_text(prize),
                   drawn_at=record.drawn_at, state=state, label=label, tone=tone,
                   tracking_no=delivery.tracking_no if delivery and state == "shipped" else None)


def fulfilment_in_words(kind: str, status: str, issue: CouponIssue | None) -> tuple[str, str, str]:
    """(state, label, tone) of a won prize's fulfilment: the draw's status, and for a coupon the
    coupon pipeline's issue (queued and processing are "being issued" until 云数汇 confirms)."""
    if status == "failed" or (issue is not None and issue.status == "failed"):
        return "failed", _("Could not be issued; please contact customer service"), "fail"
    if kind == "coupon":
        if issue is not None and issue.status == "succeeded":
            return "issued", _("Coupon issued"), "ok"
        return "issuing", _("Coupon being issued"), "wait"
    if status == "fulfilled":
        return "credited", _("Points credited") if kind == "points" else _("Cash credited"), "ok"
    if status == "awaiting_address":
        return "awaiting_address", _("Waiting for your delivery address"), "action"
    if status == "address_given":
        return "address_given", _("Address received; to be shipped"), "wait"
    if status == "shipped":
        return "shipped", _("Shipped"), "ok"
    return "pending", _("Being credited") if kind in ("points", "cash") else _("Being prepared"), "wait"


def _hash(open_id: str) -> str:
    return crypto.lookup_hash(open_id)
