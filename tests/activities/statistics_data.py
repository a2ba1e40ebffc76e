"""A crafted data set for the theme activity statistics, made through the real draw engine and
fulfilment (visits are inserted directly: the H5 page records them the same way).

Bank A's activity runs on the Shanghai days 2025-03-01 … 2025-03-10 with a coupon prize (stock 5),
a points prize (stock 2) and the "thanks" fallback, each of weight 10 (a pick of 0 lands on the coupon,
10 on the points, 20 on the fallback):

| customer | visits (views)                     | draws (Shanghai time)                                             |
|----------|------------------------------------|-------------------------------------------------------------------|
| Alice    | 03-01 (3), 03-02 (1), 03-08 (1)    | 03-01 10:00 coupon (issued, used 03-04 10:00); 03-02 00:00:30 thanks |
| Bob      | 03-01 (2)                          | 03-01 23:59:59 points; 03-03 09:00 coupon (issued, not used)      |
| Carol    | 03-04 (1)                          | 03-04 12:00 thanks                                                |
| Dave     | 03-05 (4)                          | —                                                                 |
| Erin     | — (the bank's API)                 | 03-05 15:00 coupon (the issue failed)                             |

Alice's second draw lies 30 seconds after a Shanghai midnight that is 16:00 UTC, and Bob's first one
second before it: grouped by UTC days, both would fall on March 1. Bank B has an activity of its own
with visits and draws on the same days, which bank A must never see.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select

from app.activities import draw as engine
from app.activities import fulfilment
from app.activities.models import ThemeActivity
from app.activities.prize_models import Prize, ThemeVisit
from app.core import crypto, outbox
from app.core.outbox import OutboxMessage
from app.core.timeutil import BUSINESS_TZ, as_utc
from app.coupons.models import CouponIssue, PartnerBank
from app.extensions import db
from app.orgs.models import Organisation
from tests.coupons.ysh_sandbox import connect_ysh_account

COUPON, POINTS, THANKS = 0, 10, 20  # the pick that lands on each prize


class Pick:
    def __init__(self, point: int):
        self.point = point

    def randrange(self, stop: int) -> int:
        return min(self.point, stop - 1)  # the last candidate when the pool has shrunk


def sh(text: str) -> datetime:
    """A Shanghai wall-clock time 'YYYY-MM-DD HH:MM:SS' as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=BUSINESS_TZ)


@dataclass
class StatisticsWorld:
    bank: Organisation
    other_bank: Organisation
    partner: PartnerBank
    other_partner: PartnerBank
    theme: ThemeActivity
    other_theme: ThemeActivity
    coupon: Prize
    points: Prize
    thanks: Prize


def visit(theme: ThemeActivity, open_id: str, day: str, views: int) -> None:
    at = sh(f"{day} 09:00:00")
    db.session.add(ThemeVisit(org_id=theme.org_id, theme_activity_id=theme.id, openid_hash=crypto.lookup_hash(open_id),
                              visit_day=date.fromisoformat(day), views=views, first_at=at, last_at=at))
    db.session.commit()


def spin(theme: ThemeActivity, open_id: str, when: str, pick: int, channel: str = "h5") -> engine.DrawOutcome:
    return engine.draw(theme.id, open_id, f"{open_id}-{when}".replace(" ", "T"), channel=channel, rng=Pick(pick),
                       now=sh(when))


def coupon_issue(outcome: engine.DrawOutcome, status: str = "succeeded", used_at: str | None = None) -> CouponIssue:
    """Fulfil a coupon win (the real hand-over into the coupon pipeline), then settle the issue as 云数汇 would."""
    message = db.session.execute(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"{fulfilment.FULFIL_KIND}:{outcome.draw_id}")).scalar_one()
    outbox.deliver(message.id)
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.call_trade_no == f"DRAW{outcome.draw_no}")
                               ).scalar_one()
    issue.status = status
    if used_at:
        issue.redemption_status, issue.used_at = "used", as_utc(sh(used_at))
    db.session.commit()
    return issue


def _partner(org: Organisation, code: str) -> PartnerBank:
    partner = PartnerBank(code=code, name=org.name, kind="commercial", org_id=org.id, status="normal")
    db.session.add(partner)
    db.session.commit()
    return partner


def _theme(make, org: Organisation, partner: PartnerBank, name: str):
    theme = make.wheel_theme(org, name=name, partner_bank_id=partner.id, start_at=sh("2025-03-01 00:00:00"),
                             end_at=sh("2025-03-11 00:00:00"))
    coupon_activity = make.coupon_activity(theme=theme, issue_total=100, per_member_limit=5)
    coupon = make.prize(theme, kind="coupon", name="十元券", coupon_activity_id=coupon_activity.id, stock=5, sort_order=1)
    points = make.prize(theme, kind="points", name="100积分", stock=2, sort_order=2)
    thanks = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.kind == "thanks")
                                ).scalar_one()
    return theme, coupon, points, thanks


def statistics_world(make) -> StatisticsWorld:
    bank = make.org(kind="bank", name="华东银行")
    other_bank = make.org(kind="bank", name="华南银行")
    partner, other_partner = _partner(bank, "31290000"), _partner(other_bank, "31300000")
    connect_ysh_account(bank)
    theme, coupon, points, thanks = _theme(make, bank, partner, "春节转盘")
    other_theme = make.wheel_theme(other_bank, name="华南转盘", partner_bank_id=other_partner.id,
                                   start_at=sh("2025-03-01 00:00:00"), end_at=sh("2025-03-11 00:00:00"))
    make.prize(other_theme, kind="points", stock=10, sort_order=1)

    for open_id, day, views in (("oAlice", "2025-03-01", 3), ("oAlice", "2025-03-02", 1), ("oAlice", "2025-03-08", 1),
                                ("oBob", "2025-03-01", 2), ("oCarol", "2025-03-04", 1), ("oDave", "2025-03-05", 4)):
        visit(theme, open_id, day, views)
    coupon_issue(spin(theme, "oAlice", "2025-03-01 10:00:00", COUPON), used_at="2025-03-04 10:00:00")
    spin(theme, "oAlice", "2025-03-02 00:00:30", THANKS)
    spin(theme, "oBob", "2025-03-01 23:59:59", POINTS)
    coupon_issue(spin(theme, "oBob", "2025-03-03 09:00:00", COUPON))
    spin(theme, "oCarol", "2025-03-04 12:00:00", THANKS)
    coupon_issue(spin(theme, "oErin", "2025-03-05 15:00:00", COUPON, channel="api"), status="failed")

    for open_id in ("oXavier", "oYvonne"):  # bank B's customers
        visit(other_theme, open_id, "2025-03-02", 5)
        spin(other_theme, open_id, "2025-03-02 11:00:00", 0)
    return StatisticsWorld(bank, other_bank, partner, other_partner, theme, other_theme, coupon, points, thanks)
