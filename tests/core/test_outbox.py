"""The outbox on PostgreSQL and Redis, delivering to a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.core import outbox
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.extensions import db
from jobs import queue


def post_json(receiver, n: int = 1, **options) -> OutboxMessage:
    return outbox.add_message("http.post_json", {"url": receiver.url, "body": {"n": n, "text": "到账通知"}}, **options)


def message(message_id: int) -> OutboxMessage:
    """A fresh read of the row (what another process would see)."""
    db.session.expire_all()
    return db.session.get(OutboxMessage, message_id)


def make_due(message_id: int) -> None:
    """Let the backoff pass, as the clock would."""
    db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id)
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_message_of_a_rolled_back_transaction_does_not_exist(app, make, receiver):
    org = make.org()
    written = post_json(receiver, org_id=org.id)
    assert db.session.get(OutboxMessage, written.id) is not None  # visible inside its own transaction
    db.session.rollback()

    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0
    # Nothing was handed to a worker, neither now nor on a later, unrelated commit.
    make.org()
    assert queue("outbox").count == 0
    assert receiver.requests == []


def test_committed_message_is_handed_to_a_worker_and_delivered(app, make, receiver):
    org = make.org()
    written = post_json(receiver, n=7, org_id=org.id, dedupe_key="notify:7")
    db.session.commit()

    jobs_waiting = queue("outbox").get_jobs()
    assert [job.args for job in jobs_waiting] == [(written.id,)]

    outcome = outbox.deliver(written.id)
    assert outcome.status == "delivered"
    assert receiver.bodies() == [{"n": 7, "text": "到账通知"}]
    assert receiver.requests[0]["content_type"].startswith("application/json")
    row = message(written.id)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None and row.last_result.startswith("HTTP 200")
    assert outbox.deliver(written.id) is None  # delivered once, never again
    assert len(receiver.requests) == 1


def test_failures_back_off_exponentially_then_dead_then_retry_by_hand(app, make, receiver):
    base = app.config["OUTBOX_BASE_DELAY_SECONDS"]
    receiver.status = 500
    written = post_json(receiver, max_attempts=3)
    db.session.commit()

    before = utcnow()
    outcome = outbox.deliver(written.id)
    after = utcnow()
    assert outcome.status == "pending" and "HTTP 500" in outcome.error
    row = message(written.id)
    assert row.attempts == 1 and "HTTP 500" in row.last_error
    assert before + timedelta(seconds=base) <= row.next_attempt_at <= after + timedelta(seconds=base)
    assert outbox.deliver(written.id) is None  # not due yet: no request is made
    assert len(receiver.requests) == 1

    make_due(written.id)
    before = utcnow()
    outbox.deliver(written.id)
    after = utcnow()
    row = message(written.id)
    assert row.attempts == 2 and row.status == "pending"
    assert before + timedelta(seconds=2 * base) <= row.next_attempt_at <= after + timedelta(seconds=2 * base)

    make_due(written.id)
    assert outbox.deliver(written.id).status == "dead"
    row = message(written.id)
    assert (row.status, row.attempts) == ("dead", 3)
    assert outbox.deliver(written.id) is None and outbox.relay_due() == []  # dead stays dead
    assert len(receiver.requests) == 3

    receiver.status = 200  # the bank's server recovers
    outbox.retry_by_hand(row)
    db.session.commit()
    row = message(written.id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert [job.args for job in queue("outbox").get_jobs()][-1] == (written.id,)  # handed over again
    assert outbox.deliver(written.id).status == "delivered"
    assert message(written.id).status == "delivered"
    assert len(receiver.requests) == 4
    with pytest.raises(ValueError):
        outbox.retry_by_hand(message(written.id))


def test_backoff_doubles_and_is_capped(app):
    base = app.config["OUTBOX_BASE_DELAY_SECONDS"]
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [base, 2 * base, 4 * base, 8 * base]
    assert outbox.backoff(40) == timedelta(hours=6)


def test_two_relays_racing_never_deliver_a_message_twice(app, receiver):
    receiver.delay = 0.03  # each delivery takes a moment, so the relays overlap
    ids = [post_json(receiver, n=n).id for n in range(24)]
    db.session.commit()
    start = threading.Barrier(2)
    outcomes: dict[str, list] = {}
    errors: list[BaseException] = []

    def relay(name: str) -> None:
        try:
            with app.app_context():
                start.wait(5)
                outcomes[name] = outbox.relay_due()
                db.session.remove()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=relay, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors

    received = sorted(body["n"] for body in receiver.bodies())
    assert received == list(range(24))  # every message exactly once
    delivered = sorted(o.message_id for o in outcomes["a"] + outcomes["b"])
    assert delivered == sorted(ids)
    assert outcomes["a"] and outcomes["b"]  # both relays really took part
    assert {message(i).status for i in ids} == {"delivered"}


def test_retry_by_hand_waits_for_a_delivery_in_flight(app, receiver):
    """A retry clicked while a relay is delivering the message must not queue it a second time."""
    written = post_json(receiver)
    db.session.commit()
    receiver.gate = threading.Event()
    results: dict[str, object] = {}

    def deliver() -> None:
        with app.app_context():
            results["delivery"] = outbox.deliver(written.id).status
            db.session.remove()

    def retry() -> None:
        with app.app_context():
            stale = db.session.get(OutboxMessage, written.id)  # read while still "pending"
            results["stale_status"] = stale.status
            try:
                outbox.retry_by_hand(stale)
                db.session.commit()
                results["retry"] = "queued again"
            except ValueError as exc:
                db.session.rollback()
                results["retry"] = str(exc)
            db.session.remove()

    delivering = threading.Thread(target=deliver)
    delivering.start()
    assert receiver.arrived.wait(10)  # the relay holds the row and is talking to the server
    retrying = threading.Thread(target=retry)
    retrying.start()
    retrying.join(0.5)
    assert retrying.is_alive()  # blocked on the row lock, not acting on its stale copy
    receiver.gate.set()
    delivering.join(10)
    retrying.join(10)

    assert results == {"delivery": "delivered", "stale_status": "pending", "retry": "already delivered"}
    assert message(written.id).status == "delivered"
    assert outbox.relay_due() == []
    assert len(receiver.requests) == 1


def test_unknown_kind_is_rejected_when_written(app):
    with pytest.raises(LookupError, match="no outbox handler"):
        outbox.add_message("carrier.pigeon", {"to": "bank"})
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0


def test_a_handler_that_breaks_the_session_is_counted_and_backed_off(app, make):
    """A handler's failed database work is undone without losing the delivery's own bookkeeping."""
    from sqlalchemy import text

    from app.extensions import db

    @outbox.outbox_handler("test.breaks_session")
    def breaks_session(payload):
        db.session.execute(text("SELECT 1/0"))  # aborts the (sub)transaction on PostgreSQL

    written = outbox.add_message("test.breaks_session", {}, max_attempts=3)
    db.session.commit()
    outcome = outbox.deliver(written.id)
    assert outcome.status == "pending" and "DivisionByZero" in outcome.error
    db.session.expire_all()
    row = db.session.get(OutboxMessage, written.id)
    assert row.attempts == 1 and row.next_attempt_at > row.created_at
