"""Statistics of theme activities (主题活动统计): for one activity and a range of Asia/Shanghai days,
the key figures, the funnel visit → draw → win → redemption, each prize against its stock and the
daily trend; across the activities an operator sees, one row of the same figures per activity, with
their totals. No `request` here: the screens, their exports and the tests call the same functions.

Words, decided here (README design notes):
- *page views* are the sum of `ThemeVisit.views`, *unique visitors* the distinct customers (openid
  hashes) who opened the H5 page on a day of the range: one who came on three days is one visitor of
  the range, and one visitor on each of those days in the trend;
- *participants* are the distinct customers with a draw in the range, *draws* their draws, *wins* the
  draws that gave a prize with stock (the "thanks for taking part" fallback is no win), *winners*
  the distinct customers with a win;
- *coupons issued* are the draws of the range whose coupon 云数汇 confirmed (issue succeeded);
  *coupons redeemed* are those of them 云数汇 has since reported used, whenever that was. The figures
  follow the draws of the range (a cohort), so redeemed ≤ issued ≤ wins and the funnel only narrows;
- the *funnel*: unique visitors → participants → winners → customers who redeemed a coupon they won
  (the cohort above), each step's conversion against the step before. Draws through a bank's own API
  do not pass the H5 page, and a customer may have opened it before the range, so participants can
  outnumber visitors (the screen says so);
- the *daily trend* counts each thing on its own day: views and visitors on the day of the visit,
  draws and wins on the day of the draw, coupons redeemed on the day they were used (coupons won in
  this activity on any day), so it shows when redemptions happen;
- a range is Asia/Shanghai days, both ends included, at most a year; one activity's default is its
  own days up to today, the cross-activity default the last 30 days;
- across activities: those the operator sees (tenancy) whose own time overlaps the range, each with
  the figures of the range; the totals add the rows up (a customer of two activities counts twice).

Every figure is aggregated in the database (GROUP BY) in a fixed number of statements whatever the
amount of data: five for one activity, three for a page across activities (count, page, totals).
Draws are filtered on `drawn_at` (the `(theme_activity_id, drawn_at)` index) and visits on
`(theme_activity_id, visit_day)`, so no further index is needed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, distinct, func, select
from sqlalchemy.sql.elements import ColumnElement

from app.core.listing import ListParams, Page, apply_sort, paginate
from app.core.reporting import as_date, clamp_days, days_between, local_day, percent
from app.core.timeutil import local_day_range, to_local
from app.coupons.models import CouponIssue
from app.extensions import db

from . import services
from .models import ThemeActivity
from .prize_models import Prize, ThemeDraw, ThemeVisit
from .prizes import prizes_of

if TYPE_CHECKING:
    from app.auth.models import Operator

ACROSS_FILTERS = ("name", "status", "partner_bank_id")  # as on the theme activity list
DEFAULT_SORT = "draws"


@dataclass
class Figures:
    """The key figures of one activity (or the totals of several) over a range of days."""

    views: int = 0
    visitors: int = 0
    participants: int = 0
    draws: int = 0
    winners: int = 0
    wins: int = 0
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    redeemers: int = 0  # customers who redeemed a coupon they won in the range

    @classmethod
    def of(cls, row: Any) -> "Figures":
        return cls(**{name: int(getattr(row, name) or 0) for name in FIGURE_NAMES})

    @property
    def win_pct(self) -> float | None:
        return percent(self.wins, self.draws)

    @property
    def redemption_pct(self) -> float | None:
        return percent(self.coupons_redeemed, self.coupons_issued)


FIGURE_NAMES = tuple(f.name for f in fields(Figures))


@dataclass(frozen=True)
class FunnelStep:
    key: str  # visitors | participants | winners | redeemers
    count: int
    step_pct: float | None  # of the step before (None: the first step, or the step before had none)
    overall_pct: float | None  # of the first step


FUNNEL_STEPS = ("visitors", "participants", "winners", "redeemers")


def funnel(figures: Figures) -> list[FunnelStep]:
    """Unique visitors → participants → winners → customers who redeemed a won coupon."""
    counts = [getattr(figures, key) for key in FUNNEL_STEPS]
    return [FunnelStep(key, count, percent(count, counts[n - 1]) if n else None, percent(count, counts[0]))
            for n, (key, count) in enumerate(zip(FUNNEL_STEPS, counts))]


@dataclass
class PrizeFigures:
    """One prize of the pool over the range: how often draws gave it, against its stock."""

    prize: Prize
    awarded: int = 0  # draws that gave it (for a prize with stock: units won)
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    share_pct: float | None = None  # of all the draws of the range

    @property
    def is_coupon(self) -> bool:
        return self.prize.kind == "coupon"


@dataclass
class DayFigures:
    day: date
    views: int = 0
    visitors: int = 0
    draws: int = 0
    wins: int = 0
    redeemed: int = 0  # coupons of this activity used that day


@dataclass
class ActivityStatistics:
    theme: ThemeActivity
    first: date
    last: date
    figures: Figures
    funnel: list[FunnelStep]
    prizes: list[PrizeFigures]
    days: list[DayFigures]

    @property
    def stocked_prizes(self) -> list[PrizeFigures]:
        return [p for p in self.prizes if not p.prize.is_fallback]


@dataclass
class ActivityRow:
    theme: ThemeActivity
    figures: Figures


# --- day ranges -------------------------------------------------------------------------------------

def activity_days(theme: ThemeActivity) -> tuple[date, date]:
    """The Shanghai days of the activity's own time (its end is exclusive: an end at midnight ends the day before)."""
    return to_local(theme.start_at).date(), to_local(theme.end_at - timedelta(microseconds=1)).date()


def day_range(theme: ThemeActivity, first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The range asked for, else the activity's days up to today (its first day when it has not started)."""
    start, end = activity_days(theme)
    default_last = max(start, min(end, today))
    return clamp_days(first or start, last or default_last, today)


# --- the figures, aggregated per activity ----------------------------------------------------------------

def _issued() -> ColumnElement[bool]:
    return CouponIssue.status == "succeeded"


def _redeemed() -> ColumnElement[bool]:
    return and_(CouponIssue.status == "succeeded", CouponIssue.redemption_status == "used")


def _draws_in(first: date, last: date) -> list[ColumnElement[bool]]:
    start, end = local_day_range(first, last)
    return [ThemeDraw.drawn_at >= start, ThemeDraw.drawn_at < end]


def _visit_figures(theme_ids: Select, first: date, last: date):
    """Page views and unique visitors per activity."""
    return (select(ThemeVisit.theme_activity_id.label("theme_id"), func.sum(ThemeVisit.views).label("views"),
                   func.count(distinct(ThemeVisit.openid_hash)).label("visitors"))
            .where(ThemeVisit.theme_activity_id.in_(theme_ids), ThemeVisit.visit_day.between(first, last))
            .group_by(ThemeVisit.theme_activity_id).subquery("visit_figures"))


def _draw_figures(theme_ids: Select, first: date, last: date):
    """Participants, draws, winners, wins, coupons issued and redeemed, and redeemers per activity."""
    customer = distinct(ThemeDraw.participant_id)
    won = ThemeDraw.won.is_(True)
    return (select(ThemeDraw.theme_activity_id.label("theme_id"),
                   func.count(customer).label("participants"),
                   func.count().label("draws"),
                   func.count(customer).filter(won).label("winners"),
                   func.count().filter(won).label("wins"),
                   func.count().filter(_issued()).label("coupons_issued"),
                   func.count().filter(_redeemed()).label("coupons_redeemed"),
                   func.count(customer).filter(_redeemed()).label("redeemers"))
            .outerjoin(CouponIssue, CouponIssue.id == ThemeDraw.coupon_issue_id)
            .where(ThemeDraw.theme_activity_id.in_(theme_ids), *_draws_in(first, last))
            .group_by(ThemeDraw.theme_activity_id).subquery("draw_figures"))


def with_figures(themes: Select, first: date, last: date) -> Select:
    """`themes` (a select of ThemeActivity) with the figures of the range beside each, zero where none."""
    theme_ids = themes.with_only_columns(ThemeActivity.id).order_by(None)
    visits, draws = _visit_figures(theme_ids, first, last), _draw_figures(theme_ids, first, last)
    columns = [func.coalesce(visits.c[name] if name in visits.c else draws.c[name], 0).label(name)
               for name in FIGURE_NAMES]
    return (themes.outerjoin(visits, visits.c.theme_id == ThemeActivity.id)
            .outerjoin(draws, draws.c.theme_id == ThemeActivity.id).add_columns(*columns))


# --- one activity ----------------------------------------------------------------------------------------

def activity_statistics(theme: ThemeActivity, first: date, last: date) -> ActivityStatistics:
    """Everything the statistics page of one (visible) activity shows, for the days first..last."""
    row = db.session.execute(with_figures(select(ThemeActivity).where(ThemeActivity.id == theme.id),
                                          first, last)).one()
    figures = Figures.of(row)
    days = {day: DayFigures(day) for day in days_between(first, last)}
    prizes = {p.id: PrizeFigures(p) for p in prizes_of(theme)}
    _add_draws(theme, first, last, days, prizes)
    _add_visits(theme, first, last, days)
    _add_redemptions(theme, first, last, days)
    for prize in prizes.values():
        prize.share_pct = percent(prize.awarded, figures.draws)
    return ActivityStatistics(theme=theme, first=first, last=last, figures=figures, funnel=funnel(figures),
                              prizes=list(prizes.values()), days=list(days.values()))


def _add_draws(theme: ThemeActivity, first: date, last: date, days: dict[date, DayFigures],
               prizes: dict[int, PrizeFigures]) -> None:
    """Draws and wins per day, and per prize what it gave, in one statement (days × prizes rows at most)."""
    stmt = (select(ThemeDraw.drawn_day, ThemeDraw.prize_id, func.count(),
                   func.count().filter(ThemeDraw.won.is_(True)),
                   func.count().filter(_issued()), func.count().filter(_redeemed()))
            .outerjoin(CouponIssue, CouponIssue.id == ThemeDraw.coupon_issue_id)
            .where(ThemeDraw.theme_activity_id == theme.id, *_draws_in(first, last))
            .group_by(ThemeDraw.drawn_day, ThemeDraw.prize_id))
    for day, prize_id, count, wins, issued, redeemed in db.session.execute(stmt).all():
        figures = days.get(as_date(day))
        if figures is not None:
            figures.draws += count
            figures.wins += wins
        prize = prizes.get(prize_id)
        if prize is not None:
            prize.awarded += count
            prize.coupons_issued += issued
            prize.coupons_redeemed += redeemed


def _add_visits(theme: ThemeActivity, first: date, last: date, days: dict[date, DayFigures]) -> None:
    stmt = (select(ThemeVisit.visit_day, func.sum(ThemeVisit.views), func.count(distinct(ThemeVisit.openid_hash)))
            .where(ThemeVisit.theme_activity_id == theme.id, ThemeVisit.visit_day.between(first, last))
            .group_by(ThemeVisit.visit_day))
    for day, views, visitors in db.session.execute(stmt).all():
        figures = days.get(as_date(day))
        if figures is not None:
            figures.views, figures.visitors = int(views), visitors


def _add_redemptions(theme: ThemeActivity, first: date, last: date, days: dict[date, DayFigures]) -> None:
    """Coupons won in this activity (on any day) that were used on each day of the range."""
    start, end = local_day_range(first, last)
    used_day = local_day(CouponIssue.used_at)
    stmt = (select(used_day, func.count()).select_from(ThemeDraw)
            .join(CouponIssue, CouponIssue.id == ThemeDraw.coupon_issue_id)
            .where(ThemeDraw.theme_activity_id == theme.id, _redeemed(), CouponIssue.used_at >= start,
                   CouponIssue.used_at < end)
            .group_by(used_day))
    for day, count in db.session.execute(stmt).all():
        figures = days.get(as_date(day))
        if figures is not None:
            figures.redeemed += count


# --- across activities -----------------------------------------------------------------------------------

def across_activities(actor: "Operator", filters: dict[str, str], first: date, last: date,
                      now: datetime | None = None) -> Select:
    """The activities the operator sees (narrowed by the list's name, status and bank filters) whose own
    time overlaps first..last, each with the figures of those days; unordered."""
    start, end = local_day_range(first, last)
    wanted = {k: v for k, v in filters.items() if k in ACROSS_FILTERS}
    return with_figures(services.themes_matching(actor, wanted, now, start, end), first, last)


def sorted_across(stmt: Select, params: ListParams) -> Select:
    """Ordered by a figure (default: draws, most first), the id, name or start; ties by the newest activity."""
    sortable: dict[str, ColumnElement] = {name: stmt.selected_columns[name] for name in FIGURE_NAMES}
    sortable.update(theme_no=ThemeActivity.theme_no, name=ThemeActivity.name, start_at=ThemeActivity.start_at)
    return apply_sort(stmt, params, sortable, ThemeActivity.id)


def _row(row: Any) -> ActivityRow:
    return ActivityRow(theme=row[0], figures=Figures.of(row))


def across_page(stmt: Select, params: ListParams) -> Page:
    """One page of rows (ActivityRow) of a sorted statement, with the total count."""
    page = paginate(stmt, params, whole_rows=True)
    page.items = [_row(row) for row in page.items]
    return page


def across_rows(stmt: Select) -> list[ActivityRow]:
    return [_row(row) for row in db.session.execute(stmt).all()]


def across_totals(stmt: Select) -> Figures:
    """The figures of all the rows added up, in one statement."""
    rows = stmt.order_by(None).subquery()
    return Figures.of(db.session.execute(select(*(func.coalesce(func.sum(rows.c[name]), 0).label(name)
                                                  for name in FIGURE_NAMES))).one())
