"""Background jobs on RQ: named queues, the app-context wrapper, and tracked job runs.

Job functions take ids, not objects; `@job_task` gives them an app context (the worker's own
app, or the web app when the worker runs embedded in it) and a system audit actor. A job started
with `start_job` is mirrored in a `JobRun` row whose progress people can watch.
"""
from __future__ import annotations

import contextvars
import functools
from typing import Any, Callable

from flask import Flask, current_app, has_app_context
from rq import Queue
from sqlalchemy import update

QUEUES = ("outbox", "default", "reports")  # in priority order for workers
_app: Flask | None = None
_current_run: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_run_id", default=None)


def bind_app(app: Flask) -> None:
    """Make `app` the one jobs run in (the embedded worker shares the web app)."""
    global _app
    _app = app


def get_app() -> Flask:
    global _app
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _app is None:
        from app import create_app

        _app = create_app()
    return _app


def queue(name: str = "default") -> Queue:
    from app.extensions import get_redis

    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=get_redis())


def job_task(func: Callable) -> Callable:
    """Run a job function inside an app context, as the system actor, mirroring its JobRun if it has one."""

    @functools.wraps(func)
    def wrapped(*args: Any, job_run_id: int | None = None, **kwargs: Any) -> Any:
        app = get_app()
        with app.app_context():
            from app.core import audit
            from app.extensions import db

            token = _current_run.set(job_run_id)
            try:
                with audit.acting_as(audit.SYSTEM):
                    _mark_run(job_run_id, status="running", started=True)
                    try:
                        result = func(*args, **kwargs)
                    except Exception as exc:
                        db.session.rollback()
                        _mark_run(job_run_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished=True)
                        raise
                    _mark_run(job_run_id, status="succeeded", progress=100, result=result, finished=True)
                    return result
            finally:
                _current_run.reset(token)
                db.session.remove()

    return wrapped


def _mark_run(run_id: int | None, *, started: bool = False, finished: bool = False, **values: Any) -> None:
    """Update a JobRun outside the job's own transaction, so progress shows while the job works."""
    if run_id is None:
        return
    from app.core.jobruns import JobRun
    from app.core.timeutil import utcnow
    from app.extensions import db

    if started:
        values["started_at"] = utcnow()
    if finished:
        values["finished_at"] = utcnow()
    if "result" in values and not isinstance(values["result"], (dict, type(None))):
        values["result"] = {"value": values["result"]}
    with db.engine.begin() as conn:
        conn.execute(update(JobRun).where(JobRun.id == run_id).values(**values))


def report_progress(percent: int, message: str | None = None) -> None:
    """Called from inside a job: record how far it has come (0-100) and what it is doing."""
    _mark_run(_current_run.get(), progress=max(0, min(100, int(percent))), message=message)


def start_job(
    func: Callable,
    *args: Any,
    label: str,
    queue_name: str = "default",
    org_id: int | None = None,
    started_by: int | None = None,
    **kwargs: Any,
):
    """Record a JobRun and enqueue the job; returns the JobRun."""
    from app.core.jobruns import JobRun
    from app.extensions import db

    run = JobRun(
        name=f"{func.__module__}.{func.__name__}", label=label, queue=queue_name, org_id=org_id, started_by=started_by
    )
    db.session.add(run)
    db.session.commit()
    try:
        job = queue(queue_name).enqueue(func, *args, job_run_id=run.id, **kwargs)
    except Exception as exc:  # Redis unreachable: say so on the run instead of leaving it "queued" forever
        _mark_run(run.id, status="failed", error=f"could not enqueue: {type(exc).__name__}: {exc}", finished=True)
        raise
    run.rq_job_id = job.id
    db.session.commit()
    return run


def enqueue_outbox_delivery(message_id: int) -> None:
    """Hand a freshly committed outbox message to a worker; the cron relay is the safety net."""
    from jobs.outbox import deliver_outbox_message

    try:
        queue("outbox").enqueue(deliver_outbox_message, message_id)
    except Exception:  # Redis down: the message is safe in the table and the relay will find it
        current_app.logger.warning("could not enqueue outbox message %s; relay will deliver it", message_id)
