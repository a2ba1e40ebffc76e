"""Housekeeping jobs of the platform."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from jobs import job_task, report_progress


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


class AuditChainBroken(Exception):
    """The audit trail's hash chain does not verify; the message names the first broken event."""


@job_task
def verify_audit_chain(batch: int = 5000) -> dict:
    """Walk the audit chain (the same check as `flask audit verify`), reporting progress as it goes.

    A broken chain fails the job, so the run shows red with the event named in its error.
    """
    from app.core.audit import verify_chain

    def progress(checked: int, total: int) -> None:
        percent = 99 if not total else min(99, checked * 100 // total)
        report_progress(percent, f"{checked} of {total} events verified")

    report_progress(0, "verifying the audit chain")
    report = verify_chain(batch=batch, progress=progress)
    if not report.ok:
        raise AuditChainBroken(report.describe())
    report_progress(100, report.describe())
    return {"checked": report.checked}
