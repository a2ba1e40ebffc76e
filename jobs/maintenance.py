"""Housekeeping jobs of the platform."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from jobs import job_task


@job_task
def purge_idempotency_records(days: int = 7) -> dict:
    """Forget idempotency keys older than `days` (partners retry within minutes, not weeks)."""
    from app.core.idempotency import IdempotencyRecord
    from app.core.timeutil import utcnow
    from app.extensions import db

    cutoff = utcnow() - timedelta(days=days)
    result = db.session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
    db.session.commit()
    return {"purged": result.rowcount}
