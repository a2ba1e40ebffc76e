"""The embedded default: an RQ worker thread and a cron thread inside the web process, on fakeredis.

Threads cannot install signal handlers, so both use subclasses that skip them, and the worker
uses RQ's TimerDeathPenalty for job timeouts instead of SIGALRM.
"""
from __future__ import annotations

import logging
import threading

from flask import Flask
from rq.cron import CronScheduler
from rq.timeouts import TimerDeathPenalty
from rq.worker import SimpleWorker

from jobs import QUEUES, bind_app

_started = False
_lock = threading.Lock()
log = logging.getLogger(__name__)


class ThreadWorker(SimpleWorker):
    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


class ThreadCronScheduler(CronScheduler):
    def _install_signal_handlers(self) -> None:
        pass


def start_embedded_workers(app: Flask) -> bool:
    """Start the worker and cron threads once per process; returns whether this call started them."""
    global _started
    with _lock:
        if _started:
            return False
        _started = True
    bind_app(app)
    connection = app.extensions["redis"]
    worker = ThreadWorker([q for q in QUEUES], connection=connection)
    threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, name="rq-worker", daemon=True).start()
    scheduler = ThreadCronScheduler(connection=connection, logging_level="WARNING")
    scheduler.load_config_from_file("jobs.cron")
    threading.Thread(target=scheduler.start, name="rq-cron", daemon=True).start()
    log.info("embedded RQ worker and cron started")
    return True
