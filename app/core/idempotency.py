"""Idempotency keys for partner APIs.

A POST carries an `Idempotency-Key`. The first request with a key claims it (a unique row per
client and key, committed before the work starts); its answer is stored when the work ends.
A later request with the same key and the same body gets the stored answer; the same key with
another body is refused (422); a request whose twin is still running is told to retry (409).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Callable

from flask import Response, jsonify, make_response, request
from sqlalchemy import DateTime, Integer, LargeBinary, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from app.core.timeutil import utcnow
from app.extensions import db

MAX_KEY_LENGTH = 128


class IdempotencyRecord(db.Model):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("client_id", "key", name="uq_idempotency_records_client_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="in_flight")
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyConflict(Exception):
    """The same key is still being worked on (409)."""


class IdempotencyMismatch(Exception):
    """The same key came with a different request (422)."""


@dataclass
class StoredAnswer:
    status: int
    body: bytes
    content_type: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b"\n" + path.encode() + b"\n" + body).hexdigest()


def claim(client_id: str, key: str, request_hash: str) -> int | StoredAnswer:
    """Claim a key for new work (committed at once) and return the claim's id, or return the answer
    stored for it."""
    record = IdempotencyRecord(client_id=client_id, key=key, request_hash=request_hash)
    db.session.add(record)
    try:
        db.session.flush()
        record_id = record.id  # read now: after the commit it would be read again from the database
        db.session.commit()
        return record_id
    except IntegrityError:
        db.session.rollback()
    existing = db.session.execute(
        select(IdempotencyRecord).where(IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key)
    ).scalar_one_or_none()
    if existing is None:  # the twin failed and released the key between our insert and this read
        raise IdempotencyConflict()
    if existing.request_hash != request_hash:
        raise IdempotencyMismatch()
    if existing.status != "done":
        raise IdempotencyConflict()
    return StoredAnswer(existing.response_status or 200, existing.response_body or b"", existing.response_type or "")


def complete(record_id: int, status: int, body: bytes, content_type: str) -> None:
    """Store the answer of a claim (one UPDATE: the row need not be read first)."""
    db.session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == record_id).values(
        status="done", response_status=status, response_body=body, response_type=content_type,
        completed_at=utcnow()).execution_options(synchronize_session=False))
    db.session.commit()


def release(record_id: int) -> None:
    """Forget a claim whose work failed unexpectedly, so the client may try the key again."""
    db.session.rollback()
    record = db.session.get(IdempotencyRecord, record_id)
    if record is not None and record.status != "done":
        db.session.delete(record)
        db.session.commit()


def _error(status: int, code: str, message: str) -> Response:
    return make_response(jsonify(code=code, message=message), status)


def idempotent(client_id: Callable[[], str]) -> Callable:
    """Decorate a POST API view: require `Idempotency-Key`, replay stored answers, refuse mismatches."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            key = (request.headers.get("Idempotency-Key") or "").strip()
            if not key:
                return _error(400, "IDEMPOTENCY_KEY_REQUIRED", "Idempotency-Key header is required")
            if len(key) > MAX_KEY_LENGTH:
                return _error(400, "IDEMPOTENCY_KEY_TOO_LONG", f"Idempotency-Key is at most {MAX_KEY_LENGTH} characters")
            body = request.get_data(cache=True)
            try:
                claimed = claim(client_id(), key, fingerprint(request.method, request.path, body))
            except IdempotencyMismatch:
                return _error(422, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with a different request")
            except IdempotencyConflict:
                return _error(409, "IDEMPOTENCY_KEY_IN_FLIGHT", "a request with this Idempotency-Key is still running")
            if isinstance(claimed, StoredAnswer):
                replay = Response(claimed.body, status=claimed.status, content_type=claimed.content_type)
                replay.headers["Idempotent-Replayed"] = "true"
                return replay
            record_id = claimed
            try:
                response = make_response(view(*args, **kwargs))
            except Exception:
                release(record_id)
                raise
            if response.status_code >= 500:
                release(record_id)
            else:
                complete(record_id, response.status_code, response.get_data(), response.content_type)
            return response

        return wrapped

    return decorator

