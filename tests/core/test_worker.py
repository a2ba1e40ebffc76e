"""`jobs.worker.AppWorker`, the production worker class: the app is bound once when the worker
starts and every job runs in the worker's own process (no work horse forked per job)."""
from __future__ import annotations

import os

import pytest
from rq.job import Job

import jobs
from jobs import job_task
from jobs.worker import AppWorker


@job_task
def where_it_ran() -> dict:
    """RQ imports it by name (tests.core.test_worker.where_it_ran) like any job."""
    return {"pid": os.getpid(), "app": id(jobs.get_app())}


@pytest.fixture
def bound_app_restored():
    before = jobs._app
    yield
    jobs._app = before


def test_jobs_run_in_the_worker_process_with_the_app_it_bound(app, bound_app_restored):
    queue = jobs.queue("default")
    first, second = queue.enqueue(where_it_ran), queue.enqueue(where_it_ran)
    worker = AppWorker([queue], connection=app.extensions["redis"])
    assert jobs._app is app
    worker.work(burst=True, logging_level="WARNING")
    answers = [Job.fetch(job.id, connection=app.extensions["redis"]).return_value() for job in (first, second)]
    assert answers == [{"pid": os.getpid(), "app": id(app)}] * 2
