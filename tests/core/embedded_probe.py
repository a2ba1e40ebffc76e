"""Run by tests/core/test_embedded.py in a child process: the embedded default, end to end.

Builds the app on the given SQLite file with fakeredis and embedded workers, starts the worker and
cron threads, and prints one JSON report of what they did. It runs in its own process because the
threads it starts never stop and `start_embedded_workers` is once per process.

    python -m tests.core.embedded_probe sqlite:////tmp/x/embedded.db
"""
from __future__ import annotations

import json
import sys
import threading
import time
from datetime import timedelta

from rq.cron import CronScheduler, get_cron_job_ids
from rq.job import Job
from sqlalchemy import func, select

import jobs
from app import create_app
from app.config import Config
from app.core.idempotency import IdempotencyRecord
from app.core.jobruns import JobRun
from app.core.timeutil import utcnow
from app.extensions import db
from jobs.embedded import start_embedded_workers
from jobs.maintenance import purge_idempotency_records, verify_audit_chain

TIMEOUT = 20.0


def wait_for(check, timeout: float = TIMEOUT):
    """Poll `check` until it returns something truthy, or give up and return the last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = check()
    return value


def main(database_url: str) -> dict:
    app = create_app(Config, SQLALCHEMY_DATABASE_URI=database_url, REDIS_URL="", EMBEDDED_WORKERS=True)
    connection = app.extensions["redis"]
    report: dict = {"redis_class": f"{type(connection).__module__}.{type(connection).__name__}"}
    with app.app_context():
        db.session.add(IdempotencyRecord(client_id="bank-a", key="old", request_hash="0" * 64,
                                         created_at=utcnow() - timedelta(days=30)))
        db.session.commit()

        report["started"] = start_embedded_workers(app)
        report["started_again"] = start_embedded_workers(app)

        # A plain job through jobs.queue(): the worker thread runs it against this SQLite file.
        job = jobs.queue("default").enqueue(purge_idempotency_records, days=7)
        wait_for(lambda: job.get_status(refresh=True) in ("finished", "failed"))
        report["queued_job"] = {"status": job.get_status().value, "result": job.return_value()}
        report["records_left"] = db.session.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one()

        # A tracked job: its JobRun row is finished by the worker thread.
        run = jobs.start_job(verify_audit_chain, label="verify", queue_name="default")

        def finished_run():
            db.session.expire_all()
            row = db.session.get(JobRun, run.id)
            return row if row.finished else None

        row = wait_for(finished_run) or db.session.get(JobRun, run.id)
        report["tracked_run"] = {"status": row.status, "progress": row.progress, "result": row.result}

        # The cron thread loaded jobs/cron.py and enqueued the 15-second relay at once; the worker ran it.
        schedulers = wait_for(lambda: CronScheduler.all(connection))
        report["cron_schedulers"] = [{"config_file": s.config_file, "jobs": sorted(
            ({"name": j.name, "func_name": j.func_name, "queue_name": j.queue_name, "interval": j.interval,
              "cron": j.cron, "next_enqueue_time": j.next_enqueue_time} for j in s.get_jobs()),
            key=lambda entry: entry["name"])} for s in schedulers]
        relay_ids = wait_for(lambda: get_cron_job_ids("relay_outbox", connection))
        relay = Job.fetch(relay_ids[0], connection=connection) if relay_ids else None
        if relay is not None:
            wait_for(lambda: relay.get_status(refresh=True) in ("finished", "failed"))
        report["cron_relay"] = ({"status": relay.get_status().value, "result": relay.return_value()}
                                if relay is not None else None)
        report["threads"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("rq-"))
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
