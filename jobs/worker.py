"""The RQ worker class to run in production: `rq worker --worker-class jobs.worker.AppWorker ...`.

RQ's default worker forks a work horse for every job, and the horse imports the job's module:
each horse would build the Flask app (`jobs.get_app()`: configuration, extensions, blueprints —
about a second of CPU) and open a database connection of its own, for every single job. Measured
on the coupon pipeline (bench/scenarios/coupons.py, 2 workers, 2 cores): RQ's `Worker` 1.7
issues/s; the same with the app built once before the forks 6.7/s (a fork per job still costs
~0.3 s of a loaded 2-core machine); jobs run in the worker process itself 34–36/s.

`AppWorker` is RQ's `SimpleWorker` (jobs run in the worker process, one after another) with the
app built once when the worker starts. Job timeouts still apply (SIGALRM in the main thread). What
is given up is the per-job process: a job that leaked memory or crashed the interpreter would take
the worker with it, so run workers under a supervisor that restarts them (systemd, Kubernetes…).
Every job here is a short database/HTTP task that cleans up after itself (`jobs.job_task` removes
the session), which is what makes this the right trade.
"""
from __future__ import annotations

from typing import Any

from rq.worker import SimpleWorker

from jobs import bind_app, get_app


class AppWorker(SimpleWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bind_app(get_app())
