"""Helpers of the draw records and gift shipping tests: a bank's theme activity with a gift, points and
the fallback on its wheel, draws made by the real engine with an RNG that lands where the test says,
fulfilment delivered through the outbox, and addresses left the way the H5 page leaves them."""
from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from datetime import timedelta

from openpyxl import Workbook
from sqlalchemy import select, update

from app.activities import draw as engine
from app.activities import fulfilment
from app.activities.prize_models import Prize, ThemeDraw
from app.core import outbox
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.extensions import db

_keys = itertools.count(1)
GIFT, POINTS, THANKS = 0, 100, 200  # where an RNG lands on the wheel below (weights 100, 100, 1)


class Lands:
    """An RNG that lands on one point of the total weight every time."""

    def __init__(self, point: int):
        self.point = point

    def randrange(self, stop: int) -> int:
        return min(self.point, stop - 1)


class EmptiesThePick:
    """Lands on a prize and, at that very moment, a concurrent draw takes its last unit (the draw
    falls back to "thanks for taking part")."""

    def __init__(self, prize: Prize, point: int):
        self.prize_id, self.point = prize.id, point

    def randrange(self, stop: int) -> int:
        db.session.execute(update(Prize).where(Prize.id == self.prize_id).values(stock_remaining=0)
                           .execution_options(synchronize_session=False))
        return self.point


@dataclass
class Wheel:
    theme: object
    gift: Prize
    points: Prize


def gift_wheel(make, bank, **values) -> Wheel:
    """A running theme activity (started five days ago) with a gift, points and the fallback."""
    theme = make.wheel_theme(bank, thanks_weight=1, start_at=utcnow() - timedelta(days=5), **values)
    gift = make.prize(theme, kind="gift", name="保温杯", stock=50, weight=100, sort_order=1)
    points = make.prize(theme, kind="points", name="100积分", points=100, stock=50, weight=100, sort_order=2)
    return Wheel(theme, gift, points)


def spin(theme, open_id: str = "oCustomer00001", point: int = GIFT, rng=None, **kwargs) -> engine.DrawOutcome:
    return engine.draw(theme.id, open_id, f"key-{next(_keys)}", rng=rng or Lands(point), **kwargs)


def fulfil(outcome: engine.DrawOutcome) -> None:
    """Deliver the draw's fulfilment message (as the outbox worker would)."""
    message = db.session.execute(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"{fulfilment.FULFIL_KIND}:{outcome.draw_id}")).scalar_one()
    outbox.deliver(message.id)


def gift_with_address(theme, open_id: str = "oWinner000001", recipient: str = "张三", phone: str = "13800138000",
                      address: str = "上海市浦东新区世纪大道1号", **kwargs) -> engine.DrawOutcome:
    """A gift won, its fulfilment run, and the winner's address left (status address_given)."""
    outcome = spin(theme, open_id, GIFT, **kwargs)
    fulfil(outcome)
    fulfilment.leave_address(theme.id, outcome.draw_no, open_id, recipient, phone, address)
    return outcome


def draw_row(outcome) -> ThemeDraw:
    return db.session.get(ThemeDraw, outcome.draw_id, populate_existing=True)


def workbook(rows: list[tuple]) -> io.BytesIO:
    """An xlsx like the exported shipping list: a header row, then (draw no., tracking no.) rows."""
    book = Workbook()
    sheet = book.active
    sheet.append(["抽奖单号", "快递单号", "礼品"])
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    out.seek(0)
    return out
