"""The embedded default (nothing configured): SQLite, fakeredis, a worker thread and a cron thread.

Everything runs in child processes, as a newcomer would run it: `flask db upgrade` on a fresh
SQLite file, then tests/core/embedded_probe.py, which starts the threads and reports what they did.
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys

import jobs
from tests.conftest import REPO


def embedded_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_WORKERS")}
    env.update(DATABASE_URL=database_url, REDIS_URL="", EMBEDDED_WORKERS="true", PYTHONPATH=REPO)
    return env


def schedule_in_cron_py() -> list[dict]:
    """The entries of jobs/cron.py, read from its source (not by importing it as RQ does): each
    `cron.register(func, queue_name=..., interval=... | cron=..., name=...)` with the dotted path of
    `func` taken from the file's own `from jobs.x import func` lines."""
    tree = ast.parse(open(os.path.join(REPO, "jobs", "cron.py"), encoding="utf-8").read())
    imported = {alias.asname or alias.name: f"{node.module}.{alias.name}" for node in tree.body
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    entries = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "cron"):
            continue
        options = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        assert isinstance(node.args[0], ast.Name) and node.args[0].id in imported, ast.unparse(node)
        entries.append({"name": options.get("name") or node.args[0].id, "func_name": imported[node.args[0].id],
                        "queue_name": options.get("queue_name") or ast.literal_eval(node.args[1]),
                        "interval": options.get("interval"), "cron": options.get("cron")})
    return sorted(entries, key=lambda entry: entry["name"])


def test_the_schedule_names_real_jobs_on_real_queues():
    schedule = schedule_in_cron_py()
    assert {"relay_outbox", "purge_idempotency_records"} <= {entry["name"] for entry in schedule}
    assert len({entry["name"] for entry in schedule}) == len(schedule), "two entries share a name"
    for entry in schedule:
        module, _, name = entry["func_name"].rpartition(".")
        func = getattr(importlib.import_module(module), name)
        assert callable(func) and hasattr(func, "__wrapped__"), f"{entry['func_name']} is not a @job_task"
        assert entry["queue_name"] in jobs.QUEUES, entry
        assert (entry["interval"] is None) != (entry["cron"] is None), f"{entry['name']}: give interval or cron"


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
    # The embedded cron thread loaded every entry of jobs/cron.py, as written there, and scheduled each.
    [scheduler] = report["cron_schedulers"]
    assert scheduler["config_file"] == "jobs.cron"
    loaded = [{k: v for k, v in job.items() if k != "next_enqueue_time"} for job in scheduler["jobs"]]
    assert loaded == schedule_in_cron_py()
    assert all(job["next_enqueue_time"] for job in scheduler["jobs"])
    assert report["cron_relay"] == {"status": "finished", "result": {"attempted": 0, "delivered": 0, "dead": 0}}
