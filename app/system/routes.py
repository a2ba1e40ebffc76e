"""Health check and the system screens (audit trail, outbox, job runs)."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from app.extensions import csrf, db, get_redis, limiter

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


# Interim pages, replaced by the system screens being built in this session.
from flask import render_template_string  # noqa: E402
from flask_login import login_required  # noqa: E402

_INTERIM = "{% extends 'base.html' %}{% block content %}<h1 class='h4'>{{ title }}</h1>{% endblock %}"


@bp.get("/audit")
@login_required
def audit_log():
    return render_template_string(_INTERIM, title="Audit")


@bp.get("/outbox")
@login_required
def outbox():
    return render_template_string(_INTERIM, title="Outbox")


@bp.get("/jobs")
@login_required
def job_runs():
    return render_template_string(_INTERIM, title="Jobs")
