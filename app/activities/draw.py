"""The draw engine of theme activities: one spin of the wheel, from the request to the recorded result.

`draw(theme_id, open_id, idempotency_key)` (the H5 page) and `draw_for_bank(theme_no, org_id, …)` (the
banks' JSON API) are the only ways a draw happens. In one PostgreSQL transaction a draw:

1. reads the theme activity and its prizes (with this customer's wins of each) in one round trip,
   never from a cache: a pause bites the very next draw. It checks the activity is running
   (ACTIVE, inside its window, wheel turned on) and takes participants (a limit of 0 shuts
   everyone out; NULL is no cap);
2. counts the participation with one guarded upsert on the customer's `ThemeParticipant` row:
   `INSERT … ON CONFLICT DO UPDATE SET draws_total + 1, draws_on_day + 1 (or 1 on a new
   Asia/Shanghai day) WHERE draws_total < limit AND (other day OR draws_on_day < daily limit)
   RETURNING`. No row back means a limit is reached; the row lock serialises one customer's
   concurrent draws, so no interleaving passes a limit;
3. picks a prize by weight among the enabled prizes with stock left and under the customer's
   per-prize cap, plus the "thanks for taking part" fallback, with `secrets.SystemRandom` (an
   integer `randrange` over the weights: no float rounding; tests inject a seeded RNG);
4. counts the customer's win of a capped prize (a guarded upsert on `PrizeMemberCount`), records
   the draw and writes its outbox message (dedupe key = the draw's id) for `fulfilment`;
5. takes one unit last: `UPDATE theme_prizes SET stock_remaining = stock_remaining - 1 WHERE id = …
   AND stock_remaining > 0 AND enabled RETURNING`, so the hot prize row is locked only for that
   statement and the commit. No row back (another draw took the last unit a moment ago, or the
   prize was just switched off) turns the draw into the fallback in the same transaction (record
   changed, message and cap count undone). The CHECK `stock_remaining >= 0` stands behind it all;
6. commits. Locks are always taken in the order participant → per-prize count → prize, so draws
   never deadlock. Nothing leaves the process inside the draw; a prize is fulfilled at most once.

Idempotency: the draw row is unique on (activity, idempotency key). The happy path does not look
for an earlier draw first (a round trip saved per draw): a retry runs into that unique index (a
twin still running is waited for), or into a refusal, and only then is the earlier draw looked up
and answered — the same draw number and prize, whatever changed since (a pause, a used-up limit).
The same key with another customer's openid is refused (422). Refused draws change nothing and
are not recorded; retrying their key later is a new attempt.

Why a conditional UPDATE in PostgreSQL rather than a Redis script — measured with
`bench/scenarios/draws.py` on the 2-core build machine (the figures of 2026-11-23, quiet machine):
- the engine alone, 64 threads, every draw on one prize: 236 draws/s with the stock taken by the
  prize row's guarded UPDATE, 259/s with it taken by a Redis Lua script instead, 366/s with no
  stock taken at all. The row lock is held for about one commit, so one prize tops out near
  1 ÷ commit latency; a script in Redis does not;
- the whole request at 64 clients, on the H5 page or through the banks' signed API: 163–233
  draws/s (0.22–0.34 × /healthz of the same run), whatever the stock; 0.31–0.43 × on a slower
  machine once the statements below were built once. The request is bound by the CPU the web
  workers and PostgreSQL share (session or signatures, rate limits, JSON, about seven round
  trips and a durable commit), below the row's ceiling, so Redis would not make draws faster here;
- a Redis design adds a second source of truth: stock taken in Redis by a draw whose transaction
  then fails, or whose process dies, must be given back, and rebuilding Redis from the database
  while draws are in flight needs reservations with timeouts. With one transaction there is one
  truth, and "stock ≥ 0, wins = stock taken, no limit exceeded, no double fulfilment" hold by
  construction (unique constraints and guarded updates) — on SQLite in the embedded default too.
When a single prize must give out more than a few hundred units a second, split its stock into
several rows (buckets) picked at random: the same guarded UPDATE, the lock spread.

The customer is identified by openid: a keyed hash (`app.core.crypto.lookup_hash`) for look-ups,
the openid itself encrypted, a masked form to show (see `prize_models` for why not `Member`).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import Date, DateTime, Integer, and_, bindparam, case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from app.core import crypto
from app.core.models import public_code
from app.core.timeutil import BUSINESS_TZ, as_utc, utcnow
from app.coupons.models import mask_openid
from app.extensions import commit_keeping_loaded, db, upsert_built_once

from . import fulfilment
from .models import ThemeActivity
from .prize_models import Prize, PrizeMemberCount, ThemeDraw, ThemeParticipant

OPEN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
_system_random = secrets.SystemRandom()


class Rng(Protocol):
    def randrange(self, stop: int) -> int: ...


class DrawRefused(Exception):
    """A draw that may not happen: an HTTP status, a stable code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class PrizeView:
    """A prize as the pick and the answer see it (plain values: nothing to reload after the commit)."""

    id: int
    name: str
    kind: str
    weight: int
    per_member_cap: int | None
    points: int | None
    cash_fen: int | None
    coupon_activity_id: int | None
    sort_order: int
    colour: str

    @property
    def is_fallback(self) -> bool:
        return self.kind == "thanks"

    @classmethod
    def of(cls, prize: Prize) -> "PrizeView":
        return cls(*(getattr(prize, column.key) for column in PRIZE_COLUMNS))


PRIZE_COLUMNS = (Prize.id, Prize.name, Prize.kind, Prize.weight, Prize.per_member_cap, Prize.points, Prize.cash_fen,
                 Prize.coupon_activity_id, Prize.sort_order, Prize.colour)


@dataclass(frozen=True)
class DrawOutcome:
    draw_id: int
    draw_no: str
    drawn_at: datetime
    prize: PrizeView  # what was awarded (the fallback included)
    picked_prize_id: int  # where the wheel landed (another prize than `prize` when it fell back)
    fulfilment_status: str
    replayed: bool  # True: this idempotency key was drawn before; this is that draw
    draws_left: int | None  # lifetime draws the customer has left (None: no cap)
    draws_left_today: int | None  # draws left today (None: no daily cap)
    wheel: tuple[PrizeView, ...] = ()  # the prizes on the wheel as the draw read them (empty: not read)
    # the activity as the draw read it, still loaded after the commit (None: a replay, which did not
    # read it). Held here because the session only holds it weakly: once the draw returned, asking the
    # session for it again would cost a connection check-out and a query.
    theme: ThemeActivity | None = field(default=None, compare=False, repr=False)

    @property
    def won(self) -> bool:
        return not self.prize.is_fallback

    @property
    def fell_back(self) -> bool:
        return self.picked_prize_id != self.prize.id


# --- the draw -------------------------------------------------------------------------------------


def draw(theme_id: int, open_id: str, idempotency_key: str, *, channel: str = "h5", rng: Rng | None = None,
         now: datetime | None = None) -> DrawOutcome:
    """One draw for one customer, committed; the same key again returns the same draw. Raises DrawRefused."""
    return _draw(_Which(_BY_ID, {"theme_id": theme_id}), open_id, idempotency_key, channel, None, rng, now)


def draw_for_bank(theme_no: str, org_id: int, open_id: str, idempotency_key: str, *, api_client_id: int | None = None,
                  rng: Rng | None = None, now: datetime | None = None) -> DrawOutcome:
    """`draw` for a bank's API client: the theme activity by its 10-digit id, only among the bank's
    own (another bank's is not found); found in the same round trip as its prizes."""
    which = _Which(_BY_BANK, {"theme_no": theme_no, "org_id": org_id})
    return _draw(which, open_id, idempotency_key, "api", api_client_id, rng, now)


@dataclass(frozen=True)
class _Which:
    """How a draw names its theme activity: a criterion of `_BY_ID` or `_BY_BANK`, and its values."""

    criterion: ColumnElement[bool]
    params: dict


# The hot path's statements are built once, with bind parameters: SQLAlchemy then compiles each once
# per process and skips building it and computing its cache key at every draw (more than half of
# the engine's own CPU time when they were built per draw).
_BY_ID = ThemeActivity.id == bindparam("theme_id")
_BY_BANK = and_(ThemeActivity.theme_no == bindparam("theme_no"), ThemeActivity.org_id == bindparam("org_id"))


def _draw(which: _Which, open_id: str, key: str, channel: str, api_client_id: int | None,
          rng: Rng | None, now: datetime | None) -> DrawOutcome:
    """The happy path does not look for an earlier draw first (one round trip less per draw): a retry
    runs into the unique (activity, key) index, or into a refusal, and only then is the earlier
    draw looked up and answered — whatever changed since (a pause, a used-up limit)."""
    _check_request(open_id, key)
    now = now or utcnow()
    openid_hash = crypto.lookup_hash(open_id)
    try:
        outcome = _new_draw(which, open_id, openid_hash, key, channel, api_client_id, rng, now)
    except (DrawRefused, IntegrityError):  # a refusal, or a twin with the same key committed first
        db.session.rollback()
        earlier = _earlier_draw(which, key)
        if earlier is None:
            raise
        return _replay(earlier, openid_hash, now)
    commit_keeping_loaded()  # the H5 page answers from the theme just read: no need to read it again
    return outcome


def _check_request(open_id: str, idempotency_key: str) -> None:
    if not isinstance(open_id, str) or not OPEN_ID.match(open_id):
        raise DrawRefused(400, "INVALID_OPEN_ID", "openId: 1 to 128 letters, digits, '_' or '-'")
    if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY.match(idempotency_key):
        raise DrawRefused(400, "INVALID_IDEMPOTENCY_KEY", "the idempotency key is 1 to 128 printable ASCII characters")


def _new_draw(which: _Which, open_id: str, openid_hash: str, key: str, channel: str,
              api_client_id: int | None, rng: Rng | None, now: datetime) -> DrawOutcome:
    theme, prizes = _theme_and_prizes(which, openid_hash)
    if theme is None:
        raise DrawRefused(404, "THEME_NOT_FOUND", "no such theme activity")
    refusal = theme_refusal(theme, now)
    if refusal:
        raise refusal
    candidates = _drawable(prizes)
    fallback = next((c for c in candidates if c.is_fallback), None)
    if fallback is None:
        raise DrawRefused(409, "PRIZES_NOT_CONFIGURED", "the activity's prize pool has no fallback prize")
    today = business_day(now)
    counts = _count_participation(theme, open_id, openid_hash, now, today)
    picked = pick(candidates, rng or _system_random)
    capped_out = picked.per_member_cap is not None and not _count_member_win(picked, openid_hash)
    awarded = fallback if capped_out else picked
    draw_no = public_code("D", 16)
    draw_id = _record(theme, counts.id, key, channel, api_client_id, picked, awarded, draw_no, now, today)
    if not awarded.is_fallback:
        message = fulfilment.hand_over(draw_id, theme.org_id)
        if not _take_stock(picked):  # the hot row is locked last: held only until the commit that follows
            _fall_back(draw_id, picked, fallback, openid_hash, message)
            awarded = fallback
    status = "none" if awarded.is_fallback else "pending"
    wheel = tuple(prize.view for prize in prizes if prize.on_the_wheel)
    return DrawOutcome(draw_id, draw_no, now, awarded, picked.id, status, False, *_draws_left(theme, counts, today),
                       wheel=wheel, theme=theme)


_RECORD = insert(ThemeDraw.__table__).returning(ThemeDraw.__table__.c.id)


def _record(theme: ThemeActivity, participant_id: int, key: str, channel: str, api_client_id: int | None,
            picked: PrizeView, awarded: PrizeView, draw_no: str, now: datetime, today: date) -> int:
    return db.session.execute(_RECORD, dict(
        org_id=theme.org_id, draw_no=draw_no, theme_activity_id=theme.id, participant_id=participant_id,
        idempotency_key=key, channel=channel, api_client_id=api_client_id, picked_prize_id=picked.id,
        prize_id=awarded.id, won=not awarded.is_fallback, fulfilment_status="none" if awarded.is_fallback else "pending",
        drawn_at=now, drawn_day=today,
    )).scalar_one()


def business_day(moment: datetime) -> date:
    return as_utc(moment).astimezone(BUSINESS_TZ).date()


def theme_refusal(theme: ThemeActivity, now: datetime | None = None) -> DrawRefused | None:
    """Why no one may draw in this theme activity right now (None when draws are open)."""
    now = now or utcnow()
    if theme.status == "paused":
        return DrawRefused(409, "ACTIVITY_PAUSED", "the activity is paused")
    if theme.status == "expired" or as_utc(theme.end_at) <= now:
        return DrawRefused(409, "ACTIVITY_ENDED", "the activity is over")
    if as_utc(theme.start_at) > now:
        return DrawRefused(409, "ACTIVITY_NOT_STARTED", "the activity has not started yet")
    if not theme.wheel_enabled:
        return DrawRefused(409, "DRAWS_NOT_ENABLED", "the activity has no prize wheel turned on")
    if theme.participation_limit == 0 or theme.daily_limit == 0:
        return DrawRefused(409, "NOT_ELIGIBLE", "this activity takes no participants")
    return None


# --- limits ---------------------------------------------------------------------------------------


def _participation_upsert(insert_into) -> ColumnElement:
    """The guarded upsert counting one draw (a NULL limit is no cap: the limits are bound values)."""
    p = ThemeParticipant.__table__.c
    today, now = bindparam("today", type_=Date), bindparam("now", type_=DateTime(timezone=True))
    total_limit, daily_limit = bindparam("total_limit", type_=Integer), bindparam("daily_limit", type_=Integer)
    return insert_into(ThemeParticipant.__table__).values(
        org_id=bindparam("org_id"), theme_activity_id=bindparam("theme_id"), openid_hash=bindparam("openid_hash"),
        openid_enc=bindparam("openid_enc"), openid_masked=bindparam("openid_masked"), draws_total=1,
        draw_day=today, draws_on_day=1, first_draw_at=now, last_draw_at=now,
    ).on_conflict_do_update(
        index_elements=["theme_activity_id", "openid_hash"],
        set_={"draws_total": p.draws_total + 1,
              "draws_on_day": case((p.draw_day == today, p.draws_on_day + 1), else_=1),
              "draw_day": today, "last_draw_at": now},
        where=and_(or_(total_limit.is_(None), p.draws_total < total_limit),
                   or_(daily_limit.is_(None), p.draw_day != today, p.draws_on_day < daily_limit)),
    ).returning(p.id, p.draws_total, p.draw_day, p.draws_on_day)


def _member_win_upsert(insert_into) -> ColumnElement:
    """The guarded upsert counting one win of a capped prize for a customer."""
    c = PrizeMemberCount.__table__.c
    return insert_into(PrizeMemberCount.__table__).values(
        prize_id=bindparam("prize_id"), openid_hash=bindparam("openid_hash"), won=1,
    ).on_conflict_do_update(index_elements=["prize_id", "openid_hash"], set_={"won": c.won + 1},
                            where=c.won < bindparam("cap")).returning(c.won)


_COUNT_PARTICIPATION = upsert_built_once(_participation_upsert)
_COUNT_MEMBER_WIN = upsert_built_once(_member_win_upsert)


def _count_participation(theme: ThemeActivity, open_id: str, openid_hash: str, now: datetime, today: date):
    """One more draw for the customer, within the total and daily limits (a guarded upsert); the
    participant's (id, draws_total, draw_day, draws_on_day) after it."""
    counts = db.session.execute(_COUNT_PARTICIPATION(), dict(
        org_id=theme.org_id, theme_id=theme.id, openid_hash=openid_hash, openid_enc=crypto.encrypt(open_id),
        openid_masked=mask_openid(open_id), today=today, now=now, total_limit=theme.participation_limit,
        daily_limit=theme.daily_limit)).one_or_none()
    if counts is None:
        raise _limit_refusal(theme, openid_hash)
    return counts


_DRAWS_TOTAL = select(ThemeParticipant.draws_total).where(ThemeParticipant.theme_activity_id == bindparam("theme_id"),
                                                          ThemeParticipant.openid_hash == bindparam("openid_hash"))


def _limit_refusal(theme: ThemeActivity, openid_hash: str) -> DrawRefused:
    total = db.session.execute(_DRAWS_TOTAL, {"theme_id": theme.id, "openid_hash": openid_hash}).scalar_one()
    if theme.participation_limit is not None and total >= theme.participation_limit:
        return DrawRefused(409, "TOTAL_LIMIT_REACHED",
                           f"the customer has used all {theme.participation_limit} draws of this activity")
    return DrawRefused(409, "DAILY_LIMIT_REACHED", f"the customer has used today's {theme.daily_limit} draws")


def _draws_left(theme: ThemeActivity, participant, today: date) -> tuple[int | None, int | None]:
    total = None if theme.participation_limit is None else max(theme.participation_limit - participant.draws_total, 0)
    used_today = participant.draws_on_day if participant.draw_day == today else 0
    daily = None if theme.daily_limit is None else max(theme.daily_limit - used_today, 0)
    if total is not None and daily is not None:
        daily = min(daily, total)
    return total, daily


def draws_left_of(theme: ThemeActivity, openid_hash: str, now: datetime | None = None) -> tuple[int | None, int | None]:
    """(lifetime, today's) draws the customer has left, read without drawing (None: no cap)."""
    today = business_day(now or utcnow())
    participant = db.session.execute(
        select(ThemeParticipant.draws_total, ThemeParticipant.draw_day, ThemeParticipant.draws_on_day)
        .where(ThemeParticipant.theme_activity_id == theme.id, ThemeParticipant.openid_hash == openid_hash)
    ).one_or_none()
    return _draws_left(theme, participant or _NO_DRAWS_YET, today)


@dataclass(frozen=True)
class _NoDraws:
    draws_total: int = 0
    draw_day: date | None = None
    draws_on_day: int = 0


_NO_DRAWS_YET = _NoDraws()


# --- the pick and the stock -----------------------------------------------------------------------


@dataclass(frozen=True)
class _PoolPrize:
    """A prize of the pool as the draw reads it: what it is, and whether a pick may land on it now."""

    view: PrizeView
    on_the_wheel: bool  # switched on, or the fallback: a slice of the wheel
    drawable: bool  # on the wheel with stock left and under the customer's cap, or the fallback

    @classmethod
    def of(cls, row) -> "_PoolPrize":
        width = len(PRIZE_COLUMNS)
        prize, (enabled, remaining, won) = PrizeView(*row[:width]), row[width:]
        under_cap = prize.per_member_cap is None or (won or 0) < prize.per_member_cap
        return cls(prize, prize.is_fallback or enabled,
                   prize.is_fallback or (enabled and remaining > 0 and under_cap))


def _drawable(prizes: list[_PoolPrize]) -> list[PrizeView]:
    """The prizes a pick may land on now: enabled, with stock, under the customer's cap; and the fallback."""
    return [prize.view for prize in prizes if prize.drawable]


def _theme_and_prizes_query(which: ColumnElement[bool]):
    return (select(ThemeActivity, *PRIZE_COLUMNS, Prize.enabled, Prize.stock_remaining, PrizeMemberCount.won)
            .outerjoin(Prize, Prize.theme_activity_id == ThemeActivity.id)
            .outerjoin(PrizeMemberCount, and_(PrizeMemberCount.prize_id == Prize.id,
                                              PrizeMemberCount.openid_hash == bindparam("openid_hash")))
            .where(which).order_by(Prize.sort_order, Prize.id)
            .execution_options(populate_existing=True))


_THEME_AND_PRIZES = {id(which): _theme_and_prizes_query(which) for which in (_BY_ID, _BY_BANK)}


def _theme_and_prizes(which: _Which, openid_hash: str) -> tuple[ThemeActivity | None, list[_PoolPrize]]:
    """The theme activity as it is now (never a cached copy: a pause must bite at once) and its prizes
    with their stock and this customer's wins of each, in one round trip."""
    rows = db.session.execute(_THEME_AND_PRIZES[id(which.criterion)],
                              {**which.params, "openid_hash": openid_hash}).all()
    if not rows:
        return None, []
    return rows[0][0], [_PoolPrize.of(row[1:]) for row in rows if row[1] is not None]


def pick(candidates: list[PrizeView], rng: Rng) -> PrizeView:
    """One candidate, each with probability weight ÷ total weight (an exact integer draw)."""
    point = rng.randrange(sum(c.weight for c in candidates))
    for candidate in candidates:
        if point < candidate.weight:
            return candidate
        point -= candidate.weight
    raise AssertionError("unreachable: the point lies within the total weight")


_PRIZES = Prize.__table__.c
_TAKE_STOCK = (update(Prize.__table__)
               .where(_PRIZES.id == bindparam("prize_id"), _PRIZES.stock_remaining > 0, _PRIZES.enabled.is_(True))
               .values(stock_remaining=_PRIZES.stock_remaining - 1).returning(_PRIZES.id))


def _take_stock(prize: PrizeView) -> bool:
    """One unit of the prize's stock, if one is left (and the prize still on); False when gone."""
    return db.session.execute(_TAKE_STOCK, {"prize_id": prize.id}).scalar_one_or_none() is not None


def _fall_back(draw_id: int, picked: PrizeView, fallback: PrizeView, openid_hash: str, message) -> None:
    """The pick's last unit went to another draw a moment ago: this draw gets the fallback instead
    (its record, hand-over and the customer's count of the pick undone, in the same transaction)."""
    db.session.execute(update(ThemeDraw).where(ThemeDraw.id == draw_id)
                       .values(prize_id=fallback.id, won=False, fulfilment_status="none")
                       .execution_options(synchronize_session=False))
    db.session.delete(message)
    if picked.per_member_cap is not None:
        db.session.execute(update(PrizeMemberCount)
                           .where(PrizeMemberCount.prize_id == picked.id, PrizeMemberCount.openid_hash == openid_hash)
                           .values(won=PrizeMemberCount.won - 1).execution_options(synchronize_session=False))


def _count_member_win(prize: PrizeView, openid_hash: str) -> bool:
    return db.session.execute(_COUNT_MEMBER_WIN(), {
        "prize_id": prize.id, "openid_hash": openid_hash, "cap": prize.per_member_cap}).scalar_one_or_none() is not None


# --- replays and look-ups -------------------------------------------------------------------------


_EARLIER_DRAW = {id(which): select(ThemeDraw).join(ThemeActivity, ThemeActivity.id == ThemeDraw.theme_activity_id)
                 .where(which, ThemeDraw.idempotency_key == bindparam("key")) for which in (_BY_ID, _BY_BANK)}


def _earlier_draw(which: _Which, key: str) -> ThemeDraw | None:
    return db.session.execute(_EARLIER_DRAW[id(which.criterion)], {**which.params, "key": key}).scalar_one_or_none()


def _replay(earlier: ThemeDraw, openid_hash: str, now: datetime) -> DrawOutcome:
    participant = db.session.get(ThemeParticipant, earlier.participant_id)
    if participant.openid_hash != openid_hash:
        db.session.rollback()
        raise DrawRefused(422, "IDEMPOTENCY_KEY_REUSED", "this idempotency key was used for another customer's draw")
    theme = db.session.get(ThemeActivity, earlier.theme_activity_id)
    outcome = outcome_of(earlier, replayed=True, draws_left=_draws_left(theme, participant, business_day(now)))
    db.session.rollback()  # nothing was changed; end the read transaction
    return outcome


def outcome_of(record: ThemeDraw, *, replayed: bool = False,
               draws_left: tuple[int | None, int | None] = (None, None)) -> DrawOutcome:
    """A recorded draw as the engine answers it."""
    return DrawOutcome(record.id, record.draw_no, record.drawn_at, PrizeView.of(db.session.get(Prize, record.prize_id)),
                       record.picked_prize_id, record.fulfilment_status, replayed, *draws_left)


_THEME_FOR_BANK = select(ThemeActivity).where(_BY_BANK)
_DRAW_BY_NO = select(ThemeDraw).where(ThemeDraw.theme_activity_id == bindparam("theme_id"),
                                      ThemeDraw.draw_no == bindparam("draw_no"))


def theme_for_bank(theme_no: str, org_id: int) -> ThemeActivity | None:
    """A bank's theme activity by its 10-digit id (another bank's is None: not found)."""
    return db.session.execute(_THEME_FOR_BANK, {"theme_no": theme_no, "org_id": org_id}).scalar_one_or_none()


def find_draw(theme_id: int, draw_no: str) -> ThemeDraw | None:
    return db.session.execute(_DRAW_BY_NO, {"theme_id": theme_id, "draw_no": draw_no}).scalar_one_or_none()


def draws_of(theme_id: int, open_id: str, limit: int = 50) -> list[tuple[ThemeDraw, Prize]]:
    """A customer's draws in one theme activity, newest first ("my prizes" shows those with `won`)."""
    rows = db.session.execute(
        select(ThemeDraw, Prize).join(Prize, Prize.id == ThemeDraw.prize_id)
        .join(ThemeParticipant, ThemeParticipant.id == ThemeDraw.participant_id)
        .where(ThemeParticipant.theme_activity_id == theme_id,
               ThemeParticipant.openid_hash == crypto.lookup_hash(open_id))
        .order_by(ThemeDraw.drawn_at.desc(), ThemeDraw.id.desc()).limit(limit)).all()
    return [(row[0], row[1]) for row in rows]
