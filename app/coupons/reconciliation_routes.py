"""The coupon reconciliation page: the differences between our issues and 云数汇 (filters, paging),
resolving them (one or the selected, confirmed, audited), and "run now", which starts the
reconciliation job for the operator's banks and shows its progress (a self-polling partial).
Views parse, call `app.coupons.reconciliation` (through the job for the run) and render.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select

import jobs
from app.auth.forms import EmptyForm
from app.core import audit
from app.core.htmx import htmx_targets, render_page
from app.core.jobruns import JobRun
from app.core.listing import paginate, parse_list_params
from app.core.money import format_fen
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, org_choices, org_names, scoped
from app.core.timeutil import parse_day
from app.coupons import reconciliation
from app.coupons.models import CouponReconciliationItem
from app.extensions import db

bp = Blueprint("coupon_reconciliation", __name__, url_prefix="/coupons/reconciliation")

JOB_NAME = "jobs.coupon_reconciliation.reconcile_coupons"
FILTERS = ("status", "field", "org_id", "from", "to")
FIELD_LABELS = {"trade_status": _l("Issue status"), "redemption_status": _l("Redemption status"),
                "amount": _l("Amounts")}
AMOUNT_LABELS = {"promo": _l("discount"), "total": _l("order"), "org": _l("paid")}
VALUE_LABELS = {"QUEUED": _l("queued (not sent yet)"), "PROCESS": _l("processing"), "SUCCESS": _l("issued"),
                "FAIL": _l("failed"), "NOT_FOUND": _l("unknown to Yunshuhui"), "used": _l("used"),
                "expired": _l("expired"), "none": _l("not used")}
WINDOW_HOURS = (2, 24, 72, 168)


def describe(field: str, value: str | None) -> str:
    """A stored side of a difference in words: '¥10.00 discount · ¥120.00 order', 'issued (SUCCESS)'."""
    if field == "amount":
        return " · ".join(f"{format_fen(fen) if fen is not None else '-'} {AMOUNT_LABELS[part]}"
                          for part, fen in reconciliation.parse_amounts(value))
    label = VALUE_LABELS.get(value or "")
    return f"{label} ({value})" if label and field == "trade_status" else str(label or value or "-")


def _recent_runs() -> list[JobRun]:
    stmt = select(JobRun).where(JobRun.name == JOB_NAME).order_by(JobRun.id.desc()).limit(3)
    return list(db.session.execute(scoped(JobRun, current_user, stmt)).scalars())


@bp.get("")
@login_required
@permission_required("coupons.view")
def differences():
    params = parse_list_params(request.args, FILTERS)
    if params.filters.get("status") not in ("open", "resolved", "all"):
        params.filters["status"] = "open"  # the open differences, unless the operator asks for others
    f = params.filters
    stmt = reconciliation.items_matching(current_user, status=f.get("status", ""), field_name=f.get("field", ""),
                                         serial=params.q, org_id=f.get("org_id", ""), first=parse_day(f.get("from")),
                                         last=parse_day(f.get("to")))
    page = paginate(stmt, params)
    return render_page("coupons/reports/reconciliation.html", "difference_rows", targets=("difference-rows",),
                       page=page, params=params, issues=reconciliation.issues_of(current_user, page.items),
                       bank_names=org_names(current_user, {i.org_id for i in page.items}),
                       banks=org_choices(current_user, ("bank",)), field_labels=FIELD_LABELS, describe=describe,
                       accounts=reconciliation.visible_accounts(current_user), runs=_recent_runs(),
                       window_hours=WINDOW_HOURS)


def _back() -> str:
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else url_for(".differences")


def _resolve(ids: list[int]):
    if not EmptyForm().validate_on_submit():
        abort(400)
    if not ids:
        flash(_("Select the differences to resolve first."), "warning")
        return redirect(_back())
    count = reconciliation.resolve_items(current_user, ids, request.form.get("note", ""))
    if count:
        flash(_("%(n)s difference(s) marked resolved.", n=count), "success")
    else:
        flash(_("None of the selected differences is still open."), "warning")
    return redirect(_back())


@bp.post("/resolve")
@login_required
@permission_required("coupons.view", "coupons.manage")
def resolve_selected():
    return _resolve([int(i) for i in request.form.getlist("item_ids") if i.isdigit()][:500])


@bp.post("/<int:item_id>/resolve")
@login_required
@permission_required("coupons.view", "coupons.manage")
def resolve_one(item_id: int):
    item = get_scoped_or_404(CouponReconciliationItem, item_id, current_user)
    return _resolve([item.id])


@bp.post("/run")
@login_required
@permission_required("coupons.view", "coupons.manage")
def run_now():
    """Start the reconciliation of the operator's banks' 云数汇 accounts, over the window chosen."""
    from jobs.coupon_reconciliation import reconcile_coupons

    if not EmptyForm().validate_on_submit():
        abort(400)
    accounts = reconciliation.visible_accounts(current_user)
    if not accounts:
        flash(_("No active Yunshuhui account to reconcile. Connect one in the coupon settings first."), "warning")
        return redirect(url_for(".differences"))
    hours = int(request.form.get("hours", "2")) if request.form.get("hours", "").isdigit() else 2
    hours = hours if hours in WINDOW_HOURS else 2
    label = _("Reconcile coupons with Yunshuhui (last %(hours)s hours, %(n)s account(s))", hours=hours, n=len(accounts))
    try:
        run = jobs.start_job(reconcile_coupons, [a.id for a in accounts], hours=hours, label=label,
                             queue_name="reports", org_id=current_user.org_id, started_by=current_user.id)
    except Exception:  # noqa: BLE001 - Redis refused; the run row says why
        current_app.logger.exception("could not start the coupon reconciliation")
        flash(_("The job could not be queued. Try again in a moment."), "danger")
        return redirect(url_for(".differences"))
    audit.record("job.start", "job_run", run.id, after={"name": run.name, "label": run.label},
                 org_id=current_user.org_id)
    db.session.commit()
    flash(_("Started: %(label)s. Its progress shows below.", label=label), "success")
    return redirect(url_for(".differences"))


@bp.get("/jobs/<int:run_id>")
@login_required
@permission_required("coupons.view")
def job_progress(run_id: int):
    """One reconciliation run's progress, polled by itself; 286 (stop polling) once it has finished."""
    stmt = select(JobRun).where(JobRun.id == run_id, JobRun.name == JOB_NAME)
    run = db.session.execute(scoped(JobRun, current_user, stmt)).scalar_one_or_none()
    if run is None:
        abort(404)
    if not htmx_targets(f"reconciliation-job-{run.id}"):
        return redirect(url_for(".differences"))
    return render_template("coupons/reports/reconciliation_job.html", run=run), 286 if run.finished else 200
