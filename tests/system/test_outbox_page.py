"""The outbox page: status and kind filters, retry one and a selection, audit, tenancy."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.extensions import db
from jobs import queue
from tests.helpers import csrf_from, htmx_headers
from tests.system.conftest import in_english


def stored_message(org, status: str, kind: str = "http.post_json", attempts: int = 0, error: str | None = None):
    """A message row as the relay would have left it (written directly: the states are the point here)."""
    message = OutboxMessage(kind=kind, org_id=org.id if org else None, status=status, attempts=attempts,
                            max_attempts=8, payload={"url": "https://bank.example/notify", "body": {}},
                            next_attempt_at=utcnow() + timedelta(minutes=4), last_error=error,
                            delivered_at=utcnow() if status == "delivered" else None)
    db.session.add(message)
    db.session.commit()
    return message.id


@pytest.fixture
def messages(world):
    return {
        "a_pending": stored_message(world.bank_a, "pending", attempts=2, error="HTTP 502: bad gateway"),
        "a_dead": stored_message(world.bank_a, "dead", attempts=8, error="ConnectError: refused"),
        "a_delivered": stored_message(world.bank_a, "delivered", attempts=1),
        "a_sync": stored_message(world.bank_a, "dead", kind="external_db.sync", attempts=8, error="timeout"),
        "b_dead": stored_message(world.bank_b, "dead", attempts=8, error="HTTP 500"),
        "platform": stored_message(None, "pending", attempts=1),
    }


def rows_shown(response) -> set[int]:
    html = response.get_data(as_text=True)
    return {int(part.split('"')[0]) for part in html.split('data-testid="outbox-row-')[1:]}


def fresh(message_id: int) -> OutboxMessage:
    db.session.expire_all()
    return db.session.get(OutboxMessage, message_id)


def ids(messages, *names) -> set[int]:
    return {messages[name] for name in names}


@pytest.mark.parametrize("query, expected", [
    ("", ("a_pending", "a_dead", "a_sync", "b_dead", "platform")),  # default: what needs attention
    ("?status=pending", ("a_pending", "platform")),
    ("?status=dead", ("a_dead", "a_sync", "b_dead")),
    ("?status=delivered", ("a_delivered",)),
    ("?status=all", ("a_pending", "a_dead", "a_delivered", "a_sync", "b_dead", "platform")),
    ("?status=nonsense", ("a_pending", "a_dead", "a_sync", "b_dead", "platform")),
    ("?status=all&kind=external_db.sync", ("a_sync",)),
    ("?kind=http.post_json", ("a_pending", "a_dead", "b_dead", "platform")),
])
def test_platform_admin_filters(client, auth, messages, query, expected):
    auth.login("boss")
    response = client.get(f"/outbox{query}", headers=htmx_headers("outbox-rows"))
    assert response.status_code == 200
    assert rows_shown(response) == ids(messages, *expected)


def test_page_shows_attempts_next_try_and_last_error(client, auth, messages):
    auth.login("boss")
    response = client.get("/outbox")
    html = response.get_data(as_text=True)
    assert "<html" in html and 'data-testid="outbox-filters"' in html
    assert f'data-testid="attempts-{messages["a_pending"]}">2 / 8' in html
    assert "HTTP 502: bad gateway" in html and "ConnectError: refused" in html
    assert f'data-testid="retry-{messages["a_dead"]}"' in html
    assert '<option value="external_db.sync"' in html
    fragment = client.get("/outbox?status=dead", headers=htmx_headers("outbox-rows")).get_data(as_text=True)
    assert "<html" not in fragment and 'data-testid="outbox-filters"' not in fragment
    delivered = client.get("/outbox?status=delivered", headers=htmx_headers("outbox-rows")).get_data(as_text=True)
    assert f'data-testid="retry-{messages["a_delivered"]}"' not in delivered  # nothing to retry


def test_retry_button_puts_the_message_back_in_line_and_audits_it(client, auth, world, messages):
    auth.login("boss")
    in_english(client)
    page = client.get("/outbox?status=dead")
    dead = messages["a_dead"]
    response = client.post(f"/outbox/{dead}/retry",
                           data={"csrf_token": csrf_from(page), "next": "/outbox?status=dead"})
    assert response.status_code == 302 and response.headers["Location"] == "/outbox?status=dead"

    row = fresh(dead)
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.next_attempt_at <= utcnow()
    assert [job.args for job in queue("outbox").get_jobs()] == [(dead,)]  # handed to a worker now
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "outbox.retry")).scalar_one()
    assert (event.object_type, event.object_id, event.org_id) == ("outbox_message", str(dead), world.bank_a.id)
    assert event.actor_name == "boss"
    assert event.before["status"] == "dead" and event.before["attempts"] == 8
    assert event.after["status"] == "pending" and event.after["attempts"] == 0

    followed = client.get(response.headers["Location"])
    html = followed.get_data(as_text=True)
    assert "1 message(s) put back in line for delivery now." in html  # the toast
    assert dead not in rows_shown(followed)  # no longer dead
    pending = client.get("/outbox?status=pending", headers=htmx_headers("outbox-rows"))
    assert f'data-testid="attempts-{dead}">0 / 8' in pending.get_data(as_text=True)


def test_retry_refuses_a_foreign_next_url(client, auth, messages):
    auth.login("boss")
    token = csrf_from(client.get("/outbox"))
    response = client.post(f"/outbox/{messages['a_dead']}/retry",
                           data={"csrf_token": token, "next": "https://evil.example/outbox"})
    assert response.headers["Location"] == "/outbox"


def test_retry_without_csrf_changes_nothing(client, auth, messages):
    auth.login("boss")
    response = client.post(f"/outbox/{messages['a_dead']}/retry", data={})
    assert response.status_code == 400
    assert fresh(messages["a_dead"]).status == "dead"


def test_batch_retry_of_the_selection(client, auth, messages):
    auth.login("boss")
    in_english(client)
    token = csrf_from(client.get("/outbox"))
    selected = [messages["a_pending"], messages["a_dead"], messages["a_delivered"], messages["b_dead"]]
    response = client.post("/outbox/retry", data={"csrf_token": token, "ids": [str(i) for i in selected]},
                           follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "3 message(s) put back in line for delivery now." in html
    assert "1 message(s) skipped: already delivered." in html
    for name in ("a_pending", "a_dead", "b_dead"):
        assert (fresh(messages[name]).status, fresh(messages[name]).attempts) == ("pending", 0)
    assert fresh(messages["a_delivered"]).status == "delivered"
    audited = db.session.execute(select(AuditEvent.object_id).where(AuditEvent.action == "outbox.retry")).scalars()
    assert sorted(int(i) for i in audited) == sorted(messages[n] for n in ("a_pending", "a_dead", "b_dead"))

    nothing = client.post("/outbox/retry", data={"csrf_token": token}, follow_redirects=True)
    assert "Select the messages to retry first." in nothing.get_data(as_text=True)


def test_bank_admin_sees_and_retries_only_their_banks_messages(client, auth, messages):
    auth.login("a_admin")
    in_english(client)
    shown = rows_shown(client.get("/outbox?status=all", headers=htmx_headers("outbox-rows")))
    assert shown == ids(messages, "a_pending", "a_dead", "a_delivered", "a_sync")

    token = csrf_from(client.get("/outbox"))
    assert client.post(f"/outbox/{messages['b_dead']}/retry", data={"csrf_token": token}).status_code == 404
    assert client.post(f"/outbox/{messages['platform']}/retry", data={"csrf_token": token}).status_code == 404
    response = client.post("/outbox/retry", data={"csrf_token": token,
                                                  "ids": [str(messages["b_dead"]), str(messages["a_dead"])]},
                           follow_redirects=True)
    assert "1 message(s) put back in line for delivery now." in response.get_data(as_text=True)
    assert "skipped" not in response.get_data(as_text=True)  # another bank's message is not even mentioned
    assert fresh(messages["b_dead"]).status == "dead" and fresh(messages["b_dead"]).attempts == 8
    assert fresh(messages["a_dead"]).status == "pending"
    audited = db.session.execute(select(AuditEvent.object_id).where(AuditEvent.action == "outbox.retry")).scalars()
    assert list(audited) == [str(messages["a_dead"])]
