"""The roulette designer (轮盘配置) of a theme activity: the wheel as rows to edit, the checks of a whole
design, and saving it in one transaction with its audit events. No `request` here.

The wheel is the prizes of the pool that are on it (`Prize.enabled`), the "thanks for taking part"
fallback always among them, in their order; `wheel_drawing` draws it. A design is the whole wheel as
the operator wants it: the switch (`ThemeActivity.wheel_enabled`) and its rows, each an existing
prize of the pool (its order, colour and weight edited in place) or a new coupon prize of a coupon
activity linked to the theme. The rules of a prize, of the pool and of a wheel that is on are
`prizes.problems`' (each row is checked with the rest of the design as the pool's other prizes);
this module adds only what is the wheel's own.

Decisions (also in the README design notes):
- the requirement's "first row" is the fallback "thanks for taking part": the row every wheel starts
  with (the designer of an empty pool shows it alone). It may be moved and recoloured like any row,
  but never removed: the draw engine gives it whenever the prize drawn has just run out;
- the designer numbers the rows 1..n in their stored order when it opens, and saving stores the
  numbers typed (1–12, unique); a prize left off the wheel whose number a row takes moves to the
  first free number above 12, in the same transaction;
- removing a row takes the prize off the wheel (`enabled` = false), never deletes it: it stays in
  the pool with its stock and its history, and "Add a row" offers it again;
- a new row of a coupon activity becomes a coupon prize named after the coupon activity (cut to 50
  characters), holding as stock every coupon the activity still has to issue and that no other
  prize holds (`prizes.coupon_room`, at most 10,000,000), with the activity's per-customer limit as
  its per-member cap (at most 999); a coupon activity with nothing left cannot be added, and one
  coupon activity is on the wheel once;
- the wheel may be saved off with any number of rows (a draft); on needs 2–12 rows, and turning it
  on needs the activity active (not paused), as §2 says. While the wheel is on (as stored when
  saving), no coupon activity that is not on it may be put on it, even by the save that turns it
  off: turn it off first, then add;
- a design of an expired activity is view-only; saving locks the theme activity's row, so two
  saves (or a save and a prize pool change) of one wheel never interleave.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.core import audit
from app.coupons.models import CouponActivity
from app.extensions import db

from . import prizes
from .models import ThemeActivity
from .prize_models import Prize
from .services import effective_status, is_view_only
from .wheel_drawing import Segment, segments

if TYPE_CHECKING:
    from app.auth.models import Operator

ORDER_MAX = 12  # order numbers on the wheel: 1–12, one per segment
DEFAULT_WEIGHT = 10
NEW_FALLBACK = "thanks"  # the row of a fallback the pool does not have yet
PRESET_COLOURS = ("#e53935", "#f4511e", "#fb8c00", "#ffb300", "#fdd835", "#c0ca33", "#7cb342", "#43a047",
                  "#00897b", "#00acc1", "#039be5", "#1e88e5", "#3949ab", "#5e35b1", "#8e24aa", "#d81b60",
                  "#6d4c41", "#ffccbc", "#fff3e0", prizes.FALLBACK_COLOUR)
UNREADABLE_COLOUR = "#e9ecef"  # how the preview paints a slice whose colour is not #RRGGBB yet
_KEY = re.compile(r"^(prize|coupon)-(\d{1,12})$")

audit.ACTION_LABELS.setdefault("theme_activity.wheel_on", _l("Turned a theme activity's wheel on"))
audit.ACTION_LABELS.setdefault("theme_activity.wheel_off", _l("Turned a theme activity's wheel off"))


class InvalidDesign(ValueError):
    """The design breaks a rule; `checked` says where (the rows' and the wheel's messages)."""

    def __init__(self, checked: "CheckedDesign"):
        super().__init__("; ".join(checked.problems))
        self.checked = checked


@dataclass
class DesignRow:
    """One row as the operator set it. `key`: "prize-<id>" (a prize of the pool), "coupon-<id>" (a new
    coupon prize of that coupon activity) or "thanks" (the fallback, made when the design is saved)."""

    key: str
    sort_order: int | None = None
    colour: str | None = None
    weight: int | None = None
    typed: dict[str, str] = field(default_factory=dict)  # what was typed where it was not a number


@dataclass
class Design:
    wheel_on: bool
    rows: list[DesignRow]

    def keys(self) -> list[str]:
        return [row.key for row in self.rows]


@dataclass
class CheckedRow:
    """A row with what it stands for, what the prize will be, its chance and its problems."""

    row: DesignRow
    prize: Prize | None = None  # the prize of the pool; for "thanks" the fallback to be made
    coupon: CouponActivity | None = None
    details: prizes.PrizeDetails | None = None  # None: the key names nothing this theme has
    stock: int | None = None  # units left (a new coupon prize: what it will hold); None for the fallback
    chance_pct: Decimal | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, str(message))

    @property
    def key(self) -> str:
        return self.row.key

    @property
    def is_new(self) -> bool:
        return self.prize is None or self.prize.id is None

    @property
    def is_fallback(self) -> bool:
        return self.details is not None and self.details.kind == "thanks"

    @property
    def name(self) -> str:
        return self.details.name if self.details else "?"

    @property
    def kind(self) -> str | None:
        return self.details.kind if self.details else None

    @property
    def swatch(self) -> str:
        """The row's colour when it is #RRGGBB, else a neutral grey (safe to put in a style)."""
        return _readable_colour(self.row.colour)

    @property
    def other_errors(self) -> list[str]:
        """Messages that are not about the row's own fields (order, colour, weight)."""
        return [m for k, m in self.errors.items() if k not in ("sort_order", "colour", "weight")]


@dataclass
class CheckedDesign:
    theme: ThemeActivity
    design: Design
    rows: list[CheckedRow]
    errors: list[str]  # about the design as a whole
    wheel_problem: str | None  # why the wheel cannot be on as designed (None: it can)
    off_wheel: list[tuple[Prize, prizes.PrizeDetails]]  # the pool's other prizes, as the design leaves them

    @property
    def problems(self) -> list[str]:
        """Every message, once: the design's, the switch's, then the rows'."""
        found: list[str] = []
        rows = [f"{r.row.sort_order or '?'} · {r.name}: {m}" for r in self.rows for m in r.errors.values()]
        for message in [*self.errors, *([self.wheel_problem] if self.wheel_problem and self.design.wheel_on else []),
                        *rows]:
            if message not in found:
                found.append(message)
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def in_order(self) -> list[CheckedRow]:
        """The rows as the wheel shows them: by order (unreadable ones last), then as posted."""
        return [r for _, _, r in sorted((_order_key(r.row), n, r) for n, r in enumerate(self.rows))]

    def segments(self) -> list[Segment]:
        """The wheel as designed, for the preview (slices of rows with problems drawn as well as can be)."""
        return segments([_Slice(r.prize.id if r.prize is not None else None, r.name,
                                _readable_colour(r.row.colour), _order_key(r.row))
                         for r in self.rows])


@dataclass(frozen=True)
class _Slice:
    id: int | None
    name: str
    colour: str
    sort_order: int


@dataclass(frozen=True)
class _Chance:
    """A row as `prizes.chances` counts it (every row is on the wheel)."""

    id: int
    weight: int
    is_fallback: bool
    stock_remaining: int | None
    enabled: bool = True


@dataclass
class Choice:
    """Something "Add a row" offers: a prize of the pool that is off the wheel, or a linked coupon
    activity (a new coupon prize); `refusal` says why it cannot be added now."""

    key: str
    prize: Prize | None
    coupon: CouponActivity | None
    room: int | None  # coupons the activity has left for a new prize
    refusal: str | None = None
    on_the_wheel: bool = False  # a coupon activity the designed wheel already gives (not worth offering)


@dataclass(frozen=True)
class Saved:
    changed_prizes: int
    switched: str | None  # "on", "off" or None


def _order_key(row: DesignRow) -> int:
    return row.sort_order if row.sort_order is not None and 1 <= row.sort_order <= ORDER_MAX else ORDER_MAX + 1


def _readable_colour(colour: str | None) -> str:
    colour = (colour or "").strip().lower()
    return colour if prizes.COLOUR.match(colour) else UNREADABLE_COLOUR


# --- reading the wheel ------------------------------------------------------------------------------


def read_wheel(theme: ThemeActivity) -> Design:
    """The stored wheel as a design: its rows numbered 1..n in their order (the fallback first when the
    pool does not have one yet)."""
    wheel = prizes.on_the_wheel(theme)
    rows = [DesignRow(f"prize-{p.id}", colour=p.colour, weight=p.weight) for p in wheel]
    if not any(p.is_fallback for p in wheel):
        rows.insert(0, DesignRow(NEW_FALLBACK, colour=prizes.FALLBACK_COLOUR, weight=prizes.FALLBACK_WEIGHT))
    for number, row in enumerate(rows, start=1):
        row.sort_order = number
    return Design(wheel_on=theme.wheel_enabled, rows=rows)


def _fresh_pool(theme: ThemeActivity) -> list[Prize]:
    """The pool read again from the database (after the theme row is locked: nothing stale is saved)."""
    return list(db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)
                                   .order_by(Prize.sort_order, Prize.id)
                                   .execution_options(populate_existing=True)).scalars())


def _linked_coupon(theme: ThemeActivity, coupon_id: int) -> CouponActivity | None:
    activity = db.session.get(CouponActivity, coupon_id)
    if activity is None or activity.theme_activity_id != theme.id or activity.org_id != theme.org_id:
        return None
    return activity


def new_coupon_details(activity: CouponActivity, room: int, row: DesignRow) -> prizes.PrizeDetails:
    """The coupon prize a new row of this coupon activity becomes (see the module's decisions)."""
    return prizes.PrizeDetails(name=activity.name[:prizes.NAME_MAX], kind="coupon", coupon_activity_id=activity.id,
                               stock_total=min(max(room, 0), prizes.STOCK_MAX),
                               per_member_cap=min(activity.per_member_limit, prizes.CAP_MAX), weight=row.weight,
                               sort_order=row.sort_order, colour=row.colour, enabled=True)


def _resolve(theme: ThemeActivity, row: DesignRow, pool: dict[int, Prize], fallback: Prize | None) -> CheckedRow:
    """What a row's key stands for, and the prize it will be."""
    edits = {"sort_order": row.sort_order, "colour": row.colour, "weight": row.weight, "enabled": True}
    match = _KEY.match(row.key or "")
    if row.key == NEW_FALLBACK and fallback is None:
        prize = prizes.new_fallback(theme, sort_order=row.sort_order)
        return CheckedRow(row, prize, details=replace(prizes.PrizeDetails.of(prize), **edits))
    if row.key == NEW_FALLBACK or match and match.group(1) == "prize" and int(match.group(2)) in pool:
        prize = fallback if row.key == NEW_FALLBACK else pool[int(match.group(2))]  # made meanwhile: that one
        coupon = db.session.get(CouponActivity, prize.coupon_activity_id) if prize.coupon_activity_id else None
        return CheckedRow(row, prize, coupon, replace(prizes.PrizeDetails.of(prize), **edits),
                          stock=None if prize.is_fallback else prize.stock_remaining)
    if match and match.group(1) == "coupon":
        activity = _linked_coupon(theme, int(match.group(2)))
        if activity is not None:
            room = prizes.coupon_room(activity)
            return CheckedRow(row, None, activity, new_coupon_details(activity, room, row), stock=max(room, 0))
    checked = CheckedRow(row)
    checked.fail("__all__", _("This row names nothing of this theme activity's (it may have been removed "
                              "meanwhile): remove the row."))
    return checked


# --- the checks -------------------------------------------------------------------------------------


def _check_wheel_fields(r: CheckedRow) -> None:
    """The wheel's own limit on a row (the rest are the prize rules')."""
    if r.row.sort_order is None or not 1 <= r.row.sort_order <= ORDER_MAX:
        r.fail("sort_order", _("On the wheel the order is a whole number from 1 to %(n)s.", n=ORDER_MAX))


def _check_new_coupon(r: CheckedRow, rows: list[CheckedRow]) -> None:
    """A new coupon row: its coupon activity has coupons left, and is not on the wheel already."""
    if r.coupon is None or not r.is_new:
        return
    if any(o is not r and o.coupon is not None and o.coupon.id == r.coupon.id for o in rows):
        r.fail("coupon_activity_id", _("Coupon activity %(code)s is already on the wheel.", code=r.coupon.code))
    elif not r.stock:
        r.fail("coupon_activity_id", _("Coupon activity %(code)s has no coupons left to give as prizes.",
                                       code=r.coupon.code))


def _place(r: CheckedRow) -> prizes.PoolPlace:
    d = r.details
    return prizes.PoolPlace(r.prize.id if r.prize is not None else None, d.kind, d.coupon_activity_id,
                            d.sort_order, True)


def _leave_off(pool: list[Prize], rows: list[CheckedRow]) -> list[tuple[Prize, prizes.PrizeDetails]]:
    """The pool's prizes no row names: off the wheel, moved above 12 when a row takes their number."""
    on = {r.prize.id for r in rows if r.prize is not None and r.prize.id is not None}
    used = {r.row.sort_order for r in rows}
    off = []
    for prize in pool:
        if prize.id in on:
            continue
        details = replace(prizes.PrizeDetails.of(prize), enabled=False)
        if details.sort_order in used:
            details.sort_order = next(n for n in range(ORDER_MAX + 1, prizes.ORDER_MAX + 1) if n not in used)
        used.add(details.sort_order)
        off.append((prize, details))
    return off


def _wheel_problem(theme: ThemeActivity, rows: list[CheckedRow]) -> str | None:
    """Why this wheel could not be on."""
    if theme.wheel_enabled is False and effective_status(theme) == "paused":
        return _("The activity is paused: enable it before turning the wheel on.")
    return prizes.segment_count_problem(len(rows))


def _chances(rows: list[CheckedRow]) -> None:
    counted = [_Chance(i, r.row.weight if r.row.weight is not None and r.row.weight > 0 else 0, r.is_fallback,
                       r.stock) for i, r in enumerate(rows)]
    chance = prizes.chances(counted)  # type: ignore[arg-type]
    for i, r in enumerate(rows):
        r.chance_pct = chance[i] if r.details is not None else None


def check_design(theme: ThemeActivity, design: Design, pool: list[Prize] | None = None) -> CheckedDesign:
    """The design with every problem found, each row's chance and the wheel as drawn; writes nothing."""
    pool = prizes.prizes_of(theme) if pool is None else pool
    fallback = next((p for p in pool if p.is_fallback), None)
    by_id = {p.id: p for p in pool}
    rows = [_resolve(theme, row, by_id, fallback) for row in design.rows]
    errors: list[str] = []
    if is_view_only(theme):
        errors.append(_("The activity is over: its wheel can no longer change."))
    seen: set[object] = set()
    for r in rows:
        identity = r.prize.id if r.prize is not None and r.prize.id is not None else r.key
        if identity in seen:
            r.fail("__all__", _("This prize is on the wheel twice: remove one of its rows."))
        seen.add(identity)
    off = _leave_off(pool, rows)
    if not any(r.is_fallback for r in rows):
        errors.append(str(prizes.FALLBACK_ALWAYS_ON))
    if not errors:
        _check_rows(theme, rows, off)
    _chances(rows)
    wheel_problem = _wheel_problem(theme, rows)
    return CheckedDesign(theme, design, rows, errors, wheel_problem, off)


def _off_places(off: list[tuple[Prize, prizes.PrizeDetails]]) -> list[prizes.PoolPlace]:
    return [prizes.PoolPlace(p.id, d.kind, d.coupon_activity_id, d.sort_order, False) for p, d in off]


def _check_row(theme: ThemeActivity, r: CheckedRow, known: list[CheckedRow], off_places: list[prizes.PoolPlace]) -> None:
    """One row by the wheel's rules and the prize rules, the rest of the design as the pool's other prizes."""
    _check_wheel_fields(r)
    _check_new_coupon(r, known)
    others = [_place(o) for o in known if o is not r] + off_places
    prize = r.prize if r.prize is not None and r.prize.id is not None or r.is_fallback else None
    for name, message in prizes.problems(theme, r.details, prize, others).items():
        r.fail(name, message)


def _check_rows(theme: ThemeActivity, rows: list[CheckedRow], off: list[tuple[Prize, prizes.PrizeDetails]]) -> None:
    known = [r for r in rows if r.details is not None]
    off_places = _off_places(off)
    for r in known:
        _check_row(theme, r, known, off_places)


# --- changing the design (nothing saved) --------------------------------------------------------------


def next_colour(design: Design) -> str:
    """The first preset colour no row uses (the fallback's grey last)."""
    used = {(row.colour or "").lower() for row in design.rows}
    return next((c for c in PRESET_COLOURS if c not in used), PRESET_COLOURS[0])


def add_row(theme: ThemeActivity, design: Design, key: str) -> tuple[Design, str | None]:
    """The design with a row for `key` after the others; or the design as it was and why not."""
    choice = next((c for c in row_choices(theme, design) if c.key == key), None)
    if choice is None:
        return design, _("That is not something this wheel can take.")
    if choice.refusal:
        return design, choice.refusal
    orders = [row.sort_order for row in design.rows if row.sort_order is not None]
    row = DesignRow(key, sort_order=min(max(orders, default=0) + 1, ORDER_MAX), colour=next_colour(design),
                    weight=choice.prize.weight if choice.prize is not None else DEFAULT_WEIGHT)
    if choice.prize is not None:
        row.colour = choice.prize.colour
    return Design(design.wheel_on, [*design.rows, row]), None


def remove_row(theme: ThemeActivity, design: Design, key: str) -> tuple[Design, str | None]:
    """The design without the row `key`, the rest numbered 1..n again; the fallback's row stays."""
    fallback = next((p for p in prizes.prizes_of(theme) if p.is_fallback), None)
    if key == NEW_FALLBACK or fallback is not None and key == f"prize-{fallback.id}":
        return design, str(prizes.FALLBACK_ALWAYS_ON)
    return renumber(Design(design.wheel_on, [row for row in design.rows if row.key != key])), None


def renumber(design: Design) -> Design:
    """The rows numbered 1..n in the order the wheel shows them."""
    rows = [row for _, _, row in sorted((_order_key(row), n, row) for n, row in enumerate(design.rows))]
    return Design(design.wheel_on, [replace(row, sort_order=n) for n, row in enumerate(rows, start=1)])


def row_choices(theme: ThemeActivity, design: Design) -> list[Choice]:
    """What "Add a row" offers: the pool's prizes off the wheel, then the coupon activities linked to the
    theme; each refused with the first rule it would break as the design's next row."""
    pool = prizes.prizes_of(theme)
    in_design = set(design.keys())
    choices = [Choice(f"prize-{p.id}", p, db.session.get(CouponActivity, p.coupon_activity_id)
                      if p.coupon_activity_id else None, None)
               for p in pool if not p.is_fallback and f"prize-{p.id}" not in in_design]
    choices += [Choice(f"coupon-{a.id}", None, a, prizes.coupon_room(a)) for a in prizes.coupon_choices(theme)]
    if is_view_only(theme):
        return choices
    checked = check_design(theme, design, pool)
    by_id = {p.id: p for p in pool}
    fallback = next((p for p in pool if p.is_fallback), None)
    known = [r for r in checked.rows if r.details is not None]
    given = {r.details.coupon_activity_id for r in known if r.details.coupon_activity_id}
    for choice in choices:
        choice.on_the_wheel = choice.prize is None and choice.coupon.id in given
        trial = _resolve(theme, DesignRow(choice.key, sort_order=1, colour=PRESET_COLOURS[0], weight=DEFAULT_WEIGHT),
                         by_id, fallback)
        off = [(p, d) for p, d in checked.off_wheel if choice.prize is None or p.id != choice.prize.id]
        if trial.details is not None:
            _check_row(theme, trial, [*known, trial], _off_places(off))
        choice.refusal = next(iter(trial.other_errors), None)
    return choices


# --- saving ---------------------------------------------------------------------------------------------


def save_design(actor: "Operator", theme: ThemeActivity, design: Design) -> Saved:
    """Check and save the whole design in one transaction: every prize it changes (one audit event each)
    and the switch (its own event). InvalidDesign, with nothing saved, when a rule is broken."""
    prizes._lock_theme(theme)
    checked = check_design(theme, design, _fresh_pool(theme))
    if not checked.ok:
        db.session.rollback()
        raise InvalidDesign(checked)
    changed = sum(prizes.apply_details(actor, theme, prize, details) for prize, details in checked.off_wheel)
    for r in checked.rows:
        if r.is_new and r.is_fallback:
            fallback = prizes.new_fallback(theme, r.details.sort_order, actor.id)
            fallback.weight, fallback.colour = r.details.weight, r.details.colour
            prizes.insert_prize(theme, fallback)
            changed += 1
        elif r.is_new:
            prizes.insert_prize(theme, prizes.new_prize(actor, theme, r.details))
            changed += 1
        else:
            changed += prizes.apply_details(actor, theme, r.prize, r.details)
    switched = _switch(actor, theme, design.wheel_on)
    db.session.commit()
    return Saved(changed, switched)


def _switch(actor: "Operator", theme: ThemeActivity, wheel_on: bool) -> str | None:
    if theme.wheel_enabled == wheel_on:
        return None
    theme.wheel_enabled, theme.updated_by = wheel_on, actor.id
    switched = "on" if wheel_on else "off"
    audit.record(f"theme_activity.wheel_{switched}", "theme_activity", theme.id,
                 before={"wheel_enabled": not wheel_on}, after={"wheel_enabled": wheel_on}, org_id=theme.org_id)
    return switched
