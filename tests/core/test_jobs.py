"""Tracked jobs on the test Redis, run by a real RQ SimpleWorker in burst mode."""
from __future__ import annotations

import threading

import pytest
from rq.job import Job, JobStatus
from rq.worker import SimpleWorker
from sqlalchemy import text

import jobs
from app.core import audit, outbox
from app.core.jobruns import JobRun
from app.core.outbox import OutboxMessage
from app.extensions import db
from jobs import job_task, report_progress, start_job
from jobs.maintenance import verify_audit_chain
from jobs.outbox import relay_outbox
from tests.core.conftest import another_app

# Jobs used only here; RQ imports them by name (tests.core.test_jobs.<name>) like any job.
progress_reached = threading.Event()
progress_checked = threading.Event()


@job_task
def fail_on_purpose(reason: str) -> None:
    raise RuntimeError(reason)


@job_task
def work_in_two_halves() -> dict:
    report_progress(40, "first half done")
    progress_reached.set()
    if not progress_checked.wait(10):
        raise TimeoutError("nobody looked at the progress")
    report_progress(80, "second half done")
    return {"halves": 2}


def run_worker(app, *queue_names: str) -> None:
    """Run every queued job, then return (RQ's burst mode), in this thread."""
    connection = app.extensions["redis"]
    worker = SimpleWorker([jobs.queue(name) for name in queue_names or jobs.QUEUES], connection=connection)
    worker.work(burst=True, logging_level="WARNING")


def fresh(run_id: int) -> JobRun:
    db.session.expire_all()
    return db.session.get(JobRun, run_id)


def test_tracked_relay_job_runs_on_a_worker_and_succeeds(app, receiver):
    message = outbox.add_message("http.post_json", {"url": receiver.url, "body": {"order": "A1"}})
    db.session.commit()
    jobs.queue("outbox").empty()  # the hand-over was lost (say Redis restarted): the relay must find it

    run = start_job(relay_outbox, label="Deliver due outbox messages now", queue_name="outbox", started_by=None)
    assert (run.status, run.progress) == ("queued", 0) and run.rq_job_id
    assert run.name == "jobs.outbox.relay_outbox"

    run_worker(app, "outbox")

    done = fresh(run.id)
    assert (done.status, done.progress) == ("succeeded", 100)
    assert done.result == {"attempted": 1, "delivered": 1, "dead": 0}
    assert done.started_at and done.finished_at and done.started_at <= done.finished_at
    assert Job.fetch(run.rq_job_id, connection=app.extensions["redis"]).get_status() == JobStatus.FINISHED
    assert receiver.bodies() == [{"order": "A1"}]
    assert db.session.get(OutboxMessage, message.id).status == "delivered"


def test_failing_job_ends_failed_with_its_error(app):
    run = start_job(fail_on_purpose, "the bank's server said no", label="fails")
    run_worker(app, "default")

    done = fresh(run.id)
    assert done.status == "failed"
    assert done.error == "RuntimeError: the bank's server said no"
    assert done.finished_at is not None and done.progress == 0
    assert Job.fetch(run.rq_job_id, connection=app.extensions["redis"]).get_status() == JobStatus.FAILED


def test_progress_is_visible_from_another_session_while_the_job_runs(app):
    progress_reached.clear()
    progress_checked.clear()
    run = start_job(work_in_two_halves, label="two halves")
    seen: dict = {}

    def look() -> None:
        """Another connection, as the web page's poll would be, while the worker is mid-job."""
        try:
            if progress_reached.wait(10):
                with app.app_context():
                    row = db.session.get(JobRun, run.id)
                    seen.update(status=row.status, progress=row.progress, message=row.message)
                    db.session.remove()
        finally:
            progress_checked.set()

    observer = threading.Thread(target=look)
    observer.start()
    run_worker(app, "default")  # the worker runs in this (main) thread, as RQ's signal handling needs
    observer.join(10)

    assert seen == {"status": "running", "progress": 40, "message": "first half done"}
    done = fresh(run.id)
    assert (done.status, done.progress, done.message) == ("succeeded", 100, "second half done")
    assert done.result == {"halves": 2}


def test_verify_chain_job_reports_progress_and_fails_on_a_broken_chain(app):
    for n in range(5):
        audit.record("thing.update", "thing", n, after={"n": n})
        db.session.commit()
    run = start_job(verify_audit_chain, batch=2, label="verify")
    run_worker(app, "default")
    done = fresh(run.id)
    assert (done.status, done.progress, done.result) == ("succeeded", 100, {"checked": 5})
    assert done.message == "audit chain OK: 5 events verified"

    db.session.remove()
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
        broken_id = conn.execute(text("SELECT id FROM audit_events ORDER BY id OFFSET 3 LIMIT 1")).scalar_one()
        conn.execute(text("UPDATE audit_events SET ip = '10.0.0.1' WHERE id = :id"), {"id": broken_id})
        conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))
    run = start_job(verify_audit_chain, batch=2, label="verify")
    run_worker(app, "default")
    done = fresh(run.id)
    assert done.status == "failed"
    assert f"BROKEN at event {broken_id}" in done.error and done.error.startswith("AuditChainBroken")
    assert done.message == "2 of 5 events verified"  # the progress reached before the break was found


def test_start_job_marks_the_run_failed_when_redis_is_down(app):
    unreachable = another_app(app, REDIS_URL="redis://127.0.0.1:1/0")
    with unreachable.app_context():
        with pytest.raises(Exception, match="(?i)connect"):
            start_job(relay_outbox, label="relay", queue_name="outbox")
        db.session.remove()
    run = db.session.execute(db.select(JobRun)).scalar_one()
    assert run.status == "failed" and "could not enqueue" in run.error and run.finished_at is not None
