"""The embedded default (nothing configured): SQLite, fakeredis, a worker thread and a cron thread.

Everything runs in child processes, as a newcomer would run it: `flask db upgrade` on a fresh
SQLite file, then tests/core/embedded_probe.py, which starts the threads and reports what they did.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def embedded_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_WORKERS")}
    env.update(DATABASE_URL=database_url, REDIS_URL="", EMBEDDED_WORKERS="true", PYTHONPATH=REPO)
    return env


def test_embedded_worker_and_cron_threads_run_jobs(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'embedded.db'}"
    env = embedded_env(database_url)
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    upgrade = subprocess.run([flask, "--app", "wsgi", "db", "upgrade"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "embedded.db").exists()

    probe = subprocess.run([sys.executable, "-m", "tests.core.embedded_probe", database_url], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    assert report["redis_class"].startswith("fakeredis")
    assert (report["started"], report["started_again"]) == (True, False)
    assert report["threads"] == ["rq-cron", "rq-worker"]
    assert report["queued_job"] == {"status": "finished", "result": {"purged": 1}}
    assert report["records_left"] == 0
    assert report["tracked_run"]["status"] == "succeeded" and report["tracked_run"]["progress"] == 100
    assert report["tracked_run"]["result"] == {"checked": 0}  # a fresh database has no events yet
    assert report["cron_schedulers"] == [{"config_file": "jobs.cron",
                                          "jobs": ["purge_idempotency_records", "reconcile_vouchers", "relay_outbox",
                                                   "sync_voucher_orders", "sync_voucher_statuses"]}]
    assert report["cron_relay"] == {"status": "finished", "result": {"attempted": 0, "delivered": 0, "dead": 0}}
