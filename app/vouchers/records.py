"""Screens of the voucher records: the voucher list (search, filters, export, "sync now"), a
voucher's page with its verification log, the reconciliation differences, and the statistics.

Views parse, call one service (`app.vouchers.sync` through the jobs, `app.vouchers.stats`) and
render; every query goes through `app.core.tenancy`.
"""
from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import Select, func, select

import jobs
from app.auth.forms import EmptyForm
from app.auth.models import Operator
from app.core import audit, crypto
from app.core.audit import AuditEvent
from app.core.exports import FORMATS, Column, export_response, refuse_oversized_export, rows_for_export
from app.core.htmx import htmx_targets, render_page
from app.core.jobruns import JobRun
from app.core.listing import ListParams, apply_sort, paginate, parse_list_params
from app.core.money import fen_to_yuan
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, in_org_subtree, org_choices, org_names, scoped
from app.core.timeutil import business_today, format_local, local_day_range, parse_day
from app.extensions import db
from app.members import services as members
from app.members.forms import KIND_LABELS
from app.members.models import Member
from app.orgs.models import Organisation
from app.vouchers import stats as voucher_stats
from app.vouchers.models import (RECONCILIATION_KINDS, VOUCHER_STATUSES, PlatformAccount, ReconciliationItem, Voucher,
                                 VoucherVerification)
from app.vouchers.platforms import PLATFORM_LABELS

bp = Blueprint("voucher_records", __name__, url_prefix="/vouchers")

STATUS_LABELS = {"unused": _l("Unverified"), "partly_used": _l("Partly used"), "used": _l("Verified"),
                 "expired": _l("Expired"), "refunding": _l("Refund in progress"), "refunded": _l("Refunded")}
# The list page's colours: unverified blue, verified green, expired grey, refunded red.
STATUS_COLOURS = {"unused": "primary", "partly_used": "info", "used": "success", "expired": "secondary",
                  "refunding": "warning", "refunded": "danger"}
KIND_CHOICES = {"single": _l("Single use"), "multi_use": _l("Multi-use")}
VERIFICATION_LABELS = {"verifying": _l("Verifying"), "verified": _l("Verified"), "failed": _l("Failed"),
                       "unknown": _l("Outcome unknown"), "undone": _l("Undone")}
DIFFERENCE_LABELS = {"platform_only": _l("Verified on the platform only"), "local_only": _l("Verified by us only"),
                     "count_mismatch": _l("Different number of uses")}
TYPE_LABELS = {**KIND_LABELS, "unmapped": _l("Not mapped")}
VOUCHER_JOBS = "jobs.vouchers."










def _accounts() -> list[PlatformAccount]:
    return list(db.session.execute(scoped(PlatformAccount, current_user).order_by(PlatformAccount.platform,
                                                                                  PlatformAccount.id)).scalars())


def _recent_runs() -> list[JobRun]:
    """The voucher jobs started in the operator's organisations, newest first (their progress polls)."""
    if not current_user.can("vouchers.sync"):
        return []
    stmt = select(JobRun).where(JobRun.name.startswith(VOUCHER_JOBS)).order_by(JobRun.id.desc()).limit(3)
    return list(db.session.execute(scoped(JobRun, current_user, stmt)).scalars())


def _context(**context):
    return dict(status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS, kind_labels=KIND_CHOICES,
                platform_labels=PLATFORM_LABELS, verification_labels=VERIFICATION_LABELS,
                difference_labels=DIFFERENCE_LABELS, type_labels=TYPE_LABELS, action_form=EmptyForm(), **context)


# --- the voucher list ---------------------------------------------------------------------------

VOUCHER_FILTERS = ("platform", "kind", "status", "org_id", "from", "to")
VOUCHER_SORTS = {"created_at": Voucher.created_at, "expires_at": Voucher.expires_at,
                 "paid_price": Voucher.paid_price_fen, "status": Voucher.status}


def _vouchers_matching(params: ListParams) -> Select:
    """The visible vouchers that match the search box and filters.

    The search box takes a voucher code (exact: `uq_vouchers_platform_code`) or a member's full
    phone, found by its keyed hash (`ix_members_phone_hash`), never by a wildcard.
    """
    stmt = scoped(Voucher, current_user)
    q = params.q.strip()
    if q and members.looks_like_phone(q):
        member_ids = scoped(Member, current_user, select(Member.id)).where(
            Member.phone_hash == members.phone_lookup_hash(q))
        stmt = stmt.where(Voucher.member_id.in_(member_ids))
    elif q:
        stmt = stmt.where(Voucher.code == q.replace(" ", ""))
    filters = params.filters
    if filters.get("platform") in PLATFORM_LABELS:
        stmt = stmt.where(Voucher.platform == filters["platform"])
    if filters.get("kind") in KIND_CHOICES:
        stmt = stmt.where(Voucher.kind == filters["kind"])
    if filters.get("status") in VOUCHER_STATUSES:
        stmt = stmt.where(Voucher.status == filters["status"])
    if filters.get("org_id"):
        stmt = stmt.where(in_org_subtree(current_user, Voucher.org_id, filters["org_id"]))
    start, end = local_day_range(parse_day(filters.get("from")), parse_day(filters.get("to")))
    if start:
        stmt = stmt.where(Voucher.created_at >= start)
    if end:
        stmt = stmt.where(Voucher.created_at < end)
    return stmt


def _list_params() -> ListParams:
    return parse_list_params(request.args, VOUCHER_FILTERS, default_sort="created_at")


@bp.get("")
@login_required
@permission_required("vouchers.view")
def list_vouchers():
    params = _list_params()
    page = paginate(apply_sort(_vouchers_matching(params), params, VOUCHER_SORTS, Voucher.id), params)
    return render_page("vouchers/records.html", "voucher_rows", targets=("voucher-rows",), **_context(
        page=page, params=params, stores=org_choices(current_user, ("merchant", "store")), org_names=org_names(current_user, {v.org_id for v in page.items}),
        accounts=_accounts() if current_user.can("vouchers.sync") else [], runs=_recent_runs()))


@bp.get("/<int:voucher_id>")
@login_required
@permission_required("vouchers.view")
def voucher_detail(voucher_id: int):
    voucher = get_scoped_or_404(Voucher, voucher_id, current_user)
    log = list(db.session.execute(scoped(VoucherVerification, current_user).where(
        VoucherVerification.voucher_id == voucher.id).order_by(VoucherVerification.created_at.desc(),
                                                              VoucherVerification.id.desc())).scalars())
    operator_ids = {v.operator_id for v in log} | {v.undone_by for v in log}
    operators = dict(db.session.execute(select(Operator.id, Operator.display_name).where(
        Operator.id.in_([i for i in operator_ids if i]))).all()) if any(operator_ids) else {}
    member = db.session.get(Member, voucher.member_id) if voucher.member_id else None
    events = list(db.session.execute(select(AuditEvent).where(
        AuditEvent.object_type == "voucher", AuditEvent.object_id == str(voucher.id)).order_by(AuditEvent.id.desc())
        .limit(50)).scalars())
    differences = list(db.session.execute(scoped(ReconciliationItem, current_user).where(
        ReconciliationItem.platform == voucher.platform, ReconciliationItem.code == voucher.code)
        .order_by(ReconciliationItem.day.desc())).scalars())
    return render_page("vouchers/records_detail.html", **_context(
        voucher=voucher, log=log, operators=operators, member=member, events=events, differences=differences,
        org_name=org_names(current_user, {voucher.org_id}).get(voucher.org_id, "")))


def _export_columns(org_names: dict[int, str]) -> list[Column]:
    """Export columns; the buyer's phone is only ever held masked, and stays so in the file."""
    return [
        Column(_("Voucher code"), lambda v: v.code),
        Column(_("Platform"), lambda v: str(PLATFORM_LABELS.get(v.platform, v.platform))),
        Column(_("Type"), lambda v: str(KIND_CHOICES.get(v.kind, v.kind))),
        Column(_("Deal"), lambda v: v.title),
        Column(_("Product"), lambda v: v.product.name if v.product else ""),
        Column(_("Buyer phone"), lambda v: v.buyer_phone_masked or ""),
        Column(_("Store"), lambda v: org_names.get(v.org_id, "")),
        Column(_("Original price (yuan)"), lambda v: fen_to_yuan(v.original_price_fen)),
        Column(_("Paid price (yuan)"), lambda v: fen_to_yuan(v.paid_price_fen)),
        Column(_("Uses left"), lambda v: f"{v.uses_left}/{v.uses_total}"),
        Column(_("Status"), lambda v: str(STATUS_LABELS.get(v.status, v.status))),
        Column(_("Expires"), lambda v: format_local(v.expires_at)),
        Column(_("Order no."), lambda v: v.order_id or ""),
        Column(_("Source"), lambda v: v.source),
        Column(_("Recorded"), lambda v: format_local(v.created_at)),
    ]


@bp.get("/export")
@login_required
@permission_required("vouchers.view", "members.export")
def export_vouchers():
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    params = _list_params()
    stmt = apply_sort(_vouchers_matching(params), params, VOUCHER_SORTS, Voucher.id)
    total = db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    refused = refuse_oversized_export(total, current_app.config["EXPORT_MAX_ROWS"],
                                      url_for(".list_vouchers", **params.args(page=None)))
    if refused:
        return refused
    # The search text may be a phone number: the audit trail keeps it masked.
    q = crypto.mask_phone(crypto.normalise_phone(params.q)) if members.looks_like_phone(params.q) else params.q
    audit.record("voucher.export", "voucher", None, after={"format": fmt, "rows": total, "q": q, **params.filters},
                 org_id=current_user.org_id)
    db.session.commit()
    org_names = dict(db.session.execute(scoped(Organisation, current_user, select(Organisation.id, Organisation.name))).all())
    return export_response(_("Vouchers"), fmt, _export_columns(org_names), rows_for_export(stmt))


# --- sync now ---------------------------------------------------------------------------------

def _start(func, *args, label: str, org_id: int, queue_name: str = "default", **kwargs) -> JobRun | None:
    """Start a voucher job for the operator (audited); None, with a message, when Redis refuses it."""
    try:
        run = jobs.start_job(func, *args, label=label, queue_name=queue_name, org_id=org_id,
                             started_by=current_user.id, **kwargs)
    except Exception:  # noqa: BLE001 - the run row already says why
        current_app.logger.exception("could not start %s", label)
        flash(_("The job could not be queued. Try again in a moment."), "danger")
        return None
    audit.record("job.start", "job_run", run.id, after={"name": run.name, "label": run.label}, org_id=org_id)
    db.session.commit()
    flash(_("Started: %(label)s. Its progress shows below and on the jobs page.", label=label), "success")
    return run


def _back(endpoint: str = ".list_vouchers") -> str:
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else url_for(endpoint)


@bp.post("/sync")
@login_required
@permission_required("vouchers.view", "vouchers.sync")
def sync_now():
    """Sync one platform account's orders and statuses, or refresh the selected vouchers."""
    from jobs.vouchers import sync_voucher_orders, sync_voucher_statuses

    if not EmptyForm().validate_on_submit():
        abort(400)
    if request.form.get("account_id"):
        account = get_scoped_or_404(PlatformAccount, request.form.get("account_id"), current_user)
        name = f"{PLATFORM_LABELS.get(account.platform, account.platform)} · {account.store_name or account.store_ref}"
        _start(sync_voucher_orders, account.id, label=_("Sync voucher orders: %(name)s", name=name),
               org_id=account.org_id)
        _start(sync_voucher_statuses, account.id, label=_("Sync voucher statuses: %(name)s", name=name),
               org_id=account.org_id)
        return redirect(_back())
    ids = [int(i) for i in request.form.getlist("voucher_ids") if i.isdigit()][:500]
    vouchers = list(db.session.execute(scoped(Voucher, current_user, select(Voucher.id)).where(Voucher.id.in_(ids))).scalars()) if ids else []
    if not vouchers:
        flash(_("Select the vouchers to sync first."), "warning")
        return redirect(_back())
    _start(sync_voucher_statuses, voucher_ids=vouchers,
           label=_("Sync the status of %(n)s selected vouchers", n=len(vouchers)), org_id=current_user.org_id)
    return redirect(_back())


@bp.get("/jobs/<int:run_id>")
@login_required
@permission_required("vouchers.sync")
def job_progress(run_id: int):
    """One voucher job's progress, polled by itself; 286 (stop polling) once it has finished."""
    stmt = select(JobRun).where(JobRun.id == run_id, JobRun.name.startswith(VOUCHER_JOBS))
    run = db.session.execute(scoped(JobRun, current_user, stmt)).scalar_one_or_none()
    if run is None:
        abort(404)
    if not htmx_targets(f"voucher-job-{run.id}"):
        return redirect(url_for(".list_vouchers"))
    return render_template("vouchers/records_job.html", run=run), 286 if run.finished else 200


# --- reconciliation --------------------------------------------------------------------------

DIFFERENCE_FILTERS = ("account_id", "kind", "status", "from", "to")
DIFFERENCE_SORTS = {"day": ReconciliationItem.day, "code": ReconciliationItem.code}


def _differences_matching(params: ListParams) -> Select:
    stmt = scoped(ReconciliationItem, current_user)
    if params.q:
        stmt = stmt.where(ReconciliationItem.code == params.q.replace(" ", ""))
    filters = params.filters
    if filters.get("account_id", "").isdigit():
        stmt = stmt.where(ReconciliationItem.account_id == int(filters["account_id"]))
    if filters.get("kind") in RECONCILIATION_KINDS:
        stmt = stmt.where(ReconciliationItem.kind == filters["kind"])
    if filters.get("status") in ("open", "resolved"):
        stmt = stmt.where(ReconciliationItem.status == filters["status"])
    if parse_day(filters.get("from")):
        stmt = stmt.where(ReconciliationItem.day >= parse_day(filters["from"]))
    if parse_day(filters.get("to")):
        stmt = stmt.where(ReconciliationItem.day <= parse_day(filters["to"]))
    return stmt


@bp.get("/reconciliation")
@login_required
@permission_required("vouchers.view")
def reconciliation():
    params = parse_list_params(request.args, DIFFERENCE_FILTERS, default_sort="day")
    page = paginate(apply_sort(_differences_matching(params), params, DIFFERENCE_SORTS, ReconciliationItem.id), params)
    accounts = _accounts()
    return render_page("vouchers/reconciliation.html", "difference_rows", targets=("difference-rows",), **_context(
        page=page, params=params, accounts=accounts, account_names={a.id: a for a in accounts},
        org_names=org_names(current_user, {i.org_id for i in page.items}), runs=_recent_runs(),
        yesterday=date.fromordinal(business_today().toordinal() - 1)))


@bp.post("/reconciliation/run")
@login_required
@permission_required("vouchers.view", "vouchers.sync")
def run_reconciliation():
    from jobs.vouchers import reconcile_vouchers

    if not EmptyForm().validate_on_submit():
        abort(400)
    account = get_scoped_or_404(PlatformAccount, request.form.get("account_id"), current_user)
    day = parse_day(request.form.get("day")) or date.fromordinal(business_today().toordinal() - 1)
    if day > business_today():
        flash(_("A day in the future cannot be reconciled."), "warning")
        return redirect(_back(".reconciliation"))
    name = f"{PLATFORM_LABELS.get(account.platform, account.platform)} · {account.store_name or account.store_ref}"
    _start(reconcile_vouchers, account.id, day=day.isoformat(), queue_name="reports", org_id=account.org_id,
           label=_("Reconcile %(name)s for %(day)s", name=name, day=day.isoformat()))
    return redirect(_back(".reconciliation"))


# --- statistics ------------------------------------------------------------------------------

def _stats_args() -> tuple[date, date, str]:
    first, last = voucher_stats.default_range(business_today())
    first = parse_day(request.args.get("from")) or first
    last = parse_day(request.args.get("to")) or last
    if last < first:
        first, last = last, first
    if (last - first).days > 366:
        first = date.fromordinal(last.toordinal() - 366)
    return first, last, (request.args.get("org_id") or "").strip()


def _stats_for(first: date, last: date, org_id: str) -> voucher_stats.VoucherStats:
    def scope(model, stmt):
        stmt = scoped(model, current_user, stmt)
        if org_id:
            stmt = stmt.where(in_org_subtree(current_user, model.org_id, org_id))
        return stmt

    return voucher_stats.compute(first, last, scope)


@bp.get("/stats")
@login_required
@permission_required("vouchers.view")
def voucher_statistics():
    first, last, org_id = _stats_args()
    figures = _stats_for(first, last, org_id)
    chart = dict(platform_names=[str(PLATFORM_LABELS.get(r["platform"], r["platform"])) for r in figures.by_platform],
                 type_names=[str(TYPE_LABELS.get(r["type"], r["type"])) for r in figures.by_type],
                 day_labels=[day.strftime("%m-%d") for day in figures.days],
                 daily_amount_yuan=[float(fen_to_yuan(fen)) for fen in figures.daily_amount_fen])
    return render_page("vouchers/stats.html", **_context(stats=figures, chart=chart, org_id=org_id,
                                                         stores=org_choices(current_user, ("merchant", "store"))))


@bp.get("/stats/export")
@login_required
@permission_required("vouchers.view", "members.export")
def export_statistics():
    first, last, org_id = _stats_args()
    s = _stats_for(first, last, org_id)
    rows: list[tuple[str, str, object]] = [
        (_("Range"), _("From"), first.isoformat()), (_("Range"), _("To"), last.isoformat()),
        (_("Totals"), _("All vouchers"), s.total), (_("Totals"), _("Verified"), s.verified),
        (_("Totals"), _("Unverified"), s.unverified), (_("Totals"), _("Expired"), s.expired),
        (_("Totals"), _("Refunded"), s.refunded), (_("Totals"), _("Verification rate (%)"), s.rate_pct)]
    for row in s.by_platform:
        label = str(PLATFORM_LABELS.get(row["platform"], row["platform"]))
        rows += [(_("By platform"), f"{label} · " + _("vouchers"), row["count"]),
                 (_("By platform"), f"{label} · " + _("verified"), row["verified"]),
                 (_("By platform"), f"{label} · " + _("verification rate (%)"), row["rate_pct"]),
                 (_("By platform"), f"{label} · " + _("sales (yuan)"), fen_to_yuan(row["paid_fen"]))]
    for row in s.by_type:
        label = str(TYPE_LABELS.get(row["type"], row["type"]))
        rows += [(_("By type"), f"{label} · " + _("vouchers"), row["count"]),
                 (_("By type"), f"{label} · " + _("verified"), row["verified"])]
    for day, uses, amount in zip(s.days, s.daily_count, s.daily_amount_fen):
        rows += [(_("Daily verifications"), day.isoformat(), uses),
                 (_("Daily verification amount (yuan)"), day.isoformat(), fen_to_yuan(amount))]
    columns = [Column(_("Section"), lambda r: str(r[0])), Column(_("Figure"), lambda r: str(r[1])),
               Column(_("Value"), lambda r: r[2])]
    audit.record("voucher_stats.export", "voucher", None,
                 after={"from": first.isoformat(), "to": last.isoformat(), "org_id": org_id or None},
                 org_id=current_user.org_id)
    db.session.commit()
    return export_response(_("Voucher statistics"), "xlsx", columns, rows)
