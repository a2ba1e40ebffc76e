"""The audit trail's hash chain on PostgreSQL: verification, tampering, the append-only trigger, concurrency."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.core import audit
from app.core.audit import GENESIS, AuditEvent
from app.extensions import db


def record_events(count: int, org_id: int | None = None) -> list[int]:
    """Append `count` events, each in its own committed transaction; their ids in order."""
    ids = []
    for n in range(count):
        event = audit.record("thing.update", "thing", n, before={"price_fen": n * 100, "name": "旧"},
                             after={"price_fen": n * 100 + 1, "name": "新"}, org_id=org_id)
        db.session.commit()
        ids.append(event.id)
    return ids


@contextmanager
def trigger_disabled():
    """Let the test itself tamper with the table, as someone with database access could."""
    db.session.remove()  # no open transaction may hold a lock on the table while it is altered
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change"))
    try:
        yield
    finally:
        db.session.remove()
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change"))


def verify_cli(app):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    return result.exit_code, result.output


def test_chain_of_committed_events_verifies(app):
    ids = record_events(5)
    events = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert [e.id for e in events] == ids
    assert events[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:]))

    report = audit.verify_chain()
    assert report.ok and report.checked == 5
    code, output = verify_cli(app)
    assert code == 0 and "audit chain OK: 5 events verified" in output


def test_rolled_back_event_leaves_no_gap_in_the_chain(app):
    record_events(2)
    audit.record("thing.delete", "thing", 99)
    db.session.rollback()
    record_events(2)
    report = audit.verify_chain()
    assert report.ok and report.checked == 4


def test_trigger_refuses_update_and_delete(app):
    (event_id,) = record_events(1)
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("UPDATE audit_events SET action = 'x' WHERE id = :id"), {"id": event_id})
    db.session.rollback()
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": event_id})
    db.session.rollback()
    assert db.session.execute(select(AuditEvent.action)).scalar_one() == "thing.update"


def test_cli_names_a_tampered_event(app):
    ids = record_events(5)
    with trigger_disabled():
        db.session.execute(text("""UPDATE audit_events SET after = '{"price_fen": 1, "name": "新"}' WHERE id = :id"""),
                           {"id": ids[2]})
        db.session.commit()

    code, output = verify_cli(app)
    assert code == 1
    assert f"BROKEN at event {ids[2]}" in output and "content does not match its hash" in output
    report = audit.verify_chain()
    assert (report.broken_at, report.checked) == (ids[2], 2)


def test_cli_detects_a_deleted_middle_event(app):
    ids = record_events(5)
    with trigger_disabled():
        db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[2]})
        db.session.commit()

    code, output = verify_cli(app)
    assert code == 1
    assert f"BROKEN at event {ids[3]}" in output and "previous-hash link" in output


def test_concurrent_appends_from_eight_threads_form_one_intact_chain(app):
    threads_count, per_thread = 8, 12
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            with app.app_context():
                start.wait(10)
                for n in range(per_thread):
                    with audit.acting_as(audit.Actor(None, f"worker{worker}", None, "127.0.0.1")):
                        audit.record("thing.update", "thing", f"{worker}-{n}", after={"n": n})
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors

    total = threads_count * per_thread
    assert db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == total
    prev_hashes = db.session.execute(select(AuditEvent.prev_hash)).scalars().all()
    assert len(set(prev_hashes)) == total  # no two events hang off the same predecessor: no fork
    assert prev_hashes.count(GENESIS) == 1
    # The threads really interleaved (the chain is not eight runs of one writer each).
    actors = db.session.execute(select(AuditEvent.actor_name).order_by(AuditEvent.id)).scalars().all()
    assert sum(1 for a, b in zip(actors, actors[1:]) if a != b) > threads_count - 1
    report = audit.verify_chain()
    assert report.ok and report.checked == total


def test_verify_chain_reports_progress_per_batch(app):
    record_events(7)
    calls = []
    report = audit.verify_chain(batch=3, progress=lambda checked, total: calls.append((checked, total)))
    assert report.ok and report.checked == 7
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_verify_chain_leaves_the_callers_objects_attached(app, make):
    operator = make.operator()
    record_events(3)
    audit.verify_chain(batch=2)
    assert operator in db.session  # the caller's own objects are not expunged by the walk
