"""Coupon reports (数据中心): the figures behind issue details, redemption details, the daily and
monthly issue summaries, the daily and monthly redemption summaries, and the KPI cards of a
coupon activity's issued and redemption tabs.

Every statement starts from `tenancy.scoped(CouponIssue, actor)`, so a bank's operator counts and
lists only the coupons its own bank issued; a platform operator may narrow to one bank
(`ReportFilters.org_id`). Days and months are Asia/Shanghai and are grouped in SQL
(`local_day` / `local_month`): PostgreSQL shifts with `timezone('Asia/Shanghai', …)`, SQLite (the
embedded default) adds eight hours (Shanghai has kept UTC+8 without daylight saving since 1991).

Business words, decided here (README design notes):
- an *issue request* is one row (one call of the bank's issue API); it is *issued* when 云数汇
  said SUCCESS; the *issue day* is the Shanghai day the bank asked (`created_at`, the
  `ix_coupon_issues_org_created` index);
- console status of an issue: issuing (queued or processing), issued (succeeded, not yet used),
  used, expired, failed. §2's "returned" (已退回) is read as *failed*: 云数汇 refused the coupon
  and its place goes back to the activity's issue total; no other "returned" state exists;
- a *redemption* is an issue 云数汇 reported USED, on the Shanghai day of `used_at`
  (`ix_coupon_issues_org_used`); its amount is the discount 云数汇 reported (`promo_amount_fen`,
  else the activity's face value). 云数汇 sends only USED / EXPIRED, so the failed, partial and
  reversed redemption states of the prototype never occur and are not offered;
- *success rate* = issued ÷ issue requests; *redemption rate* = redeemed ÷ issued of the same
  period (so a month can redeem coupons issued before it); *face value issued* is the sum of
  the activity's face value over the coupons issued;
- month-on-month growth compares a month with the month before it in the range: "-" for the
  first month and after a month with none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, or_, select

from app.activities.models import ThemeActivity
from app.core import crypto
# clamp_days stays importable from here: the report screens use it.
from app.core.reporting import as_date, clamp_days, local_day, local_month, percent  # noqa: F401
from app.core.tenancy import in_org_subtree, scoped
from app.core.timeutil import local_day_range
from app.coupons.models import COUPON_TYPES, CouponActivity, CouponIssue
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import Operator

ISSUE_STATES = ("issuing", "issued", "used", "expired", "failed")
PENDING_STATUSES = ("queued", "processing")
MAX_MONTHS = 24
DEFAULT_MONTHS = 6  # the "half-year" of the monthly summaries


# --- filters -----------------------------------------------------------------------------------

@dataclass
class ReportFilters:
    """What a report is limited to; every field empty means "all the operator may see"."""

    activity: str = ""  # a coupon activity's code (exact or its beginning) or part of its name
    coupon_type: str = ""
    theme_no: str = ""  # the theme activity's 10-digit id
    openid: str = ""  # the whole openid (found by its keyed hash)
    state: str = ""  # one of ISSUE_STATES
    serial: str = ""  # our order no., the bank's serial, 云数汇's trade no. or coupon id
    merchant_no: str = ""
    member_id: str = ""  # the bank's own id of its customer
    org_id: str = ""  # one bank (platform operators)
    coupon_activity_id: int | None = None  # fixed by a coupon activity's tabs
    first: date | None = None  # Shanghai dates, inclusive
    last: date | None = None


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or before) `day`'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def clamp_months(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """A month range (first days of months), defaulting to the last six months, at most 24."""
    last = month_start(last or today)
    first = month_start(first) if first else add_months(last, -(DEFAULT_MONTHS - 1))
    if last < first:
        first, last = last, first
    if months_between(first, last) > MAX_MONTHS:
        first = add_months(last, -(MAX_MONTHS - 1))
    return first, last


def months_between(first: date, last: date) -> int:
    """How many months first..last (both first days of months) covers."""
    return (last.year - first.year) * 12 + last.month - first.month + 1


def _activity_ids(actor: "Operator", f: ReportFilters) -> Select | None:
    """The visible coupon activities the activity, coupon-type and theme filters leave (None: no such filter)."""
    conditions = []
    text = f.activity.strip()
    if text:
        conditions.append(or_(CouponActivity.code.startswith(text, autoescape=True),
                              CouponActivity.name.contains(text, autoescape=True)))
    if f.coupon_type in COUPON_TYPES:
        conditions.append(CouponActivity.coupon_type == f.coupon_type)
    if f.theme_no.strip():
        conditions.append(CouponActivity.theme_activity_id.in_(
            select(ThemeActivity.id).where(ThemeActivity.theme_no == f.theme_no.strip())))
    if not conditions:
        return None
    return scoped(CouponActivity, actor, select(CouponActivity.id)).where(*conditions)


def visible_issues(actor: "Operator", f: ReportFilters, stmt: Select | None = None) -> Select:
    """Issues the operator may see, limited by the bank and activity filters (not by time)."""
    stmt = scoped(CouponIssue, actor, stmt)
    if f.org_id:
        stmt = stmt.where(in_org_subtree(actor, CouponIssue.org_id, f.org_id))
    if f.coupon_activity_id is not None:
        stmt = stmt.where(CouponIssue.coupon_activity_id == f.coupon_activity_id)
    activity_ids = _activity_ids(actor, f)
    if activity_ids is not None:
        stmt = stmt.where(CouponIssue.coupon_activity_id.in_(activity_ids))
    return stmt


def state_condition(state: str):
    """The SQL condition of one console status (ISSUE_STATES)."""
    return {
        "issuing": CouponIssue.status.in_(PENDING_STATUSES),
        "issued": (CouponIssue.status == "succeeded") & CouponIssue.redemption_status.is_(None),
        "used": CouponIssue.redemption_status == "used",
        "expired": CouponIssue.redemption_status == "expired",
        "failed": CouponIssue.status == "failed",
    }[state]


def issue_state(issue: CouponIssue) -> str:
    """The console status of one issue (see the module docstring)."""
    if issue.status in PENDING_STATUSES:
        return "issuing"
    if issue.status == "failed":
        return "failed"
    return issue.redemption_status or "issued"


def _in_days(column, first: date | None, last: date | None) -> list:
    start, end = local_day_range(first, last)
    return [c for c in ((column >= start) if start else None, (column < end) if end else None) if c is not None]


def _openid_condition(openid: str):
    return CouponIssue.openid_hash == crypto.lookup_hash(openid.strip())


# --- details -----------------------------------------------------------------------------------

def issue_details(actor: "Operator", f: ReportFilters) -> Select:
    """发放明细: the visible issue rows matching the filters, newest first."""
    stmt = visible_issues(actor, f).where(*_in_days(CouponIssue.created_at, f.first, f.last))
    serial = f.serial.strip()
    if serial:
        stmt = stmt.where(or_(CouponIssue.order_no == serial, CouponIssue.call_trade_no == serial,
                              CouponIssue.trade_no == serial, CouponIssue.third_coupon_id == serial))
    if f.openid.strip():
        stmt = stmt.where(_openid_condition(f.openid))
    if f.member_id.strip():
        stmt = stmt.where(CouponIssue.bank_member_id == f.member_id.strip())
    if f.state in ISSUE_STATES:
        stmt = stmt.where(state_condition(f.state))
    return stmt.order_by(CouponIssue.created_at.desc(), CouponIssue.id.desc())


def redemption_details(actor: "Operator", f: ReportFilters) -> Select:
    """核销明细: the visible redeemed coupons matching the filters, latest redemption first."""
    stmt = visible_issues(actor, f).where(CouponIssue.redemption_status == "used",
                                          *_in_days(CouponIssue.used_at, f.first, f.last))
    serial = f.serial.strip()
    if serial:
        stmt = stmt.where(or_(CouponIssue.order_no == serial, CouponIssue.call_trade_no == serial,
                              CouponIssue.trade_no == serial, CouponIssue.redemption_trade_no == serial,
                              CouponIssue.third_coupon_id == serial))
    if f.openid.strip():
        stmt = stmt.where(_openid_condition(f.openid))
    if f.member_id.strip():
        stmt = stmt.where(CouponIssue.bank_member_id == f.member_id.strip())
    if f.merchant_no.strip():
        stmt = stmt.where(CouponIssue.merchant_no == f.merchant_no.strip())
    return stmt.order_by(CouponIssue.used_at.desc(), CouponIssue.id.desc())


def activity_options(actor: "Operator", limit: int = 200) -> list[tuple[str, str]]:
    """(code, name) of the newest coupon activities the operator sees, for the activity filter's suggestions."""
    stmt = scoped(CouponActivity, actor, select(CouponActivity.code, CouponActivity.name)).order_by(
        CouponActivity.created_at.desc()).limit(limit)
    return [tuple(row) for row in db.session.execute(stmt).all()]


def count_rows(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


@dataclass
class DetailLookups:
    """Names the detail rows show beside an issue: theme activity ids, institutions, banks."""

    theme_nos: dict[int, str] = field(default_factory=dict)  # coupon activity id -> theme no.
    institutions: dict[int, str] = field(default_factory=dict)  # coupon activity id -> institution name
    banks: dict[int, str] = field(default_factory=dict)  # org id -> name


def detail_lookups(actor: "Operator", issues: list[CouponIssue]) -> DetailLookups:
    """The names for a page (or an export) of issues, in three small queries."""
    from app.core.tenancy import org_names
    from app.coupons.models import Institution

    activity_ids = {i.coupon_activity_id for i in issues}
    if not activity_ids:
        return DetailLookups()
    rows = db.session.execute(
        select(CouponActivity.id, ThemeActivity.theme_no, Institution.name)
        .outerjoin(ThemeActivity, ThemeActivity.id == CouponActivity.theme_activity_id)
        .outerjoin(Institution, Institution.id == CouponActivity.institution_id)
        .where(CouponActivity.id.in_(activity_ids))).all()
    return DetailLookups(theme_nos={a: t for a, t, _ in rows if t}, institutions={a: n for a, _, n in rows if n},
                         banks=org_names(actor, {i.org_id for i in issues}))


# --- summaries ---------------------------------------------------------------------------------

@dataclass
class Period:
    """The figures of one Shanghai day or month."""

    start: date
    requested: int = 0  # issue requests made
    issued: int = 0  # of them, issued (SUCCESS)
    failed: int = 0
    pending: int = 0
    face_fen: int = 0  # face value of the coupons issued
    issued_by_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUPON_TYPES, 0))
    redeemed: int = 0  # coupons redeemed in the period
    redeemed_fen: int = 0
    order_fen: int = 0
    redeemed_by_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUPON_TYPES, 0))
    growth_pct: float | None = None  # month on month, of the report's main count
    amount_growth_pct: float | None = None

    @property
    def success_pct(self) -> float | None:
        return percent(self.issued, self.requested)

    @property
    def redemption_pct(self) -> float | None:
        return percent(self.redeemed, self.issued)


def growth(current: int, previous: int | None) -> float | None:
    """Month-on-month growth in percent; None for the first month or after an empty one."""
    if not previous:
        return None
    return round(100 * (current - previous) / previous, 1)


@dataclass
class Summary:
    """A summary report: its periods in display order and the figures of its KPI cards."""

    grain: str  # day | month
    first: date
    last: date  # for months: the first day of the last month
    periods: list[Period]
    kpis: dict[str, Any]

    @property
    def chronological(self) -> list[Period]:
        return sorted(self.periods, key=lambda p: p.start)


def _periods(grain: str, first: date, last: date) -> dict[date, Period]:
    if grain == "day":
        return {first + timedelta(days=n): Period(first + timedelta(days=n)) for n in range((last - first).days + 1)}
    return {add_months(first, n): Period(add_months(first, n)) for n in range(months_between(first, last))}


def _day_bounds(grain: str, first: date, last: date) -> tuple[date, date]:
    """The Shanghai days a report's range covers (a month range runs to the last day of its last month)."""
    return (first, last) if grain == "day" else (first, add_months(last, 1) - timedelta(days=1))


def _bucket(grain: str, column):
    return local_day(column) if grain == "day" else local_month(column)


def _add_issue_counts(actor: "Operator", f: ReportFilters, grain: str, periods: dict[date, Period],
                      first: date, last: date) -> None:
    """Requests, issued, failed, pending, face value and issued per coupon type, by period of `created_at`."""
    bucket = _bucket(grain, CouponIssue.created_at).label("bucket")
    stmt = visible_issues(actor, f, select(bucket, CouponActivity.coupon_type, CouponIssue.status, func.count(),
                                           func.coalesce(func.sum(CouponActivity.promo_amount_fen), 0))
                          .select_from(CouponIssue)
                          .join(CouponActivity, CouponActivity.id == CouponIssue.coupon_activity_id))
    stmt = stmt.where(*_in_days(CouponIssue.created_at, first, last)).group_by(
        bucket, CouponActivity.coupon_type, CouponIssue.status)
    for start, coupon_type, status, count, face_fen in db.session.execute(stmt).all():
        period = periods.get(as_date(start))
        if period is None:
            continue
        period.requested += count
        if status == "succeeded":
            period.issued += count
            period.face_fen += int(face_fen)
            period.issued_by_type[coupon_type] = period.issued_by_type.get(coupon_type, 0) + count
        elif status == "failed":
            period.failed += count
        else:
            period.pending += count


def _add_redemption_counts(actor: "Operator", f: ReportFilters, grain: str, periods: dict[date, Period],
                           first: date, last: date) -> None:
    """Redeemed coupons, their amounts and their count per coupon type, by period of `used_at`."""
    bucket = _bucket(grain, CouponIssue.used_at).label("bucket")
    amount = func.coalesce(CouponIssue.promo_amount_fen, CouponActivity.promo_amount_fen)
    stmt = visible_issues(actor, f, select(bucket, CouponActivity.coupon_type, func.count(),
                                           func.coalesce(func.sum(amount), 0),
                                           func.coalesce(func.sum(CouponIssue.total_amount_fen), 0))
                          .select_from(CouponIssue)
                          .join(CouponActivity, CouponActivity.id == CouponIssue.coupon_activity_id))
    stmt = stmt.where(CouponIssue.redemption_status == "used", *_in_days(CouponIssue.used_at, first, last)).group_by(
        bucket, CouponActivity.coupon_type)
    for start, coupon_type, count, redeemed_fen, order_fen in db.session.execute(stmt).all():
        period = periods.get(as_date(start))
        if period is None:
            continue
        period.redeemed += count
        period.redeemed_fen += int(redeemed_fen)
        period.order_fen += int(order_fen)
        period.redeemed_by_type[coupon_type] = period.redeemed_by_type.get(coupon_type, 0) + count


def _with_growth(periods: list[Period], count: str, amount: str) -> None:
    """Month-on-month growth of `count` and `amount` (attribute names), in chronological order."""
    previous: Period | None = None
    for period in periods:
        period.growth_pct = growth(getattr(period, count), getattr(previous, count) if previous else None)
        period.amount_growth_pct = growth(getattr(period, amount), getattr(previous, amount) if previous else None)
        previous = period


def issue_summary(actor: "Operator", f: ReportFilters, grain: str, first: date, last: date) -> Summary:
    """发放日汇总 (grain "day": first..last, newest first) or 发放月汇总 (grain "month": the months
    first..last, oldest first, with month-on-month growth of coupons issued and face value)."""
    periods = _periods(grain, first, last)
    _add_issue_counts(actor, f, grain, periods, *_day_bounds(grain, first, last))
    ordered = sorted(periods.values(), key=lambda p: p.start, reverse=grain == "day")
    requested = sum(p.requested for p in ordered)
    issued = sum(p.issued for p in ordered)
    kpis: dict[str, Any] = {"requested": requested, "issued": issued, "face_fen": sum(p.face_fen for p in ordered),
                            "success_pct": percent(issued, requested)}
    if grain == "day":
        kpis["active_days"] = sum(1 for p in ordered if p.requested)
    else:
        _with_growth(ordered, "issued", "face_fen")
        kpis["monthly_average"] = round(issued / len(ordered), 1) if ordered else 0
    return Summary(grain=grain, first=first, last=last, periods=ordered, kpis=kpis)


def redemption_summary(actor: "Operator", f: ReportFilters, grain: str, first: date, last: date) -> Summary:
    """核销日汇总 / 核销月汇总: coupons redeemed per day or month, their amounts, the redemption
    rate against the coupons issued in the same period (and, by month, month-on-month growth)."""
    periods = _periods(grain, first, last)
    bounds = _day_bounds(grain, first, last)
    _add_issue_counts(actor, f, grain, periods, *bounds)
    _add_redemption_counts(actor, f, grain, periods, *bounds)
    ordered = sorted(periods.values(), key=lambda p: p.start, reverse=grain == "day")
    redeemed = sum(p.redeemed for p in ordered)
    redeemed_fen = sum(p.redeemed_fen for p in ordered)
    kpis: dict[str, Any] = {"redeemed": redeemed, "redeemed_fen": redeemed_fen,
                            "redemption_pct": percent(redeemed, sum(p.issued for p in ordered))}
    if grain == "day":
        kpis["average_fen"] = round(redeemed_fen / redeemed) if redeemed else None
    else:
        _with_growth(ordered, "redeemed", "redeemed_fen")
        kpis["monthly_average"] = round(redeemed / len(ordered), 1) if ordered else 0
    return Summary(grain=grain, first=first, last=last, periods=ordered, kpis=kpis)


# --- a coupon activity's tabs -----------------------------------------------------------------

@dataclass(frozen=True)
class ActivityFigures:
    """The KPI cards of a coupon activity's issued-details and redemption tabs."""

    issued: int
    redeemed: int

    @property
    def unredeemed(self) -> int:
        return self.issued - self.redeemed

    @property
    def redemption_pct(self) -> float | None:
        return percent(self.redeemed, self.issued)


def activity_figures(actor: "Operator", activity: CouponActivity) -> ActivityFigures:
    """Coupons of one (visible) activity issued so far and how many of them were redeemed."""
    used = func.count().filter(CouponIssue.redemption_status == "used")
    stmt = scoped(CouponIssue, actor, select(func.count(), used)).where(
        CouponIssue.coupon_activity_id == activity.id, CouponIssue.status == "succeeded")
    issued, redeemed = db.session.execute(stmt).one()
    return ActivityFigures(issued=issued, redeemed=redeemed)
