"""Health check and the system screens: the audit trail, outbox deliveries, background jobs."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from redis.exceptions import RedisError
from sqlalchemy import text

from app.auth.forms import EmptyForm
from app.core.exports import FORMATS, Column, export_response, rows_for_export
from app.core.htmx import htmx_targets, render_page
from app.core.listing import paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.timeutil import format_local
from app.extensions import csrf, db, get_redis, limiter
from app.system import services

bp = Blueprint("system", __name__)


@bp.get("/healthz")
@limiter.exempt
@csrf.exempt
def healthz():
    """200 when the database and Redis answer; 503 naming the one that does not."""
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure to reach the database is "down"
        db.session.rollback()
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        get_redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure to reach Redis is "down"
        checks["redis"] = f"down: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503


def _back_to(endpoint: str) -> str:
    """The list URL a form came from (its `next` field), if it is that list; else the bare list."""
    base = url_for(endpoint)
    target = request.form.get("next") or ""
    return target if target == base or target.startswith(base + "?") else base


# --- the audit trail ------------------------------------------------------------------------

@bp.get("/audit")
@login_required
@permission_required("audit.view")
def audit_log():
    params = parse_list_params(request.args, services.AUDIT_FILTERS)
    page = paginate(services.audit_events(current_user, params.filters), params)
    return render_page("system/audit.html", "audit_rows", targets=("audit-rows",), page=page, params=params,
                       choices=services.audit_filter_choices(current_user),
                       org_names=services.organisation_names(e.org_id for e in page.items), formats=FORMATS,
                       field_changes=services.field_changes)


@bp.get("/audit/<int:event_id>")
@login_required
@permission_required("audit.view")
def audit_event(event_id: int):
    event = services.find_audit_event(current_user, event_id)
    if event is None:
        abort(404)
    return render_page("system/audit_event.html", "modal_body", targets=("modal-content",), event=event,
                       changes=services.field_changes(event), show_value=services.show_value,
                       org_names=services.organisation_names([event.org_id]))


@bp.get("/audit/export")
@login_required
@permission_required("audit.view")
def export_audit():
    fmt = request.args.get("fmt", "csv")
    if fmt not in FORMATS:
        abort(404)
    params = parse_list_params(request.args, services.AUDIT_FILTERS)
    stmt = services.audit_events(current_user, params.filters).limit(current_app.config["EXPORT_MAX_ROWS"])
    events = rows_for_export(stmt)
    org_names = services.organisation_names()
    columns = [
        Column(_("Event"), lambda e: e.id),
        Column(_("Time"), lambda e: format_local(e.occurred_at)),
        Column(_("Acted by"), lambda e: e.actor_name),
        Column(_("Organisation"), lambda e: org_names.get(e.org_id, "")),
        Column(_("Action"), lambda e: e.action),
        Column(_("Object type"), lambda e: e.object_type),
        Column(_("Object id"), lambda e: e.object_id),
        Column(_("Before"), lambda e: services.show_value(e.before)),
        Column(_("After"), lambda e: services.show_value(e.after)),
        Column(_("IP address"), lambda e: e.ip),
        Column(_("Hash"), lambda e: e.hash),
    ]
    return export_response(_("Audit trail"), fmt, columns, events)


# --- outbox deliveries ----------------------------------------------------------------------

OUTBOX_FILTERS = ("status", "kind")


@bp.get("/outbox")
@login_required
@permission_required("system.outbox")
def outbox():
    params = parse_list_params(request.args, OUTBOX_FILTERS)
    status = params.filters.get("status", "")
    if status not in services.OUTBOX_STATUS_FILTERS:
        params.filters.pop("status")
        status = ""
    stmt = services.outbox_messages(current_user, status, params.filters.get("kind", ""))
    page = paginate(stmt, params)
    return render_page("system/outbox.html", "outbox_rows", targets=("outbox-rows",), page=page, params=params,
                       kinds=services.outbox_kinds(current_user),
                       org_names=services.organisation_names(m.org_id for m in page.items))


def _flash_retry(result: services.RetryResult) -> None:
    if result.retried:
        flash(_("%(n)s message(s) put back in line for delivery now.", n=len(result.retried)), "success")
    if result.skipped:
        flash(_("%(n)s message(s) skipped: already delivered.", n=len(result.skipped)), "warning")
    if not result.retried and not result.skipped:
        flash(_("None of the selected messages can be retried."), "warning")


@bp.post("/outbox/<int:message_id>/retry")
@login_required
@permission_required("system.outbox")
def retry_outbox_message(message_id: int):
    if services.find_outbox_message(current_user, message_id) is None:
        abort(404)
    if EmptyForm().validate_on_submit():
        _flash_retry(services.retry_outbox_messages(current_user, [message_id]))
    return redirect(_back_to("system.outbox"))


@bp.post("/outbox/retry")
@login_required
@permission_required("system.outbox")
def retry_outbox_messages():
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    if EmptyForm().validate_on_submit():
        if ids:
            _flash_retry(services.retry_outbox_messages(current_user, ids))
        else:
            flash(_("Select the messages to retry first."), "warning")
    return redirect(_back_to("system.outbox"))


# --- background jobs ------------------------------------------------------------------------

@bp.get("/jobs")
@login_required
@permission_required("system.jobs")
def job_runs():
    params = parse_list_params(request.args)
    page = paginate(services.job_runs(current_user), params)
    return render_page("system/jobs.html", "job_rows", targets=("job-rows",), page=page, params=params,
                       started_by=services.operator_names(r.started_by for r in page.items),
                       startable=services.STARTABLE_JOBS if services.may_start_jobs(current_user) else {})


@bp.get("/jobs/<int:run_id>")
@login_required
@permission_required("system.jobs")
def job_run(run_id: int):
    """One run's row, polled by itself while the job works; 286 (stop polling) once it has finished."""
    run = services.find_job_run(current_user, run_id)
    if run is None:
        abort(404)
    if not htmx_targets(f"job-run-{run.id}"):
        return redirect(url_for("system.job_runs"))
    row = render_block("system/jobs.html", "job_row", run=run, started_by=services.operator_names([run.started_by]))
    return row, 286 if run.finished else 200


@bp.post("/jobs/start/<name>")
@login_required
@permission_required("system.jobs")
def start_job(name: str):
    if name not in services.STARTABLE_JOBS:
        abort(404)
    if not services.may_start_jobs(current_user):
        abort(403)
    if EmptyForm().validate_on_submit():
        try:
            run = services.start_platform_job(current_user, name)
        except RedisError:  # the queue is unreachable; the run is marked failed with the reason
            current_app.logger.exception("could not start job %s", name)
            flash(_("The job could not be queued. See its row for the reason."), "danger")
        else:
            flash(_("Started: %(label)s.", label=run.label), "success")
    return redirect(url_for("system.job_runs"))
