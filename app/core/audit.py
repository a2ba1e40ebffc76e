"""The audit trail: an append-only, hash-chained record of every change an operator makes.

Each event's `hash` is SHA-256 over the previous event's hash and the event's own canonical
JSON, so altering, inserting or deleting a row breaks the chain at that point; `flask audit
verify` walks the chain and reports the first broken link. Appends are serialised with a
PostgreSQL transaction-level advisory lock, so concurrent writers cannot fork the chain; on
PostgreSQL a trigger also refuses UPDATE and DELETE on the table.

Who is acting (operator, organisation, ip) is carried in a context variable that the web layer
sets per request and jobs or the CLI set for themselves, so services never touch `request`.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.timeutil import as_utc, utcnow
from app.extensions import begin_writing, db

GENESIS = "0" * 64

# What each action means to a person reading the trail; a domain adds its own actions here.
ACTION_LABELS = {
    "auth.login": _l("Logged in"),
    "auth.login_failed": _l("Failed login"),
    "org.create": _l("Created an organisation"),
    "org.update": _l("Edited an organisation"),
    "org.disable": _l("Disabled an organisation"),
    "org.enable": _l("Enabled an organisation"),
    "operator.create": _l("Created an operator"),
    "operator.update": _l("Edited an operator"),
    "operator.disable": _l("Disabled an operator"),
    "operator.enable": _l("Enabled an operator"),
    "operator.reset_password": _l("Reset a password"),
    "member.create": _l("Created a member"),
    "member.update": _l("Edited a member"),
    "member.disable": _l("Disabled a member"),
    "member.enable": _l("Enabled a member"),
    "member.export": _l("Exported members"),
    "product.create": _l("Created a product"),
    "product.update": _l("Edited a product"),
    "product.on_sale": _l("Put a product on sale"),
    "product.off_sale": _l("Took a product off sale"),
    "outbox.retry": _l("Retried a delivery"),
    "job.start": _l("Started a background job"),
}


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return str(label) if label else action
_ADVISORY_LOCK_KEY = 7_420_001  # any constant shared by all writers of the chain


@dataclass(frozen=True)
class Actor:
    operator_id: int | None
    name: str
    org_id: int | None
    ip: str | None = None


SYSTEM = Actor(operator_id=None, name="system", org_id=None)
_current_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("audit_actor", default=SYSTEM)


def set_actor(actor: Actor) -> contextvars.Token:
    return _current_actor.set(actor)


def current_actor() -> Actor:
    return _current_actor.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _current_actor.set(actor)
    try:
        yield
    finally:
        _current_actor.reset(token)


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_org_time", "org_id", "occurred_at"),
        Index("ix_audit_events_object", "object_type", "object_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor_name: Mapped[str] = mapped_column(String(50), nullable=False)
    org_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    object_type: Mapped[str] = mapped_column(String(64), nullable=False)
    object_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)

    def canonical(self) -> str:
        """The event's content as hashed: fixed keys, sorted, UTC time in ISO form."""
        body = {
            "occurred_at": as_utc(self.occurred_at).isoformat(timespec="microseconds"),
            "actor_id": self.actor_id,
            "actor_name": self.actor_name,
            "org_id": self.org_id,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "before": self.before,
            "after": self.after,
            "ip": self.ip,
        }
        return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    def compute_hash(self) -> str:
        return hashlib.sha256((self.prev_hash + self.canonical()).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, (date, Decimal)):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of an object, as JSON-safe values."""
    return {name: _jsonable(getattr(obj, name)) for name in fields}


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Only the fields whose values differ, from two snapshots."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def record(
    action: str,
    object_type: str,
    object_id: Any,
    *,
    before: dict | None = None,
    after: dict | None = None,
    org_id: int | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (committed, or rolled back, with the change)."""
    actor = current_actor()
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
    else:  # SQLite's one write lock, taken before the last event is read (else two appends fork the chain)
        begin_writing()
    session.flush()  # our own earlier events in this transaction come first in the chain
    last = session.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    event = AuditEvent(
        occurred_at=utcnow(),
        actor_id=actor.operator_id,
        actor_name=actor.name,
        org_id=org_id if org_id is not None else actor.org_id,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        before=_jsonable(before) if before else None,
        after=_jsonable(after) if after else None,
        ip=actor.ip,
        prev_hash=last or GENESIS,
    )
    event.hash = event.compute_hash()
    session.add(event)
    session.flush()
    return event


def change_status(obj: Any, object_type: str, status: str, action: str, org_id: int | None) -> bool:
    """Set `obj.status` and record the change as `action`; False (and nothing written) when unchanged."""
    if obj.status == status:
        return False
    before, obj.status = obj.status, status
    record(action, object_type, obj.id, before={"status": before}, after={"status": status}, org_id=org_id)
    return True


@dataclass
class ChainReport:
    checked: int
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def describe(self) -> str:
        """One line for people (the CLI's output, the verify job's result or error)."""
        if self.ok:
            return f"audit chain OK: {self.checked} events verified"
        return (f"audit chain BROKEN at event {self.broken_at}: {self.reason} "
                f"({self.checked} events before it verified)")


def verify_chain(batch: int = 5000, progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Walk the whole chain in id order; report the first event whose link or content is wrong.

    `progress(checked, total)` is called after each batch (the CLI passes nothing; the
    background job reports it to its JobRun). `total` is counted once at the start, so events
    appended while the walk runs can make `checked` exceed it.
    """
    total = db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one() if progress else 0
    expected_prev = GENESIS
    checked = 0
    last_id = 0
    while True:
        rows = db.session.execute(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        if not rows:
            return ChainReport(checked=checked)
        for event in rows:
            if event.prev_hash != expected_prev:
                return ChainReport(checked, event.id, "previous-hash link does not match the event before it")
            if event.compute_hash() != event.hash:
                return ChainReport(checked, event.id, "content does not match its hash")
            expected_prev = event.hash
            checked += 1
            last_id = event.id
        # Only our own rows leave the identity map; the caller's objects stay attached.
        for event in rows:
            db.session.expunge(event)
        if progress:
            progress(checked, total)
