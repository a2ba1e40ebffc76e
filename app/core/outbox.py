"""The outbox: work that leaves the process is written as a row in the business transaction,
then delivered by a job with retries and exponential backoff, dead-lettered after its last try,
and retryable by hand from the console.

A delivery handler is registered per message `kind`; it raises to signal failure. Rows are
claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of relays can run at once
and each message is attempted by one of them at a time.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from flask import current_app
from sqlalchemy import JSON, CheckConstraint, DateTime, Index, Integer, String, Text, event, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.core.timeutil import utcnow
from app.extensions import db

STATUSES = ("pending", "delivered", "dead")
Handler = Callable[[dict[str, Any]], Any]
_handlers: dict[str, Handler] = {}


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint("status IN ('pending','delivered','dead')", name="status"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # A business key (e.g. "bank-notify:ORDER123"): the same message is never written twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_result: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def outbox_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that delivers messages of one kind."""

    def register(func: Handler) -> Handler:
        _handlers[kind] = func
        return func

    return register


def handler_for(kind: str) -> Handler:
    try:
        return _handlers[kind]
    except KeyError:
        raise LookupError(f"no outbox handler for kind {kind!r}") from None


def add_message(
    kind: str,
    payload: dict[str, Any],
    *,
    org_id: int | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
) -> OutboxMessage:
    """Write a message in the caller's transaction; it is handed to the relay after commit."""
    handler_for(kind)  # fail now, inside the business transaction, on an unknown kind
    message = OutboxMessage(
        kind=kind,
        payload=payload,
        org_id=org_id,
        dedupe_key=dedupe_key,
        max_attempts=max_attempts or current_app.config["OUTBOX_MAX_ATTEMPTS"],
        next_attempt_at=utcnow(),
    )
    db.session.add(message)
    db.session.flush()
    db.session.info.setdefault("outbox_new_ids", []).append(message.id)
    return message


@event.listens_for(Session, "after_commit")
def _hand_over_after_commit(session: Session) -> None:
    ids = session.info.pop("outbox_new_ids", None)
    if ids:
        from jobs import enqueue_outbox_delivery

        for message_id in ids:
            enqueue_outbox_delivery(message_id)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("outbox_new_ids", None)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failures: base · 2^(attempts-1), capped at 6 hours."""
    base = current_app.config["OUTBOX_BASE_DELAY_SECONDS"]
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 6 * 3600))


@dataclass
class DeliveryOutcome:
    message_id: int
    status: str
    error: str | None = None


def deliver(message_id: int) -> DeliveryOutcome | None:
    """Attempt one due message, if no other relay holds it; commits its new state."""
    stmt = select(OutboxMessage).where(
        OutboxMessage.id == message_id,
        OutboxMessage.status == "pending",
        OutboxMessage.next_attempt_at <= utcnow(),
    )
    message = db.session.execute(_locked(stmt)).scalar_one_or_none()
    if message is None:
        db.session.rollback()
        return None
    return _attempt(message)


def relay_due(limit: int = 100) -> list[DeliveryOutcome]:
    """Deliver up to `limit` due messages, oldest due first."""
    outcomes: list[DeliveryOutcome] = []
    for _ in range(limit):
        stmt = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= utcnow())
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
        )
        message = db.session.execute(_locked(stmt)).scalar_one_or_none()
        if message is None:
            db.session.rollback()
            break
        outcomes.append(_attempt(message))
    return outcomes


def _locked(stmt):
    if db.session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def _attempt(message: OutboxMessage) -> DeliveryOutcome:
    """Run the handler while holding the row lock, then record the outcome and commit.

    The handler runs inside a savepoint: database work it does commits with the delivery, and
    whatever it leaves half-done when it raises is undone without losing the row lock. On the
    embedded default's SQLite the message is leased instead (`_lease`) and the handler runs in a
    transaction of its own, rolled back whole when it raises: a savepoint would open SQLite's
    transaction before the handler calls a partner, and that snapshot could not write after the
    in-process sandbox, answering the call, had written.
    """
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    if postgresql:
        message.attempts += 1
        db.session.flush()
    elif not _lease(message):
        return DeliveryOutcome(message.id, "pending", "taken by another relay")
    try:
        with db.session.begin_nested() if postgresql else _whole_transaction():
            result = handler_for(message.kind)(dict(message.payload))
    except Exception as exc:  # a handler signals failure by raising, whatever the reason
        error = f"{type(exc).__name__}: {exc}"[:2000]
        message.last_error = error
        if message.attempts >= message.max_attempts:
            message.status = "dead"
        else:
            message.next_attempt_at = utcnow() + backoff(message.attempts)
        db.session.commit()
        return DeliveryOutcome(message.id, message.status, error)
    message.status = "delivered"
    message.delivered_at = utcnow()
    message.last_error = None
    message.last_result = None if result is None else str(result)[:2000]
    db.session.commit()
    return DeliveryOutcome(message.id, "delivered")


@contextmanager
def _whole_transaction():
    """The SQLite handler's transaction: rolled back whole (the message re-read) when the handler raises."""
    session = db.session()
    session.info["outbox_unnested"] = True
    try:
        yield
    except Exception:
        session.rollback()
        raise
    finally:
        session.info.pop("outbox_unnested", None)


SQLITE_LEASE = timedelta(minutes=2)


def _lease(message: OutboxMessage) -> bool:
    """The embedded default's stand-in for the row lock (SQLite has none, and its one write lock,
    held while a handler waits on a partner, would stop every other writer, the in-process sandbox
    answering that very call included): count the attempt and push the message out of the relays'
    way by a conditional UPDATE, committed before the handler runs. False: another thread took it."""
    seen = message.attempts
    taken = db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message.id, OutboxMessage.status == "pending",
                                    OutboxMessage.attempts == seen)
        .values(attempts=seen + 1, next_attempt_at=utcnow() + SQLITE_LEASE)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if taken:
        db.session.refresh(message)
    return bool(taken)


def retry_by_hand(message: OutboxMessage) -> None:
    """Put a dead (or waiting) message back in line for an immediate try, with a fresh set of attempts.

    The row is locked and re-read first: a relay may be delivering it at this very moment (it holds
    the row lock while the handler runs), and resetting it from a stale copy would send it twice.
    """
    db.session.refresh(message, with_for_update=True)
    if message.status == "delivered":
        raise ValueError("already delivered")
    message.status = "pending"
    message.attempts = 0
    message.next_attempt_at = utcnow()
    db.session.info.setdefault("outbox_new_ids", []).append(message.id)


