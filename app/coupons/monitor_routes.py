"""Screens of the issuance monitor: the overview of every visible coupon activity with its live
counts, one activity's live counts with its failed issues and their reasons, and "retry
selected" (confirmed, audited by `app.coupons.issuance.retry_issues`).

Live parts poll every few seconds with htmx (`every 5s`) and pause while the browser tab is
hidden (static/js/live_polling.js). The overview's polling element sits inside the block it
refreshes, so every swap restarts it with the filters of the moment; an activity's counts card
replaces itself; its failures table does not poll, so a selection is never lost under the
operator's hand.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from app.auth.forms import EmptyForm
from app.core.htmx import htmx_targets, render_page
from app.core.listing import paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, org_choices, org_names
from app.core.timeutil import utcnow
from app.coupons import monitor
from app.coupons.forms import CHANNEL_LABELS, COUPON_TYPE_LABELS, STATUS_COLOURS, STATUS_LABELS, TUNNEL_LABELS
from app.coupons.models import CouponActivity, CouponIssue
from app.coupons.report_columns import STATE_COLOURS, STATE_LABELS
from app.coupons.reports import issue_state

bp = Blueprint("coupon_monitor", __name__, url_prefix="/coupons/monitor")

POLL_SECONDS = 5


def _labels(**context):
    return dict(status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS, channel_labels=CHANNEL_LABELS,
                tunnel_labels=TUNNEL_LABELS, coupon_type_labels=COUPON_TYPE_LABELS, poll_seconds=POLL_SECONDS,
                **context)


@bp.get("")
@login_required
@permission_required("coupons.view")
def overview():
    """Every visible coupon activity with its counts; totals across them on top."""
    params = parse_list_params(request.args, ("status", "org_id"))
    now = utcnow()
    stmt = monitor.monitored_activities(current_user, params.q, params.filters.get("status", ""),
                                        params.filters.get("org_id", ""), now)
    page = paginate(stmt, params)
    return render_page("coupons/monitor/overview.html", "monitor_live", targets=("monitor-live",), **_labels(
        params=params, page=page, now=now, totals=monitor.total_counts(current_user, params.filters.get("org_id", "")),
        counts=monitor.counts_by_activity(current_user, [a.id for a in page.items]),
        bank_names=org_names(current_user, {a.org_id for a in page.items}),
        banks=org_choices(current_user, ("bank",)), refreshed_at=now))


@bp.get("/<int:activity_id>")
@login_required
@permission_required("coupons.view")
def activity_monitor(activity_id: int):
    """One activity: live counts (polled), failure reasons, the failed issues to select and retry."""
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    now = utcnow()
    counts = monitor.counts_by_activity(current_user, [activity.id])[activity.id]
    context = _labels(activity=activity, counts=counts, now=now, refreshed_at=now)
    if htmx_targets("monitor-counts"):
        return render_block("coupons/monitor/activity.html", "monitor_counts", **context)
    params = parse_list_params(request.args, ("res_code",))
    failures = paginate(monitor.failed_issues(current_user, activity.id, params.filters.get("res_code", ""),
                                              params.q), params)
    params.filters["activity_id"] = str(activity.id)  # fills the URL's <activity_id> in paging links
    return render_page("coupons/monitor/activity.html", "failure_rows", targets=("failure-rows",), **context,
                       params=params, failures=failures, reasons=monitor.failure_reasons(current_user, activity.id),
                       bank_name=org_names(current_user, {activity.org_id}).get(activity.org_id, ""))


@bp.post("/<int:activity_id>/retry")
@login_required
@permission_required("coupons.view", "coupons.manage")
def retry_selected(activity_id: int):
    """Retry the failed issues ticked on the activity's monitor."""
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    if not EmptyForm().validate_on_submit():
        abort(400)
    ids = [int(i) for i in request.form.getlist("issue_ids") if i.isdigit()]
    if not ids:
        flash(_("Select the failed issues to retry first."), "warning")
    else:
        _flash_retry(monitor.retry_failures(current_user, ids))
    return redirect(url_for(".activity_monitor", activity_id=activity.id, **_kept_args()))


def _kept_args() -> dict[str, str]:
    """The failures table's filters and page, posted back with the selection."""
    return {k: v for k in ("q", "res_code", "page", "per_page") if (v := request.form.get(k, "").strip())}


def _flash_retry(report) -> None:
    if report.retried:
        flash(_("%(n)s failed issue(s) put back in line; they are issued again in a moment.", n=len(report.retried)),
              "success")
    if report.refused:
        reasons: dict[str, int] = {}
        for reason in report.refused.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        flash(_("%(n)s issue(s) not retried: %(why)s", n=len(report.refused),
                why="; ".join(f"{reason} ({count})" for reason, count in reasons.items())), "warning")


@bp.get("/issues/<int:issue_id>")
@login_required
@permission_required("coupons.view")
def issue_detail(issue_id: int):
    """One issue: what the bank asked, what the tunnel answered, its redemption, and its history."""
    issue = get_scoped_or_404(CouponIssue, issue_id, current_user)
    return render_page("coupons/monitor/issue.html", **_labels(
        issue=issue, state=issue_state(issue), state_labels=STATE_LABELS, state_colours=STATE_COLOURS,
        history=monitor.issue_history(current_user, issue),
        bank_name=org_names(current_user, {issue.org_id}).get(issue.org_id, "")))
