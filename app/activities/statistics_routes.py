"""Screens of the theme activity statistics (blueprint `theme_statistics`): one activity's page
(`/activities/<id>/statistics`: KPI cards, funnel, daily trend, prizes against their stock) and the
statistics across the activities an operator sees (`/activities/statistics`), each with a date range
and an xlsx export (audited).

Thin views over `app.activities.statistics`. The results are the named block `statistics_body` (one
activity) or `statistics_rows` (across), answered alone when htmx targets them (the date filter,
sorting and paging) and inside the page otherwise. The activity is fetched with the tenancy helper:
another bank's answers 404.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from app.core import audit
from app.core.exports import (EXPORT_ROW_LIMIT, Column, Sheet, export_response, refuse_oversized_export,
                              workbook_response)
from app.core.htmx import render_page
from app.core.listing import ListParams, parse_list_params
from app.core.permissions import permission_required
from app.core.reporting import clamp_days
from app.core.tenancy import get_scoped_or_404, sees_everything
from app.core.timeutil import business_today, format_local, parse_day, utcnow
from app.extensions import db

from . import services, statistics
from .forms import STATUS_COLOURS, STATUS_LABELS
from .models import ThemeActivity
from .prizes import KIND_LABELS

bp = Blueprint("theme_statistics", __name__, url_prefix="/activities")

VIEW = "activities.view"
TEMPLATE = "activities/statistics.html"
ACROSS_TEMPLATE = "activities/statistics_across.html"
TOO_MANY_ACTIVITIES = _l("%(total)s theme activities match, more than the %(limit)s an export may hold. Narrow the "
                         "filters and export again.")

audit.ACTION_LABELS.update({"theme_statistics.export": _l("Exported theme activity statistics")})

FIGURE_LABELS = {
    "views": _l("Page views"), "visitors": _l("Unique visitors"), "participants": _l("Participants"),
    "draws": _l("Draws"), "winners": _l("Winners"), "wins": _l("Wins"), "coupons_issued": _l("Coupons issued"),
    "coupons_redeemed": _l("Coupons redeemed"), "redeemers": _l("Customers who redeemed"),
}
CARDS = ("views", "visitors", "participants", "draws", "winners", "wins", "coupons_issued", "coupons_redeemed")
FUNNEL_LABELS = {"visitors": _l("Visited the page"), "participants": _l("Drew"), "winners": _l("Won a prize"),
                 "redeemers": _l("Redeemed a coupon")}
TREND_SERIES = (("views", _l("Page views")), ("visitors", _l("Unique visitors")), ("draws", _l("Draws")),
                ("wins", _l("Wins")), ("redeemed", _l("Coupons redeemed")))


def _labels(**context) -> dict[str, Any]:
    return dict(figure_labels=FIGURE_LABELS, cards=CARDS, funnel_labels=FUNNEL_LABELS, kind_labels=KIND_LABELS,
                status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS, **context)


def _asked_days() -> tuple[date | None, date | None]:
    return parse_day(request.args.get("from")), parse_day(request.args.get("to"))


def _pct(value: float | None) -> Any:
    """A percentage cell of an export: the number, or "—" when there was nothing to divide by."""
    return "—" if value is None else value


# --- one activity -------------------------------------------------------------------------------------------

def _activity_statistics(theme_id: int) -> statistics.ActivityStatistics:
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    first, last = statistics.day_range(theme, *_asked_days(), business_today())
    return statistics.activity_statistics(theme, first, last)


def _charts(stats: statistics.ActivityStatistics) -> dict[str, list]:
    """The charts' labels and series (plain values for their data-* attributes)."""
    stocked = stats.stocked_prizes
    return dict(
        funnel_labels=[str(FUNNEL_LABELS[s.key]) for s in stats.funnel],
        funnel_values=[s.count for s in stats.funnel],
        day_labels=[d.day.strftime("%m-%d") for d in stats.days],
        trend=[{"name": str(label), "values": [getattr(d, key) for d in stats.days]} for key, label in TREND_SERIES],
        prize_labels=[p.prize.name for p in stocked],
        prizes=[{"name": _("Stock"), "values": [p.prize.stock_total for p in stocked]},
                {"name": _("Won in these dates"), "values": [p.awarded for p in stocked]}],
    )


@bp.get("/<int:theme_id>/statistics")
@login_required
@permission_required(VIEW)
def activity_statistics(theme_id: int):
    stats = _activity_statistics(theme_id)
    theme = stats.theme
    return render_page(TEMPLATE, "statistics_body", targets=("statistics-body",), **_labels(
        theme=theme, stats=stats, status=services.effective_status(theme), charts=_charts(stats),
        bank=services.bank_names([theme.partner_bank_id]).get(theme.partner_bank_id),
        api_draws=stats.figures.participants > stats.figures.visitors))


def _activity_sheets(stats: statistics.ActivityStatistics) -> list[Sheet]:
    theme, f = stats.theme, stats.figures
    about = [(_("Theme activity id"), theme.theme_no), (_("Theme name"), theme.name),
             (_("From"), stats.first.isoformat()), (_("To"), stats.last.isoformat())]
    kpis = about + [(str(FIGURE_LABELS[name]), getattr(f, name)) for name in statistics.FIGURE_NAMES]
    kpis += [(_("Win rate (%)"), _pct(f.win_pct)), (_("Redemption rate (%)"), _pct(f.redemption_pct))]
    pair = [Column(_("Figure"), lambda r: r[0]), Column(_("Value"), lambda r: r[1])]
    return [
        Sheet(_("KPIs"), pair, kpis),
        Sheet(_("Funnel"), [Column(_("Step"), lambda s: str(FUNNEL_LABELS[s.key])),
                            Column(_("Customers"), lambda s: s.count),
                            Column(_("Of the step before (%)"),
                                   lambda s: "" if s.key == "visitors" else _pct(s.step_pct)),
                            Column(_("Of the visitors (%)"), lambda s: _pct(s.overall_pct))], stats.funnel),
        Sheet(_("Prizes"), [Column(_("Prize"), lambda p: p.prize.name),
                            Column(_("Kind"), lambda p: str(KIND_LABELS[p.prize.kind])),
                            Column(_("Stock"), lambda p: p.prize.stock_total),
                            Column(_("Stock left"), lambda p: p.prize.stock_remaining),
                            Column(_("Awarded"), lambda p: p.awarded),
                            Column(_("Share of draws (%)"), lambda p: _pct(p.share_pct)),
                            Column(_("Coupons issued"), lambda p: p.coupons_issued if p.is_coupon else None),
                            Column(_("Coupons redeemed"), lambda p: p.coupons_redeemed if p.is_coupon else None)],
              stats.prizes),
        Sheet(_("Daily"), [Column(_("Day"), lambda d: d.day.isoformat())]
              + [Column(str(label), lambda d, key=key: getattr(d, key)) for key, label in TREND_SERIES], stats.days),
    ]


@bp.get("/<int:theme_id>/statistics/export")
@login_required
@permission_required(VIEW)
def export_activity_statistics(theme_id: int):
    """The page's figures as an xlsx of four sheets: KPIs, funnel, prizes, daily (audited)."""
    stats = _activity_statistics(theme_id)
    theme = stats.theme
    audit.record("theme_statistics.export", "theme_statistics", theme.id,
                 after={"from": stats.first, "to": stats.last, "sheets": ["kpis", "funnel", "prizes", "daily"],
                        "days": len(stats.days), "format": "xlsx"}, org_id=theme.org_id)
    db.session.commit()
    return workbook_response(_("Theme activity statistics_%(no)s", no=theme.theme_no), _activity_sheets(stats))


# --- across activities ----------------------------------------------------------------------------------------

def _across_args() -> tuple[ListParams, date, date]:
    """List params with the dates put back (so sorting, paging and exporting keep them)."""
    params = parse_list_params(request.args, statistics.ACROSS_FILTERS + ("from", "to"),
                               default_sort=statistics.DEFAULT_SORT)
    first, last = clamp_days(*_asked_days(), business_today())
    params.filters.update({"from": first.isoformat(), "to": last.isoformat()})
    return params, first, last


def _across(params: ListParams, first: date, last: date):
    return statistics.across_activities(current_user, params.filters, first, last)


@bp.get("/statistics")
@login_required
@permission_required(VIEW)
def all_statistics():
    params, first, last = _across_args()
    stmt = _across(params, first, last)
    page = statistics.across_page(statistics.sorted_across(stmt, params), params)
    themes = [row.theme for row in page.items]
    chart = dict(labels=[t.name for t in themes],
                 series=[{"name": str(FIGURE_LABELS[k]), "values": [getattr(r.figures, k) for r in page.items]}
                         for k in ("draws", "wins", "coupons_redeemed")])
    return render_page(ACROSS_TEMPLATE, "statistics_rows", targets=("statistics-rows",), **_labels(
        page=page, params=params, first=first, last=last, totals=statistics.across_totals(stmt), chart=chart,
        banks=services.bank_names(t.partner_bank_id for t in themes), now=utcnow(),
        effective_status=services.effective_status, choose_bank=sees_everything(current_user),
        picked_bank=services.visible_bank(current_user, params.filters.get("partner_bank_id"))))


def _across_columns(banks: dict[int, str], now) -> list[Column]:
    def figure(name: str) -> Column:
        return Column(str(FIGURE_LABELS[name]), lambda r: getattr(r.figures, name))

    def theme(value):
        return lambda r: value(r.theme) if r.theme is not None else ""

    return [Column(_("Theme activity id"), lambda r: r.theme.theme_no if r.theme is not None else _("Total")),
            Column(_("Theme name"), theme(lambda t: t.name)),
            Column(_("Bank"), theme(lambda t: banks.get(t.partner_bank_id, ""))),
            Column(_("Status"), theme(lambda t: str(STATUS_LABELS[services.effective_status(t, now)]))),
            Column(_("Start"), theme(lambda t: format_local(t.start_at))),
            Column(_("End"), theme(lambda t: format_local(t.end_at))),
            *(figure(name) for name in statistics.FIGURE_NAMES),
            Column(_("Win rate (%)"), lambda r: _pct(r.figures.win_pct)),
            Column(_("Redemption rate (%)"), lambda r: _pct(r.figures.redemption_pct))]


@bp.get("/statistics/export")
@login_required
@permission_required(VIEW)
def export_all_statistics():
    """The table under its filters and order, with its totals as the last row (at most 10,000 rows; audited)."""
    params, first, last = _across_args()
    stmt = _across(params, first, last)
    refused = refuse_oversized_export(services.count(stmt), EXPORT_ROW_LIMIT,
                                      url_for(".all_statistics", **params.args(page=None)), TOO_MANY_ACTIVITIES)
    if refused:
        return refused
    rows = statistics.across_rows(statistics.sorted_across(stmt, params))
    totals = statistics.ActivityRow(theme=None, figures=statistics.across_totals(stmt))  # type: ignore[arg-type]
    audit.record("theme_statistics.export", "theme_statistics", None,
                 after={"filters": params.filters, "sort": params.sort, "dir": params.direction, "rows": len(rows),
                        "format": "xlsx"})
    db.session.commit()
    columns = _across_columns(services.bank_names(r.theme.partner_bank_id for r in rows), utcnow())
    return export_response(_("Theme activity statistics"), "xlsx", columns, rows + [totals])
