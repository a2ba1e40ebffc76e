"""Demo data of the theme activities' roulette, seeded by `flask demo seed` after the coupon demo
(app/coupons/demo.py) made the demo bank's theme activity and its coupon activities. Idempotent like
that seed: every row made here has a key (a prize its name, a draw its idempotency key, a customer's
visits the customer), so a second run adds nothing and fails on nothing.

Everything goes through the services an operator's screens and a customer's H5 page use, so the
counters, ledgers, outbox messages and audit events are the ones real use leaves:
- the prize pool, added by the bank's operator (`prizes.ensure_fallback`, `prizes.add_prize`): a
  coupon of the demo's WeChat coupon activity (云数汇), 188 and 888 points, a cash red packet, a
  gift and the "thanks for taking part" fallback; then the wheel, ordered, coloured and turned on
  through the roulette designer (`wheel_designer.save_design`), as "Configure wheel" does;
- 30 customers, who are the 云数汇 sandbox's customers (`ensure_customer`): its OpenID page offers
  them, so a person trying the H5 page can be one of them and see their prizes;
- the week before today (not today: every customer still has today's draw to try): the customers'
  page views (`visits.record_visit(now=…)`) and about 40 draws on days they visited
  (`draw.draw(now=…)`, limits and stock held by the engine; a seeded RNG, so a fresh database draws
  the same prizes). Their fulfilment runs at once through the outbox (`outbox.deliver`, as the
  worker would): points and cash credited, coupons queued in the coupon pipeline (the workers issue
  them through the sandbox once the app runs), gifts waiting for an address. Two gift winners leave
  an address (`fulfilment.leave_address`) and the bank's operator ships one (`records.ship`).
The pool, the wheel and the shipping are dated now, the draws and visits in the past week (the
engine takes a draw's moment, the designer does not): the activity's history says the wheel was
turned on today.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from app.core import crypto, outbox
from app.core.timeutil import BUSINESS_TZ, as_utc, business_today
from app.coupons.models import CouponActivity
from app.extensions import db

from . import draw, fulfilment, prizes, records, visits, wheel_designer
from .models import ThemeActivity
from .prize_models import Prize, PrizeDelivery, ThemeDraw, ThemeParticipant, ThemeVisit

if TYPE_CHECKING:
    from app.auth.models import Operator

OPERATOR = "east_operator"  # the demo bank's operator runs its theme activity
KEY_PREFIX = "DEMO-WHEEL-"
HISTORY_DAYS = 7
VISIT_SEED = 20260602
DRAW_SEED = 20260603
SPIN_SHARE = 0.65  # of the days a customer opens the page, the share they spin on
# The 云数汇 sandbox's customers (nicknames); their openids are the sandbox's.
CUSTOMERS = ("王芳", "李娜", "张伟", "刘洋", "陈静", "杨磊", "黄敏", "赵强", "吴艳", "周杰", "徐丽", "孙涛", "马超",
             "朱娟", "胡军", "郭秀英", "何平", "高明", "林霞", "罗刚", "梁爽", "宋佳", "郑凯", "谢婷", "韩雪", "唐宁",
             "冯博", "于倩", "董浩", "萧然")
# Where the first gift winners have their gift sent (the recipient is the winner).
ADDRESSES = ("上海市浦东新区世纪大道100号华东大厦12楼", "浙江省杭州市西湖区文三路200号3幢502室")
TRACKING_NO = "SF1402263075810"


@dataclass(frozen=True)
class DemoPrize:
    name: str  # short (up to about 4.9 ems, `wheel_drawing._width`): read in full across a slice of 6
    kind: str
    sort_order: int
    weight: int
    colour: str
    stock: int
    per_member_cap: int | None = None
    points: int | None = None
    cash_fen: int | None = None


PRIZES = [
    DemoPrize("立减10元", "coupon", 1, 20, "#e53935", 100, per_member_cap=1),
    DemoPrize("188积分", "points", 2, 25, "#ffb300", 300, points=188),
    DemoPrize("8.8元红包", "cash", 3, 12, "#d81b60", 100, cash_fen=880),
    DemoPrize("保温杯", "gift", 5, 10, "#fb8c00", 20, per_member_cap=1),
    DemoPrize("888积分", "points", 6, 5, "#8e24aa", 30, points=888),
]
FALLBACK_ORDER, FALLBACK_WEIGHT, FALLBACK_COLOUR = 4, 28, "#fff3e0"  # between the red packet and the gift


@dataclass(frozen=True)
class Visit:
    """One customer's day on the H5 page: page views from `at`, a minute apart, then maybe a spin."""

    customer: int
    open_id: str
    at: datetime
    views: int
    draw_key: str | None  # None: only looked

    @property
    def draw_at(self) -> datetime:
        return self.at + timedelta(minutes=self.views + 1)


def seed_wheel_demo(theme: ThemeActivity, coupon: CouponActivity) -> dict:
    """Seed (or complete) the wheel of the demo theme activity and its last week; what was made."""
    from app.auth.models import Operator

    operator = db.session.execute(select(Operator).where(Operator.username == OPERATOR)).scalar_one()
    _seed_pool(operator, theme, coupon)
    _turn_wheel_on(operator, theme)
    openids = customers()
    _seed_history(theme, openids)
    _fulfil(theme)
    _seed_deliveries(operator, theme, openids)
    drawn = demo_draws(theme)
    return {"theme": theme, "draws": len(drawn), "customers": len(openids)}


# --- the pool and the wheel --------------------------------------------------------------------------

def _seed_pool(operator: "Operator", theme: ThemeActivity, coupon: CouponActivity) -> None:
    have = {p.name for p in prizes.prizes_of(theme)}
    prizes.ensure_fallback(theme, operator.id)
    for spec in PRIZES:
        if spec.name in have:
            continue
        prizes.add_prize(operator, theme, prizes.PrizeDetails(
            name=spec.name, kind=spec.kind, coupon_activity_id=coupon.id if spec.kind == "coupon" else None,
            points=spec.points, cash_fen=spec.cash_fen, stock_total=spec.stock, per_member_cap=spec.per_member_cap,
            weight=spec.weight, sort_order=spec.sort_order, colour=spec.colour))


def _turn_wheel_on(operator: "Operator", theme: ThemeActivity) -> None:
    """The designer's wheel with the fallback in its place and colour, saved turned on."""
    if theme.wheel_enabled:
        return
    design = wheel_designer.read_wheel(theme)
    pool = {f"prize-{p.id}": p for p in prizes.prizes_of(theme)}
    for row in design.rows:
        prize = pool[row.key]
        if prize.is_fallback:
            row.sort_order, row.weight, row.colour = FALLBACK_ORDER, FALLBACK_WEIGHT, FALLBACK_COLOUR
        else:
            row.sort_order = prize.sort_order
    wheel_designer.save_design(operator, theme, wheel_designer.Design(wheel_on=True, rows=design.rows))


# --- customers and their week ----------------------------------------------------------------------------

def customers() -> list[str]:
    """The demo customers' openids: the 云数汇 sandbox's customers of those nicknames (made once)."""
    from app.sandbox import yunshuhui as ysh_sandbox

    return [ysh_sandbox.ensure_customer(nickname).openid for nickname in CUSTOMERS]


def plan(openids: list[str], today: date) -> list[Visit]:
    """Each customer's days on the page in the week before `today`, in time order (the same every run)."""
    rng = random.Random(VISIT_SEED)
    planned = []
    for n, open_id in enumerate(openids):
        days = sorted(rng.sample(range(1, HISTORY_DAYS + 1), rng.choice((1, 2, 2, 3, 3))), reverse=True)
        for k, days_ago in enumerate(days):
            at = datetime.combine(today - timedelta(days=days_ago), time(rng.randint(8, 21), rng.randint(0, 54)),
                                  tzinfo=BUSINESS_TZ)
            views = rng.randint(1, 3)
            spins = rng.random() < SPIN_SHARE
            planned.append(Visit(n, open_id, as_utc(at), views, f"{KEY_PREFIX}{n:02d}-{k}" if spins else None))
    return sorted(planned, key=lambda visit: (visit.at, visit.customer))


def _seed_history(theme: ThemeActivity, openids: list[str]) -> None:
    """The planned views and draws, skipping a customer who has visits and a draw whose key exists."""
    visited = set(db.session.execute(select(ThemeVisit.openid_hash).where(
        ThemeVisit.theme_activity_id == theme.id)).scalars())
    drawn = {d.idempotency_key for d in demo_draws(theme)}
    newcomers = {open_id for open_id in openids if crypto.lookup_hash(open_id) not in visited}
    rng = random.Random(DRAW_SEED)
    for visit in plan(openids, business_today()):
        if visit.open_id in newcomers:
            for minute in range(visit.views):
                visits.record_visit(theme, visit.open_id, now=visit.at + timedelta(minutes=minute))
        if visit.draw_key and visit.draw_key not in drawn:
            draw.draw(theme.id, visit.open_id, visit.draw_key, rng=rng, now=visit.draw_at)


def demo_draws(theme: ThemeActivity) -> list[ThemeDraw]:
    """The seeded draws of the theme activity (not those a person makes trying it), oldest first."""
    return list(db.session.execute(select(ThemeDraw).where(
        ThemeDraw.theme_activity_id == theme.id, ThemeDraw.idempotency_key.startswith(KEY_PREFIX))
        .order_by(ThemeDraw.drawn_at, ThemeDraw.id)).scalars())


def _fulfil(theme: ThemeActivity) -> None:
    """Deliver the seeded wins' fulfilment messages now, as the outbox worker would (once each)."""
    pending = [f"{fulfilment.FULFIL_KIND}:{d.id}" for d in demo_draws(theme) if d.fulfilment_status == "pending"]
    if not pending:
        return
    messages = db.session.execute(select(outbox.OutboxMessage.id).where(
        outbox.OutboxMessage.dedupe_key.in_(pending), outbox.OutboxMessage.status == "pending")).scalars().all()
    for message_id in messages:
        outbox.deliver(message_id)


# --- gifts ------------------------------------------------------------------------------------------------

def _seed_deliveries(operator: "Operator", theme: ThemeActivity, openids: list[str]) -> None:
    """The first gift winners leave their address (two in all), and the first of them is shipped."""
    nicknames = {crypto.lookup_hash(open_id): (n, CUSTOMERS[n]) for n, open_id in enumerate(openids)}
    gifts = db.session.execute(
        select(ThemeDraw, ThemeParticipant.openid_hash).join(Prize, Prize.id == ThemeDraw.prize_id)
        .join(ThemeParticipant, ThemeParticipant.id == ThemeDraw.participant_id)
        .where(ThemeDraw.theme_activity_id == theme.id, ThemeDraw.idempotency_key.startswith(KEY_PREFIX),
               Prize.kind == "gift").order_by(ThemeDraw.drawn_at, ThemeDraw.id)).all()
    given = sum(1 for d, _hash in gifts if d.fulfilment_status in ("address_given", "shipped"))
    for d, openid_hash in gifts:
        if given >= len(ADDRESSES):
            break
        if d.fulfilment_status == "awaiting_address" and openid_hash in nicknames:
            n, nickname = nicknames[openid_hash]
            fulfilment.leave_address(theme.id, d.draw_no, openids[n], nickname, f"139{n + 1:08d}", ADDRESSES[given])
            given += 1
    if any(d.fulfilment_status == "shipped" for d, _hash in gifts):
        return
    first = db.session.execute(
        select(ThemeDraw.id).join(PrizeDelivery, PrizeDelivery.draw_id == ThemeDraw.id)
        .where(ThemeDraw.theme_activity_id == theme.id, ThemeDraw.idempotency_key.startswith(KEY_PREFIX),
               ThemeDraw.fulfilment_status == "address_given").order_by(ThemeDraw.drawn_at, ThemeDraw.id).limit(1)
    ).scalar_one_or_none()
    if first is not None:
        records.ship(operator, theme, [first], TRACKING_NO)
