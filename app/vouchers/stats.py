"""Voucher statistics for a date range and a store: totals and verification rate, shares by
platform and by voucher type, daily verification count and amount.

Vouchers count by the day we first learnt of them (`created_at`, Shanghai dates); verifications
by the day they were verified (`verified_at`, status verified, so undone ones drop out). The caller
passes the statement scope (`tenancy.scoped` for the operator, plus the store's subtree), so the
figures never include another organisation's rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Callable

from sqlalchemy import Select, case, func, select

from app.core.timeutil import BUSINESS_TZ, local_day_range, to_local
from app.extensions import db
from app.members.models import Product
from app.vouchers.models import Voucher, VoucherVerification

VERIFIED_STATUSES = ("used", "partly_used")  # at least one use verified
REFUNDED_STATUSES = ("refunded", "refunding")
DEFAULT_DAYS = 30


@dataclass
class VoucherStats:
    first: date
    last: date
    total: int = 0
    verified: int = 0
    unverified: int = 0
    expired: int = 0
    refunded: int = 0
    by_platform: list[dict] = field(default_factory=list)  # platform, count, verified, rate_pct, paid_fen
    by_type: list[dict] = field(default_factory=list)  # type (product kind or "unmapped"), count, verified
    days: list[date] = field(default_factory=list)
    daily_count: list[int] = field(default_factory=list)  # uses verified per day
    daily_amount_fen: list[int] = field(default_factory=list)

    @property
    def rate_pct(self) -> float:
        """Share of the vouchers with at least one use verified, in percent (one decimal)."""
        return round(100 * self.verified / self.total, 1) if self.total else 0.0


def default_range(today: date) -> tuple[date, date]:
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def _rate(verified: int, total: int) -> float:
    return round(100 * verified / total, 1) if total else 0.0


def compute(first: date, last: date, scope: Callable[[type, Select], Select]) -> VoucherStats:
    """The figures of [first, last] (Shanghai dates, inclusive). `scope(model, stmt)` limits a
    statement to the rows the caller may see (and to the chosen store)."""
    stats = VoucherStats(first=first, last=last)
    start, end = local_day_range(first, last)
    in_range = (Voucher.created_at >= start, Voucher.created_at < end)
    verified = func.sum(case((Voucher.status.in_(VERIFIED_STATUSES), 1), else_=0))

    by_status = db.session.execute(scope(Voucher, select(Voucher.status, func.count()).where(*in_range)
                                         .group_by(Voucher.status))).all()
    counts = dict(by_status)
    stats.total = sum(counts.values())
    stats.verified = sum(counts.get(s, 0) for s in VERIFIED_STATUSES)
    stats.unverified = counts.get("unused", 0)
    stats.expired = counts.get("expired", 0)
    stats.refunded = sum(counts.get(s, 0) for s in REFUNDED_STATUSES)

    rows = db.session.execute(scope(Voucher, select(Voucher.platform, func.count(), verified,
                                                    func.coalesce(func.sum(Voucher.paid_price_fen), 0))
                                    .where(*in_range).group_by(Voucher.platform).order_by(Voucher.platform))).all()
    stats.by_platform = [dict(platform=p, count=n, verified=int(v or 0), rate_pct=_rate(int(v or 0), n),
                              paid_fen=int(paid)) for p, n, v, paid in rows]

    kind = func.coalesce(Product.kind, "unmapped")
    rows = db.session.execute(scope(Voucher, select(kind, func.count(), verified)
                                    .select_from(Voucher).outerjoin(Product, Product.id == Voucher.product_id)
                                    .where(*in_range).group_by(kind).order_by(kind))).all()
    stats.by_type = [dict(type=k, count=n, verified=int(v or 0), rate_pct=_rate(int(v or 0), n)) for k, n, v in rows]

    stats.days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    daily: dict[date, list[int]] = {day: [0, 0] for day in stats.days}
    verified_rows = scope(VoucherVerification, select(VoucherVerification.verified_at, VoucherVerification.count,
                                                      VoucherVerification.amount_fen)
                          .where(VoucherVerification.status == "verified", VoucherVerification.verified_at >= start,
                                 VoucherVerification.verified_at < end))
    if db.session.get_bind().dialect.name == "postgresql":
        sub = verified_rows.subquery()
        grouped = select(func.date(func.timezone(str(BUSINESS_TZ), sub.c.verified_at)).label("day"),
                         func.sum(sub.c.count), func.coalesce(func.sum(sub.c.amount_fen), 0)).group_by("day")
        for day, uses, amount in db.session.execute(grouped).all():
            if day in daily:
                daily[day] = [int(uses), int(amount)]
    else:  # SQLite (the embedded default) has no time zones: group in Python
        for verified_at, uses, amount in db.session.execute(verified_rows).all():
            day = to_local(verified_at).date()
            if day in daily:
                daily[day][0] += uses
                daily[day][1] += amount or 0
    stats.daily_count = [daily[day][0] for day in stats.days]
    stats.daily_amount_fen = [daily[day][1] for day in stats.days]
    return stats
