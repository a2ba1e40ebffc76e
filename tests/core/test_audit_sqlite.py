"""The audit chain on the embedded default's SQLite: events appended at once from many threads (web
requests, the worker, cron) still form one chain, each linked to the event before it."""
from __future__ import annotations

import os
import threading

from flask_migrate import upgrade

from app import create_app
from app.config import TestConfig
from app.core import audit
from app.extensions import db
from tests.conftest import REPO

THREADS, EVENTS_EACH = 6, 15


def test_events_appended_at_once_form_one_chain(tmp_path):
    # TestConfig but for the database (another Redis would move the process-wide rate limiter to memory).
    app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'embedded.db'}")
    with app.app_context():
        upgrade(directory=os.path.join(REPO, "migrations"), revision="heads")
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append(n: int) -> None:
        with app.app_context():
            start.wait(10)
            try:
                for i in range(EVENTS_EACH):
                    audit.record("test.event", "thread", f"{n}-{i}")  # a read's audit: nothing written before it
                    db.session.commit()
            except BaseException as exc:  # noqa: BLE001 (reported below)
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    with app.app_context():
        report = audit.verify_chain()
        assert report.ok, report.describe()
        assert report.checked == THREADS * EVENTS_EACH
        db.session.remove()
