"""The system screens' queries and actions: the audit trail, outbox deliveries and job runs.

Every query here is limited to what the acting operator may see: operators of the platform
organisation see every row (platform-wide rows without an organisation included); everyone else
sees the rows of their organisation and the organisations below it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Iterable, Mapping

from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, select

from app.auth.models import Operator
from app.core import audit, outbox
from app.core.audit import AuditEvent
from app.core.jobruns import JobRun
from app.core.outbox import OutboxMessage
from app.core.tenancy import sees_everything, visible_org_ids
from app.core.timeutil import local_day_range
from app.extensions import db
from app.orgs.models import Organisation


def _scope(stmt: Select, org_column: ColumnElement, actor: Operator) -> Select:
    if sees_everything(actor):
        return stmt
    return stmt.where(org_column.in_(visible_org_ids(actor)))


def organisation_names(org_ids: Iterable[int | None] | None = None) -> dict[int, str]:
    """Organisation names by id, for the given ids (or all: there are a few hundred at most)."""
    stmt = select(Organisation.id, Organisation.name)
    if org_ids is not None:
        ids = {i for i in org_ids if i}
        if not ids:
            return {}
        stmt = stmt.where(Organisation.id.in_(ids))
    return dict(db.session.execute(stmt).all())


def operator_names(operator_ids: Iterable[int | None]) -> dict[int, str]:
    """Usernames by id, for showing who started a run or made a change."""
    ids = {i for i in operator_ids if i}
    if not ids:
        return {}
    return dict(db.session.execute(select(Operator.id, Operator.username).where(Operator.id.in_(ids))).all())


# --- the audit trail ------------------------------------------------------------------------

AUDIT_FILTERS = ("actor", "action", "object_type", "object_id", "date_from", "date_to")


def parse_day(value: str | None) -> date | None:
    """A YYYY-MM-DD date from a filter field, or None when empty or malformed."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def audit_events(actor: Operator, filters: Mapping[str, str]) -> Select:
    """The events the actor may see that match the filters, newest first.

    Filters: `actor` (part of the acting username), `action`, `object_type`, `object_id` (exact),
    `date_from` / `date_to` (Asia/Shanghai dates, both inclusive).
    """
    stmt = _scope(select(AuditEvent), AuditEvent.org_id, actor)
    if filters.get("actor"):
        stmt = stmt.where(AuditEvent.actor_name.icontains(filters["actor"], autoescape=True))
    if filters.get("action"):
        stmt = stmt.where(AuditEvent.action == filters["action"])
    if filters.get("object_type"):
        stmt = stmt.where(AuditEvent.object_type == filters["object_type"])
    if filters.get("object_id"):
        stmt = stmt.where(AuditEvent.object_id == filters["object_id"])
    start, end = local_day_range(parse_day(filters.get("date_from")), parse_day(filters.get("date_to")))
    if start:
        stmt = stmt.where(AuditEvent.occurred_at >= start)
    if end:
        stmt = stmt.where(AuditEvent.occurred_at < end)
    return stmt.order_by(AuditEvent.id.desc())


def _distinct(actor: Operator, column: ColumnElement, org_column: ColumnElement) -> list[str]:
    stmt = _scope(select(column).distinct(), org_column, actor).order_by(column)
    return [value for value in db.session.execute(stmt).scalars() if value]


def audit_filter_choices(actor: Operator) -> dict[str, list[str]]:
    """The actions and object types that occur in the events the actor may see (for the filter selects)."""
    return {
        "actions": _distinct(actor, AuditEvent.action, AuditEvent.org_id),
        "object_types": _distinct(actor, AuditEvent.object_type, AuditEvent.org_id),
    }


def find_audit_event(actor: Operator, event_id: int) -> AuditEvent | None:
    """One event by id, if the actor may see it."""
    stmt = _scope(select(AuditEvent).where(AuditEvent.id == event_id), AuditEvent.org_id, actor)
    return db.session.execute(stmt).scalar_one_or_none()


@dataclass(frozen=True)
class FieldChange:
    name: str
    before: Any
    after: Any

    @property
    def changed(self) -> bool:
        return self.before != self.after


def field_changes(event: AuditEvent) -> list[FieldChange]:
    """The fields an event names, with their values before and after (either side may be missing)."""
    before, after = event.before or {}, event.after or {}
    names = list(before) + [name for name in after if name not in before]
    return [FieldChange(name, before.get(name), after.get(name)) for name in names]


def show_value(value: Any) -> str:
    """A stored before/after value as text: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# --- outbox deliveries ----------------------------------------------------------------------

# The status filter of the outbox page; the default ("") is what needs attention.
OUTBOX_STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "": ("pending", "dead"),
    "pending": ("pending",),
    "dead": ("dead",),
    "delivered": ("delivered",),
    "all": outbox.STATUSES,
}


def outbox_messages(actor: Operator, status: str = "", kind: str = "") -> Select:
    """The messages the actor may see with the given status filter and kind, newest first."""
    statuses = OUTBOX_STATUS_FILTERS.get(status, OUTBOX_STATUS_FILTERS[""])
    stmt = _scope(select(OutboxMessage), OutboxMessage.org_id, actor).where(OutboxMessage.status.in_(statuses))
    if kind:
        stmt = stmt.where(OutboxMessage.kind == kind)
    return stmt.order_by(OutboxMessage.id.desc())


def outbox_kinds(actor: Operator) -> list[str]:
    return _distinct(actor, OutboxMessage.kind, OutboxMessage.org_id)


def find_outbox_message(actor: Operator, message_id: int) -> OutboxMessage | None:
    stmt = _scope(select(OutboxMessage).where(OutboxMessage.id == message_id), OutboxMessage.org_id, actor)
    return db.session.execute(stmt).scalar_one_or_none()


@dataclass
class RetryResult:
    retried: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # already delivered (ids the actor may not see are ignored)


_RETRY_AUDITED = ("status", "attempts", "next_attempt_at")


def retry_outbox_messages(actor: Operator, message_ids: Iterable[int]) -> RetryResult:
    """Put the named messages (those the actor may see and not yet delivered) back in line now.

    Rows are locked in id order (a relay delivering one of them finishes first), each retry is
    audited, and everything commits together; the retried messages are handed to a worker after
    the commit.
    """
    wanted = sorted({int(i) for i in message_ids})
    result = RetryResult()
    if not wanted:
        return result
    stmt = _scope(select(OutboxMessage).where(OutboxMessage.id.in_(wanted)), OutboxMessage.org_id, actor)
    messages = db.session.execute(stmt.order_by(OutboxMessage.id).with_for_update(of=OutboxMessage)).scalars().all()
    for message in messages:
        if message.status == "delivered":
            result.skipped.append(message.id)
            continue
        before = audit.snapshot(message, _RETRY_AUDITED)
        outbox.retry_by_hand(message)
        audit.record("outbox.retry", "outbox_message", message.id, before=before,
                     after=audit.snapshot(message, _RETRY_AUDITED), org_id=message.org_id)
        result.retried.append(message.id)
    db.session.commit()
    return result


# --- background jobs ------------------------------------------------------------------------

def job_runs(actor: Operator) -> Select:
    """The job runs the actor may see, newest first."""
    return _scope(select(JobRun), JobRun.org_id, actor).order_by(JobRun.id.desc())


def find_job_run(actor: Operator, run_id: int) -> JobRun | None:
    stmt = _scope(select(JobRun).where(JobRun.id == run_id), JobRun.org_id, actor)
    return db.session.execute(stmt).scalar_one_or_none()


@dataclass(frozen=True)
class StartableJob:
    """A platform job that an operator may start by hand from the jobs page."""

    label: Any  # a lazy string, stored in the run's label in the starter's language
    queue_name: str
    func: Callable[[], Callable]  # resolved late, so importing this module does not import the jobs


def _relay_outbox() -> Callable:
    from jobs.outbox import relay_outbox

    return relay_outbox


def _verify_audit_chain() -> Callable:
    from jobs.maintenance import verify_audit_chain

    return verify_audit_chain


STARTABLE_JOBS: dict[str, StartableJob] = {
    "relay_outbox": StartableJob(_l("Deliver due outbox messages now"), "outbox", _relay_outbox),
    "verify_audit_chain": StartableJob(_l("Verify the audit chain"), "default", _verify_audit_chain),
}


def may_start_jobs(actor: Operator) -> bool:
    """The startable jobs work on the whole platform: only its managers, at the platform, may start them."""
    return sees_everything(actor) and actor.can("system.jobs") and actor.can("platform.manage")


def start_platform_job(actor: Operator, name: str) -> JobRun:
    """Record and enqueue one of STARTABLE_JOBS on behalf of the actor (audited)."""
    from jobs import start_job

    spec = STARTABLE_JOBS[name]
    run = start_job(spec.func(), label=str(spec.label), queue_name=spec.queue_name, org_id=actor.org_id,
                    started_by=actor.id)
    audit.record("job.start", "job_run", run.id, after={"name": run.name, "label": run.label}, org_id=actor.org_id)
    db.session.commit()
    return run
