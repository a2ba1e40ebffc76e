"""The embedded default's outbox on SQLite: a handler that waits on an in-process partner (a sandbox
writing to the same database file while it answers) can still write afterwards, and a message is
delivered by one relay only (app/core/outbox.py `_lease`, `_whole_transaction`)."""
from __future__ import annotations

import os
import threading

from flask_migrate import upgrade
from sqlalchemy import create_engine, func, select, text

from app import create_app
from app.config import TestConfig
from app.core import outbox
from app.extensions import db
from app.orgs.models import Organisation
from tests.conftest import REPO

calls: list[str] = []


@outbox.outbox_handler("test.partner_writes_while_answering")
def _partner_writes_while_answering(payload: dict) -> str:
    """Read, let the 'sandbox' (another connection, another thread) write and commit, then write."""
    db.session.execute(select(func.count()).select_from(Organisation)).scalar_one()
    partner = threading.Thread(target=_sandbox_answers, args=(payload["database"],))
    partner.start()
    partner.join()
    org = db.session.get(Organisation, payload["org_id"])
    org.name = "answered"
    calls.append("handled")
    return "written after the partner"


def _sandbox_answers(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE organisations SET contact_name = 'sandbox' WHERE id = 1"))
    engine.dispose()


def test_a_handler_writes_after_an_in_process_partner_wrote(tmp_path):
    database = f"sqlite:///{tmp_path / 'embedded.db'}"
    # TestConfig but for the database: a config with another Redis would move the shared rate limiter
    # (a process-wide extension) to memory for the tests that follow.
    app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=database)
    with app.app_context():
        upgrade(directory=os.path.join(REPO, "migrations"), revision="heads")
        db.session.add(Organisation(id=1, parent_id=None, path="/00000001/", kind="platform", code="P1", name="平台"))
        message = outbox.add_message("test.partner_writes_while_answering", {"org_id": 1, "database": database})
        db.session.commit()
        message_id = message.id
        calls.clear()

        outcome = outbox.deliver(message_id)
        again = outbox.deliver(message_id)  # delivered: nothing to do a second time

        assert outcome is not None and outcome.status == "delivered", outcome
        assert again is None and calls == ["handled"]
        db.session.expire_all()
        org = db.session.get(Organisation, 1)
        assert (org.name, org.contact_name) == ("answered", "sandbox")
        assert db.session.get(outbox.OutboxMessage, message_id).attempts == 1

