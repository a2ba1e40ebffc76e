"""Screens of the coupon reports (数据中心): issue details, redemption details, the daily and monthly
issue and redemption summaries, each with filters, KPI cards, a column picker, paging and an xlsx
export; and a coupon activity's issued-coupons and redemptions tabs
(`/coupons/activities/<id>/issues`, `/coupons/activities/<id>/redemptions`).

Views parse the query string into `ReportFilters`, call `app.coupons.reports` and render. A
report's results (KPIs, charts, table) are the `report_body` block; a tab answers its inner block
when its own filters or pages ask (target `activity-issues` / `activity-redemptions`), the whole tab
(`activity_tab`) to any other htmx request that is not a boosted navigation (the activity page
loading it lazily), and a page of its own otherwise.

The column picker's choice travels in the URL (`cols=a,b`) and is remembered in the session per
report, so the menu link brings back the columns chosen last.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

from flask import Blueprint, abort, current_app, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from app.core import audit
from app.core.exports import EXPORT_ROW_LIMIT, Column, export_response, refuse_oversized_export
from app.core.htmx import htmx_targets, render_page
from app.core.listing import ListParams, Page, paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, org_choices
from app.core.timeutil import business_today, parse_day
from app.coupons import report_columns as columns
from app.coupons import reports
from app.coupons.forms import COUPON_TYPE_LABELS
from app.coupons.models import CouponActivity
from app.extensions import db

bp = Blueprint("coupon_reports", __name__, url_prefix="/coupons")

# Beyond EXPORT_ROW_LIMIT rows (§3.2) the operator narrows the report's filters.
TOO_MANY_REPORT_ROWS = _l("%(total)s rows match, more than the %(limit)s an export may hold. Narrow the filters "
                          "(a shorter time range, one activity) and export again.")

audit.ACTION_LABELS.update({"coupon_report.export": _l("Exported a coupon report")})


@dataclass(frozen=True)
class ReportPage:
    """One report screen: its words, the filters it offers and the columns it can show."""

    name: str
    endpoint: str
    path: str
    title: Any
    intro: Any
    filters: tuple[str, ...]
    columns: tuple[columns.ReportColumn, ...]
    grain: str | None = None  # day | month for the summaries; None for the details
    kind: str = "issues"  # what it counts: issues | redemptions

    @property
    def summary(self) -> bool:
        return self.grain is not None


DETAIL_FILTERS = ("activity", "coupon_type", "theme_no", "openid", "serial", "org_id", "from", "to")
SUMMARY_FILTERS = ("activity", "coupon_type", "org_id")
REPORTS: dict[str, ReportPage] = {page.name: page for page in (
    ReportPage("issues", "coupon_reports.issue_details", "/reports/issues",
               _l("Issue details"), _l("Every coupon issued to a customer, with its current status."),
               DETAIL_FILTERS[:4] + ("state",) + DETAIL_FILTERS[4:], columns.ISSUE_COLUMNS),
    ReportPage("redemptions", "coupon_reports.redemption_details", "/reports/redemptions",
               _l("Redemption details"), _l("Every coupon a customer has used, with the amounts and the merchant."),
               DETAIL_FILTERS[:5] + ("merchant_no",) + DETAIL_FILTERS[5:], columns.REDEMPTION_COLUMNS,
               kind="redemptions"),
    ReportPage("issues-daily", "coupon_reports.daily_issue_summary", "/reports/issues/daily",
               _l("Daily issue summary"), _l("Coupons issued per day (Asia/Shanghai), newest first."),
               SUMMARY_FILTERS + ("from", "to"), columns.ISSUE_DAY_COLUMNS, grain="day"),
    ReportPage("issues-monthly", "coupon_reports.monthly_issue_summary", "/reports/issues/monthly",
               _l("Monthly issue summary"), _l("Coupons issued per month, with the growth on the month before."),
               SUMMARY_FILTERS + ("from_month", "to_month"), columns.ISSUE_MONTH_COLUMNS, grain="month"),
    ReportPage("redemptions-daily", "coupon_reports.daily_redemption_summary", "/reports/redemptions/daily",
               _l("Daily redemption summary"),
               _l("Coupons redeemed per day (Asia/Shanghai), newest first; the rate is redeemed ÷ issued that day."),
               SUMMARY_FILTERS + ("from", "to"), columns.REDEMPTION_DAY_COLUMNS, grain="day", kind="redemptions"),
    ReportPage("redemptions-monthly", "coupon_reports.monthly_redemption_summary", "/reports/redemptions/monthly",
               _l("Monthly redemption summary"), _l("Coupons redeemed per month, with the growth on the month before."),
               SUMMARY_FILTERS + ("from_month", "to_month"), columns.REDEMPTION_MONTH_COLUMNS, grain="month",
               kind="redemptions"),
)}


# --- parsing the query string -------------------------------------------------------------------

def _month(value: str | None) -> date | None:
    """A YYYY-MM from a month field (a YYYY-MM-DD is taken too)."""
    return parse_day(f"{value}-01" if value and len(value) == 7 else value)


def _picked_keys(name: str) -> list[str] | None:
    """The columns named in the URL (checkboxes or `cols=a,b`), else the ones remembered for this report."""
    keys = [key for value in request.args.getlist("cols") for key in value.split(",") if key]
    remembered = session.get("coupon_report_cols", {})
    if keys:
        session["coupon_report_cols"] = {**remembered, name: keys}
        return keys
    return remembered.get(name)


def _params(filter_names: tuple[str, ...], name: str, all_columns, defaults: tuple[str, ...] = ()):
    """List params, filters and picked columns of a report or tab; dates are put back in the params
    so that paging and exporting keep them."""
    params = parse_list_params(request.args, filter_names)
    picked = columns.chosen(all_columns, _picked_keys(name) or list(defaults) or None)
    if not columns.is_default_choice(all_columns, picked) or defaults:
        params.filters["cols"] = ",".join(c.key for c in picked)
    f = reports.ReportFilters(**{k: v for k, v in params.filters.items()
                                 if k in reports.ReportFilters.__dataclass_fields__})
    return params, f, picked


def _day_range(page: ReportPage, params: ListParams, f: reports.ReportFilters) -> None:
    """The report's dates: detail reports default to the last 30 days (an emptied field means no
    bound); summaries always have a range, at most a year of days or 24 months."""
    today = business_today()
    if page.grain == "month":
        first, last = reports.clamp_months(_month(params.filters.get("from_month")),
                                           _month(params.filters.get("to_month")), today)
        params.filters.update(from_month=first.strftime("%Y-%m"), to_month=last.strftime("%Y-%m"))
    elif page.grain == "day" or ("from" not in request.args and "to" not in request.args):
        first, last = reports.clamp_days(parse_day(params.filters.get("from")), parse_day(params.filters.get("to")),
                                          today)
        params.filters.update({"from": first.isoformat(), "to": last.isoformat()})
    else:
        first, last = parse_day(params.filters.get("from")), parse_day(params.filters.get("to"))
    f.first, f.last = first, last


def _report_args(page: ReportPage) -> tuple[ListParams, reports.ReportFilters, list]:
    params, f, picked = _params(page.filters, page.name, page.columns)
    _day_range(page, params, f)
    return params, f, picked


def _page_of(items: list, params: ListParams) -> Page:
    """One page of rows already in memory (the periods of a summary)."""
    pages = max(1, -(-len(items) // params.per_page))
    number = min(params.page, pages)
    start = (number - 1) * params.per_page
    return Page(items=items[start:start + params.per_page], total=len(items), page=number, per_page=params.per_page)


# --- the six reports ----------------------------------------------------------------------------

DETAIL_QUERIES: dict[str, Callable] = {"issues": reports.issue_details, "redemptions": reports.redemption_details}


def _summary(page: ReportPage, f: reports.ReportFilters) -> reports.Summary:
    compute = reports.issue_summary if page.kind == "issues" else reports.redemption_summary
    return compute(current_user, f, page.grain, f.first, f.last)


def _chart(page: ReportPage, summary: reports.Summary) -> dict[str, Any]:
    """Two series for the charts, oldest first: the count per period and its amount in yuan."""
    periods = summary.chronological
    label = (lambda d: d.strftime("%m-%d")) if page.grain == "day" else (lambda d: d.strftime("%Y-%m"))
    if page.kind == "issues":
        counts, amounts = [p.issued for p in periods], [p.face_fen / 100 for p in periods]
    else:
        counts, amounts = [p.redeemed for p in periods], [p.redeemed_fen / 100 for p in periods]
    return dict(labels=[label(p.start) for p in periods], counts=counts, amounts=amounts)


def _context(**context) -> dict[str, Any]:
    return dict(coupon_type_labels=COUPON_TYPE_LABELS, state_labels=columns.STATE_LABELS,
                state_colours=columns.STATE_COLOURS, redemption_labels=columns.REDEMPTION_LABELS, **context)


def _narrowed(params: ListParams) -> bool:
    """Whether filters other than the dates (and the columns) limit the rows."""
    return bool(set(params.filters) - {"from", "to", "from_month", "to_month", "cols", "activity_id"})


def _show(name: str):
    page = REPORTS[name]
    params, f, picked = _report_args(page)
    summary = chart = lookups = None
    if page.summary:
        summary = _summary(page, f)
        rows = _page_of(summary.periods, params)
        chart = _chart(page, summary)
    else:
        rows = paginate(DETAIL_QUERIES[name](current_user, f), params)
        lookups = reports.detail_lookups(current_user, rows.items)
    return render_page("coupons/reports/report.html", "report_body", targets=("report-body",), **_context(
        report=page, reports=REPORTS, params=params, rows=rows, narrowed=_narrowed(params), picked=picked,
        lookups=lookups, summary=summary, chart=chart, banks=org_choices(current_user, ("bank",)),
        activity_options=reports.activity_options(current_user)))


def _export(name: str):
    page = REPORTS[name]
    params, f, picked = _report_args(page)
    if page.summary:
        rows: list = _summary(page, f).periods
        lookups = None
    else:
        stmt = DETAIL_QUERIES[name](current_user, f)
        refused = refuse_oversized_export(reports.count_rows(stmt), EXPORT_ROW_LIMIT,
                                          url_for(page.endpoint, **params.args(page=None)), TOO_MANY_REPORT_ROWS)
        if refused:
            return refused
        rows = list(db.session.execute(stmt).scalars())
        lookups = reports.detail_lookups(current_user, rows)
    return _export_response(str(page.title), f"coupon_report.{page.name}", params, picked, rows, lookups)


def _export_response(title: str, what: str, params: ListParams, picked: list, rows: list, lookups):
    """The xlsx of the picked columns; the export is written to the audit trail first."""
    audit.record("coupon_report.export", "coupon_report", what,
                 after={"rows": len(rows), "columns": [c.key for c in picked],
                        **{k: v for k, v in params.filters.items() if k != "cols"}},
                 org_id=current_user.org_id)
    db.session.commit()
    export_columns = [Column(columns.export_header(c), lambda row, c=c: columns.export_value(c, row, lookups))
                      for c in picked]
    return export_response(title, "xlsx", export_columns, rows)


def _report_view(name: str):
    """The view of one report (all six are the same view over their `ReportPage`)."""
    @login_required
    @permission_required("coupons.view")
    def view():
        return _show(name)

    view.__name__ = REPORTS[name].endpoint.partition(".")[2]
    return view


for _page in REPORTS.values():
    bp.add_url_rule(_page.path, view_func=_report_view(_page.name), methods=["GET"])


@bp.get("/reports/<name>/export")
@login_required
@permission_required("coupons.view")
def export_report(name: str):
    if name not in REPORTS:
        abort(404)
    return _export(name)


# --- a coupon activity's tabs -------------------------------------------------------------------

@dataclass(frozen=True)
class ActivityTab:
    name: str  # issues | redemptions
    title: Any
    filters: tuple[str, ...]
    columns: tuple[columns.ReportColumn, ...]
    defaults: tuple[str, ...]  # the columns shown before the picker is used
    query: Callable


TABS = {
    "issues": ActivityTab(
        "issues", _l("Issued coupons"), ("openid", "state", "serial", "from", "to"),
        columns.ordered(columns.ISSUE_COLUMNS, (
            "coupon_id", "theme_no", "code", "openid", "member_id", "bank_serial", "serial", "platform_serial",
            "institution", "bank", "coupon_type", "face_value", "threshold", "tunnel", "channel", "issued_at", "state",
            "result")),
        ("coupon_id", "openid", "member_id", "bank_serial", "serial", "platform_serial", "face_value", "issued_at",
         "state", "result"), reports.issue_details),
    "redemptions": ActivityTab(
        "redemptions", _l("Redemptions"), ("openid", "member_id", "serial", "from", "to"),
        columns.ordered(columns.REDEMPTION_COLUMNS, (
            "coupon_id", "trade_serial", "theme_no", "openid", "coupon_type", "redeemed_fen", "order_fen",
            "merchant", "issued_at", "used_at", "code", "member_id", "bank_serial", "serial",
            "platform_serial", "institution", "bank", "tunnel", "channel", "redemption")),
        ("coupon_id", "trade_serial", "openid", "member_id", "redeemed_fen", "order_fen", "merchant", "used_at",
         "bank_serial", "serial", "redemption"), reports.redemption_details),
}


def _tab_args(tab: ActivityTab, activity: CouponActivity):
    params, f, picked = _params(tab.filters, f"activity-{tab.name}", tab.columns, tab.defaults)
    f.coupon_activity_id = activity.id
    f.first, f.last = parse_day(params.filters.get("from")), parse_day(params.filters.get("to"))
    params.filters["activity_id"] = str(activity.id)  # fills the URL's <activity_id> in paging links
    return params, f, picked


def _activity_page_url(activity: CouponActivity) -> str | None:
    """The coupon activity's own page, where the coupon activity screens are installed."""
    if "coupon_activities.activity_detail" not in current_app.view_functions:
        return None
    return url_for("coupon_activities.activity_detail", activity_id=activity.id)


def _show_tab(name: str, activity_id: int):
    tab = TABS[name]
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    params, f, picked = _tab_args(tab, activity)
    rows = paginate(tab.query(current_user, f), params)
    context = _context(tab=tab, activity=activity, params=params, rows=rows, picked=picked,
                       lookups=reports.detail_lookups(current_user, rows.items),
                       figures=reports.activity_figures(current_user, activity),
                       activity_url=_activity_page_url(activity))
    template = "coupons/reports/activity_tab.html"
    if htmx_targets(f"activity-{name}"):
        return render_block(template, "activity_tab_body", **context)
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.boosted and not htmx.history_restore_request:
        return render_block(template, "activity_tab", **context)
    return render_page(template, **context)


@bp.get("/activities/<int:activity_id>/issues")
@login_required
@permission_required("coupons.view")
def activity_issues(activity_id: int):
    return _show_tab("issues", activity_id)


@bp.get("/activities/<int:activity_id>/redemptions")
@login_required
@permission_required("coupons.view")
def activity_redemptions(activity_id: int):
    return _show_tab("redemptions", activity_id)


@bp.get("/activities/<int:activity_id>/<any(issues, redemptions):name>/export")
@login_required
@permission_required("coupons.view")
def export_activity_tab(activity_id: int, name: str):
    tab = TABS[name]
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    params, f, picked = _tab_args(tab, activity)
    stmt = tab.query(current_user, f)
    refused = refuse_oversized_export(reports.count_rows(stmt), EXPORT_ROW_LIMIT,
                                      url_for(f".activity_{name}", **params.args(page=None)), TOO_MANY_REPORT_ROWS)
    if refused:
        return refused
    rows = list(db.session.execute(stmt).scalars())
    title = f"{tab.title}_{activity.code}"
    return _export_response(title, f"coupon_activity.{name}:{activity.id}", params, picked, rows,
                            reports.detail_lookups(current_user, rows))
