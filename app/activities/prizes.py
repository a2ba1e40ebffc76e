"""The prize pool of a theme activity: its prizes (the wheel's segments), their rules, the chance of
each, and stock added while the activity runs. Every change is audited; no `request` here.

Rules (also in the README design notes):
- a pool holds at most 12 prizes (the wheel's 12 segments), one of them the "thanks for taking
  part" fallback, created with the pool (`ensure_fallback`) and never removed or re-kinded; it has
  no stock and is given whenever the wheel lands on it or on a prize whose stock (or the
  customer's cap) was taken a moment before;
- kinds: coupon (a coupon activity linked to this theme activity; at most 10 distinct ones),
  points, cash (entered in yuan, kept in fen) or gift; the kind and the coupon link are fixed once
  a unit has been won;
- weight 1–100; the chance shown is the weight ÷ the total weight of the prizes a draw could land
  on now (enabled, with stock left, and the fallback) — an exhausted prize shows 0 %;
- stock is set when the prize is added and may then only be added to (`add_stock`: one atomic
  `UPDATE … SET stock_total + n, stock_remaining + n`, so draws running at that moment are never
  disturbed); a coupon prize's remaining stock, with the other prizes of the same coupon
  activity, may not exceed the coupons that activity has left to issue, and its per-member cap
  may not exceed the activity's per-member limit — otherwise a win could not be fulfilled;
- order numbers are unique within a pool (1–99); colours are #RRGGBB;
- a new coupon link needs a coupon activity that has not ended or been terminated;
- while the wheel is on (`ThemeActivity.wheel_enabled`): no coupon activity that is not on the
  wheel yet may be put on it (edit the ones there, or turn the wheel off first), and no prize may
  be taken off it when that would leave fewer than 2 segments; the fallback is always on it;
- an expired theme activity's pool is view-only.

The rules that span prizes (order numbers, the pool's size, its coupon activities) read the other
prizes as `PoolPlace`s: as they are now, or as the roulette designer (`wheel_designer`) would leave
them, so a whole wheel is checked by the same rules as one prize.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from app.core import audit
from app.core.timeutil import utcnow
from app.coupons.models import CouponActivity
from app.extensions import db

from .models import ThemeActivity
from .services import is_view_only
from .prize_models import STOCKED_KINDS, WEIGHT_MAX, WEIGHT_MIN, Prize

if TYPE_CHECKING:
    from app.auth.models import Operator

MAX_PRIZES = 12
MAX_COUPON_ACTIVITIES = 10
NAME_MAX = 50
ORDER_MAX = 99
POINTS_MAX = 1_000_000
CASH_FEN_MAX = 10_000_000  # ¥100,000.00
STOCK_MAX = 10_000_000
CAP_MAX = 999
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
FALLBACK_COLOUR = "#c8c8c8"
FALLBACK_WEIGHT = 10
MIN_SEGMENTS = 2
AUDITED = ("name", "kind", "coupon_activity_id", "points", "cash_fen", "stock_total", "stock_remaining",
           "per_member_cap", "weight", "sort_order", "colour", "enabled")
KIND_LABELS = {"coupon": _l("Coupon"), "points": _l("Points"), "cash": _l("Cash"), "gift": _l("Gift"),
               "thanks": _l("Thanks for taking part")}


FALLBACK_ALWAYS_ON = _l("“Thanks for taking part” is always on the wheel: it cannot be switched off or removed.")


class InvalidPrize(ValueError):
    """The rules refuse these details; `errors` maps field names to messages for the operator."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class PrizeDetails:
    """What an operator says about a prize, in stored units (cash in fen)."""

    name: str | None = None
    kind: str | None = None
    coupon_activity_id: int | None = None
    points: int | None = None
    cash_fen: int | None = None
    stock_total: int | None = None  # only when adding a prize
    per_member_cap: int | None = None
    weight: int | None = None
    sort_order: int | None = None
    colour: str | None = None
    enabled: bool = True

    @classmethod
    def of(cls, prize: Prize) -> "PrizeDetails":
        return cls(**{f.name: getattr(prize, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class PoolPlace:
    """Where one prize stands in its pool (as it is, or as a change would leave it): what the rules
    that span prizes look at."""

    prize_id: int | None  # None: a prize about to be added
    kind: str
    coupon_activity_id: int | None
    sort_order: int | None
    enabled: bool

    @classmethod
    def of(cls, prize: Prize) -> "PoolPlace":
        return cls(prize.id, prize.kind, prize.coupon_activity_id, prize.sort_order, prize.enabled)

    @property
    def is_fallback(self) -> bool:
        return self.kind == "thanks"


@dataclass
class PoolRow:
    prize: Prize
    chance_pct: Decimal  # the chance a draw lands on it now, in percent
    coupon: CouponActivity | None = None


@dataclass
class _Checked:
    theme: ThemeActivity
    prize: Prize | None
    details: PrizeDetails
    others: list[PoolPlace]  # the pool's other prizes, as they will be
    errors: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)


# --- reading the pool -----------------------------------------------------------------------------


def prizes_of(theme: ThemeActivity) -> list[Prize]:
    return list(db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)
                                   .order_by(Prize.sort_order, Prize.id)).scalars())


def on_the_wheel(theme: ThemeActivity) -> list[Prize]:
    """The prizes on the wheel as stored (switched on, and the fallback), in their order: the
    designer's rows and the H5 page's slices."""
    return [p for p in prizes_of(theme) if p.enabled or p.is_fallback]


def is_drawable(prize: Prize) -> bool:
    """Could a draw land on this prize now?"""
    return prize.is_fallback or (prize.enabled and (prize.stock_remaining or 0) > 0)


def chances(prizes: list[Prize]) -> dict[int, Decimal]:
    """Each prize's chance in percent (2 decimals) among those a draw could land on now."""
    total = sum(p.weight for p in prizes if is_drawable(p))
    return {p.id: (Decimal(p.weight * 100) / total).quantize(Decimal("0.01")) if total and is_drawable(p)
            else Decimal("0.00") for p in prizes}


def pool(theme: ThemeActivity) -> list[PoolRow]:
    prizes = prizes_of(theme)
    chance = chances(prizes)
    coupon_ids = {p.coupon_activity_id for p in prizes if p.coupon_activity_id}
    coupons = {c.id: c for c in db.session.execute(select(CouponActivity).where(CouponActivity.id.in_(coupon_ids)))
               .scalars()} if coupon_ids else {}
    return [PoolRow(p, chance[p.id], coupons.get(p.coupon_activity_id)) for p in prizes]


def prize_in(theme: ThemeActivity, prize_id: int | str | None) -> Prize | None:
    """A prize of this theme activity (None for another activity's)."""
    try:
        key = int(prize_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return db.session.execute(select(Prize).where(Prize.id == key, Prize.theme_activity_id == theme.id)
                              ).scalar_one_or_none()


def coupon_choices(theme: ThemeActivity) -> list[CouponActivity]:
    """The coupon activities a coupon prize of this theme activity may give (those linked to it)."""
    return list(db.session.execute(select(CouponActivity).where(CouponActivity.theme_activity_id == theme.id,
                                                                CouponActivity.org_id == theme.org_id)
                                   .order_by(CouponActivity.id)).scalars())


# --- the checks -----------------------------------------------------------------------------------


def _check_name(c: _Checked) -> None:
    name = (c.details.name or "").strip()
    c.details.name = name
    if not name:
        c.fail("name", _("Enter the prize's name."))
    elif len(name) > NAME_MAX:
        c.fail("name", _("The name is at most %(n)s characters.", n=NAME_MAX))


def _check_kind(c: _Checked) -> None:
    d, prize = c.details, c.prize
    if prize is not None and prize.is_fallback:
        d.kind, d.coupon_activity_id, d.points, d.cash_fen, d.per_member_cap = "thanks", None, None, None, None
        return
    if d.kind not in STOCKED_KINDS:
        c.fail("kind", _("Choose coupon, points, cash or gift."))
        return
    if prize is not None and prize.stock_taken > 0 and (d.kind != prize.kind
                                                        or d.coupon_activity_id != prize.coupon_activity_id):
        c.fail("kind", _("Units of this prize have been won: its kind and coupon can no longer change."))
    for name in ("coupon_activity_id", "points", "cash_fen"):
        if name != {"coupon": "coupon_activity_id", "points": "points", "cash": "cash_fen"}.get(d.kind):
            setattr(d, name, None)
    if d.kind == "points" and not (d.points and 1 <= d.points <= POINTS_MAX):
        c.fail("points", _("Points are a whole number from 1 to %(n)s.", n=f"{POINTS_MAX:,}"))
    if d.kind == "cash" and not (d.cash_fen and 1 <= d.cash_fen <= CASH_FEN_MAX):
        c.fail("cash_fen", _("The cash amount is from 0.01 to %(n)s yuan.", n=f"{CASH_FEN_MAX // 100:,}"))
    if d.kind == "coupon":
        _check_coupon(c)


def _check_coupon(c: _Checked) -> None:
    d = c.details
    activity = db.session.get(CouponActivity, d.coupon_activity_id) if d.coupon_activity_id else None
    if activity is None or activity.theme_activity_id != c.theme.id or activity.org_id != c.theme.org_id:
        c.fail("coupon_activity_id", _("Choose a coupon activity linked to this theme activity."))
        return
    newly_linked = c.prize is None or c.prize.coupon_activity_id != activity.id
    if newly_linked and activity.status in ("ended", "terminated"):
        c.fail("coupon_activity_id", _("Coupon activity %(code)s has ended: its coupons can no longer be prizes.",
                                       code=activity.code))
    linked = {p.coupon_activity_id for p in c.others if p.coupon_activity_id}
    if activity.id not in linked and len(linked) >= MAX_COUPON_ACTIVITIES:
        c.fail("coupon_activity_id", _("A prize pool links at most %(n)s coupon activities.", n=MAX_COUPON_ACTIVITIES))
    if c.theme.wheel_enabled and d.enabled and activity.id not in wheel_coupon_ids(c.theme):
        c.fail("coupon_activity_id", _("The wheel is on: coupon activity %(code)s is not on it and cannot be put on "
                                       "it now. Turn the wheel off first, or leave this prize off the wheel.",
                                       code=activity.code))
    if d.per_member_cap is None or d.per_member_cap > activity.per_member_limit:
        c.fail("per_member_cap", _("Coupon activity %(code)s gives a customer at most %(n)s coupon(s): set a "
                                   "per-member cap of at most %(n)s.", code=activity.code, n=activity.per_member_limit))


def wheel_coupon_ids(theme: ThemeActivity) -> set[int]:
    """The coupon activities of the prizes on the wheel as it is stored now."""
    return set(db.session.execute(select(Prize.coupon_activity_id).where(
        Prize.theme_activity_id == theme.id, Prize.enabled.is_(True), Prize.coupon_activity_id.is_not(None))).scalars())


def segment_count_problem(count: int) -> str | None:
    """Why a wheel that is on cannot have `count` segments (None when it can)."""
    if count < MIN_SEGMENTS:
        return _("A wheel that is on needs at least %(n)s segments (it has %(count)s).", n=MIN_SEGMENTS, count=count)
    if count > MAX_PRIZES:
        return _("A wheel has at most %(n)s segments (it has %(count)s).", n=MAX_PRIZES, count=count)
    return None


def coupon_room(activity: CouponActivity, besides: Prize | None = None) -> int:
    """Coupons the activity has left to issue, less the stock its prizes still hold (other than `besides`)."""
    held = db.session.execute(select(func.coalesce(func.sum(Prize.stock_remaining), 0)).where(
        Prize.coupon_activity_id == activity.id, Prize.id != (besides.id if besides else -1))).scalar_one()
    return activity.issue_total - activity.issued_count - held


def _check_numbers(c: _Checked) -> None:
    d = c.details
    if c.prize is None and not (d.stock_total is not None and 0 <= d.stock_total <= STOCK_MAX):
        c.fail("stock_total", _("The stock is a whole number from 0 to %(n)s.", n=f"{STOCK_MAX:,}"))
    if d.per_member_cap is not None and not 1 <= d.per_member_cap <= CAP_MAX:
        c.fail("per_member_cap", _("Leave the cap empty for none, or give 1 to %(n)s.", n=CAP_MAX))
    if d.weight is None or not WEIGHT_MIN <= d.weight <= WEIGHT_MAX:
        c.fail("weight", _("The weight is a whole number from %(a)s to %(b)s.", a=WEIGHT_MIN, b=WEIGHT_MAX))
    if d.sort_order is None or not 1 <= d.sort_order <= ORDER_MAX:
        c.fail("sort_order", _("The order is a whole number from 1 to %(n)s.", n=ORDER_MAX))
    elif any(p.sort_order == d.sort_order for p in c.others):
        c.fail("sort_order", _("Another prize of this pool has order %(n)s.", n=d.sort_order))
    d.colour = (d.colour or "").strip().lower()
    if not COLOUR.match(d.colour):
        c.fail("colour", _("The colour is #RRGGBB, e.g. #ff6600."))


def _check_coupon_stock(c: _Checked) -> None:
    d = c.details
    if c.prize is not None or d.kind != "coupon" or c.errors:
        return
    room = coupon_room(db.session.get(CouponActivity, d.coupon_activity_id))
    if d.stock_total > room:
        c.fail("stock_total", _("The coupon activity has %(n)s coupons left for prizes: the stock may not be more.",
                                n=max(room, 0)))


def _check_places(c: _Checked) -> None:
    """The pool's size and what the wheel, if it is on, keeps."""
    prize, others = c.prize, c.others
    fallback_place = 0 if prize is not None and prize.is_fallback or any(p.is_fallback for p in others) else 1
    if prize is None and len(others) + 1 + fallback_place > MAX_PRIZES:
        c.fail("__all__", _("A prize pool holds at most %(n)s prizes, the fallback among them.", n=MAX_PRIZES))
    if prize is not None and prize.is_fallback and not c.details.enabled:
        c.fail("enabled", str(FALLBACK_ALWAYS_ON))
    elif prize is not None and prize.enabled and not c.details.enabled and c.theme.wheel_enabled:
        problem = segment_count_problem(sum(1 for p in others if p.enabled))
        if problem:
            c.fail("enabled", problem)


def problems(theme: ThemeActivity, details: PrizeDetails, prize: Prize | None = None,
             others: list[PoolPlace] | None = None) -> dict[str, str]:
    """Field name → message for every rule these details break (empty when they pass).

    `others` are the pool's other prizes as they will be (default: as they are now); the roulette
    designer passes the rest of the wheel it is about to save."""
    if others is None:
        others = [PoolPlace.of(p) for p in prizes_of(theme) if prize is None or p.id != prize.id]
    c = _Checked(theme, prize, details, others)
    if is_view_only(theme):
        c.fail("__all__", _("The activity is over: its prize pool can no longer change."))
    _check_places(c)
    _check_name(c)
    _check_kind(c)
    _check_numbers(c)
    _check_coupon_stock(c)
    return c.errors


# --- changes --------------------------------------------------------------------------------------


def _snapshot(prize: Prize) -> dict[str, Any]:
    return audit.snapshot(prize, AUDITED)


def _lock_theme(theme: ThemeActivity) -> None:
    """Changes to one pool queue on its theme activity's row (order numbers, counts, coupon room)."""
    db.session.refresh(theme, with_for_update=True)


def ensure_fallback(theme: ThemeActivity, actor_id: int | None = None) -> Prize:
    """The pool's "thanks for taking part" prize, created (audited, committed) if missing."""
    _lock_theme(theme)
    prize = _fallback_in(theme, actor_id)
    db.session.commit()
    return prize


def new_fallback(theme: ThemeActivity, sort_order: int | None = None, actor_id: int | None = None) -> Prize:
    """A "thanks for taking part" prize for this pool, not yet added (by default at the last free order)."""
    if sort_order is None:
        taken = {p.sort_order for p in prizes_of(theme)}
        sort_order = next(n for n in range(ORDER_MAX, 0, -1) if n not in taken)
    return Prize(org_id=theme.org_id, theme_activity_id=theme.id, name=_("Thanks for taking part"), kind="thanks",
                 weight=FALLBACK_WEIGHT, sort_order=sort_order, colour=FALLBACK_COLOUR, enabled=True,
                 created_by=actor_id, updated_by=actor_id)


def new_prize(actor: "Operator", theme: ThemeActivity, details: PrizeDetails) -> Prize:
    """A prize made of checked details, its whole stock remaining, not yet added."""
    d = details
    return Prize(org_id=theme.org_id, theme_activity_id=theme.id, name=d.name, kind=d.kind,
                 coupon_activity_id=d.coupon_activity_id, points=d.points, cash_fen=d.cash_fen,
                 stock_total=d.stock_total, stock_remaining=d.stock_total, per_member_cap=d.per_member_cap,
                 weight=d.weight, sort_order=d.sort_order, colour=d.colour, enabled=d.enabled,
                 created_by=actor.id, updated_by=actor.id)


def insert_prize(theme: ThemeActivity, prize: Prize) -> Prize:
    """Add a new prize in the caller's transaction, audited (the caller checked it and locked the theme)."""
    db.session.add(prize)
    db.session.flush()
    audit.record("theme_prize.create", "theme_prize", prize.id, after=_snapshot(prize), org_id=theme.org_id)
    return prize


def _fallback_in(theme: ThemeActivity, actor_id: int | None) -> Prize:
    """The fallback, added in the caller's transaction if missing (the theme row locked by the caller)."""
    existing = next((p for p in prizes_of(theme) if p.is_fallback), None)
    return existing if existing is not None else insert_prize(theme, new_fallback(theme, actor_id=actor_id))


def add_prize(actor: "Operator", theme: ThemeActivity, details: PrizeDetails) -> Prize:
    """Check and add a prize with its stock (audited, committed). InvalidPrize when a rule is broken."""
    _lock_theme(theme)
    if not is_view_only(theme):
        _fallback_in(theme, actor.id)  # the pool's first prize brings its fallback (undone with a refusal)
    errors = problems(theme, details)
    if errors:
        db.session.rollback()
        raise InvalidPrize(errors)
    prize = insert_prize(theme, new_prize(actor, theme, details))
    db.session.commit()
    return prize


EDITABLE = ("name", "kind", "coupon_activity_id", "points", "cash_fen", "per_member_cap", "weight", "sort_order",
            "colour", "enabled")


def update_prize(actor: "Operator", theme: ThemeActivity, prize: Prize, details: PrizeDetails) -> Prize:
    """Save a prize's editable fields (not its stock: see `add_stock`); audited, committed."""
    _lock_theme(theme)
    db.session.refresh(prize, with_for_update=True)
    errors = problems(theme, details, prize)
    if errors:
        db.session.rollback()
        raise InvalidPrize(errors)
    if not apply_details(actor, theme, prize, details):
        db.session.rollback()
        return prize
    db.session.commit()
    return prize


def apply_details(actor: "Operator", theme: ThemeActivity, prize: Prize, details: PrizeDetails) -> bool:
    """Set a prize's editable fields to checked details in the caller's transaction; one audit event when
    anything changed (False when nothing did)."""
    before = _snapshot(prize)
    for name in EDITABLE:
        setattr(prize, name, getattr(details, name))
    old, new = audit.changed(before, _snapshot(prize))
    if not new:
        return False
    prize.updated_by = actor.id
    audit.record("theme_prize.update", "theme_prize", prize.id, before=old, after=new, org_id=theme.org_id)
    return True


def add_stock(actor: "Operator", theme: ThemeActivity, prize: Prize, amount: int | None) -> Prize:
    """Add `amount` units to a prize's stock, atomically beside running draws (audited, committed)."""
    errors = {}
    if is_view_only(theme):
        errors["__all__"] = _("The activity is over: its prize pool can no longer change.")
    elif prize.is_fallback:
        errors["amount"] = _("The fallback prize has no stock.")
    elif amount is None or not 1 <= amount <= STOCK_MAX:
        errors["amount"] = _("Add a whole number of units from 1 to %(n)s.", n=f"{STOCK_MAX:,}")
    elif prize.kind == "coupon":
        room = coupon_room(db.session.get(CouponActivity, prize.coupon_activity_id), besides=prize)
        if (prize.stock_remaining or 0) + amount > room:
            errors["amount"] = _("The coupon activity has coupons left for %(n)s more unit(s) of this prize.",
                                 n=max(room - (prize.stock_remaining or 0), 0))
    if errors:
        db.session.rollback()
        raise InvalidPrize(errors)
    after = db.session.execute(
        update(Prize).where(Prize.id == prize.id, Prize.stock_total + amount <= STOCK_MAX)
        .values(stock_total=Prize.stock_total + amount, stock_remaining=Prize.stock_remaining + amount,
                updated_by=actor.id, updated_at=utcnow())
        .returning(Prize.stock_total, Prize.stock_remaining).execution_options(synchronize_session=False)).one_or_none()
    if after is None:
        db.session.rollback()
        raise InvalidPrize({"amount": _("The stock would exceed %(n)s units.", n=f"{STOCK_MAX:,}")})
    audit.record("theme_prize.add_stock", "theme_prize", prize.id,
                 before={"stock_total": after.stock_total - amount, "stock_remaining": after.stock_remaining - amount},
                 after={"added": amount, "stock_total": after.stock_total, "stock_remaining": after.stock_remaining},
                 org_id=theme.org_id)
    db.session.commit()
    db.session.refresh(prize)
    return prize


audit.ACTION_LABELS.setdefault("theme_prize.create", _l("Added a prize to a theme activity's pool"))
audit.ACTION_LABELS.setdefault("theme_prize.update", _l("Changed a prize of a theme activity's pool"))
audit.ACTION_LABELS.setdefault("theme_prize.add_stock", _l("Added stock to a prize"))
