"""The issuance monitor: live counts of coupon issues per coupon activity (queued, processing,
succeeded, failed, redeemed) and across every activity an operator sees, the failed issues with
what the tunnel answered (resCode / failMsg), and the retry of selected failures.

Counts are grouped in SQL per (activity, status) on `ix_coupon_issues_activity_status`; every
statement goes through `app.core.tenancy`. Retrying is `app.coupons.issuance.retry_issues`, which
re-checks tenancy, status, stock and the customer's limit, audits and commits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import Select, func, or_, select

from app.core.tenancy import in_org_subtree, scoped
from app.coupons.activities import STATUSES as ACTIVITY_STATUSES
from app.coupons.activities import status_condition
from app.coupons.models import CouponActivity, CouponIssue
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import Operator
    from app.coupons.issuance import RetryReport

RETRY_AT_ONCE = 500  # the most failures one click retries


@dataclass
class IssueCounts:
    queued: int = 0
    processing: int = 0
    succeeded: int = 0
    failed: int = 0
    redeemed: int = 0  # of the succeeded, used

    @property
    def total(self) -> int:
        return self.queued + self.processing + self.succeeded + self.failed

    @property
    def in_flight(self) -> int:
        return self.queued + self.processing

    def add(self, status: str, count: int, redeemed: int) -> None:
        setattr(self, status, getattr(self, status) + count)
        self.redeemed += redeemed


def _grouped_counts(actor: "Operator", group_by_activity: bool, *conditions) -> Select:
    redeemed = func.count().filter(CouponIssue.redemption_status == "used")
    columns = (CouponIssue.coupon_activity_id,) if group_by_activity else ()
    stmt = scoped(CouponIssue, actor, select(*columns, CouponIssue.status, func.count(), redeemed))
    return stmt.where(*conditions).group_by(*columns, CouponIssue.status)


def counts_by_activity(actor: "Operator", activity_ids: Iterable[int]) -> dict[int, IssueCounts]:
    """Counts of each of the given (visible) activities; an activity without issues counts zeros."""
    ids = list(activity_ids)
    counts = {activity_id: IssueCounts() for activity_id in ids}
    if ids:
        stmt = _grouped_counts(actor, True, CouponIssue.coupon_activity_id.in_(ids))
        for activity_id, status, count, redeemed in db.session.execute(stmt).all():
            counts[activity_id].add(status, count, redeemed)
    return counts


def total_counts(actor: "Operator", org_id: str = "") -> IssueCounts:
    """Counts over every issue the operator sees (of one bank, when named)."""
    conditions = [in_org_subtree(actor, CouponIssue.org_id, org_id)] if org_id else []
    totals = IssueCounts()
    for status, count, redeemed in db.session.execute(_grouped_counts(actor, False, *conditions)).all():
        totals.add(status, count, redeemed)
    return totals


def monitored_activities(actor: "Operator", text: str = "", status: str = "", org_id: str = "",
                         now: datetime | None = None) -> Select:
    """The visible coupon activities for the overview, newest first: by code (its beginning) or
    name (a part), by status at `now`, by bank."""
    stmt = scoped(CouponActivity, actor)
    text = text.strip()
    if text:
        stmt = stmt.where(or_(CouponActivity.code.startswith(text, autoescape=True),
                              CouponActivity.name.contains(text, autoescape=True)))
    if status in ACTIVITY_STATUSES and now is not None:
        stmt = stmt.where(status_condition(status, now))
    if org_id:
        stmt = stmt.where(in_org_subtree(actor, CouponActivity.org_id, org_id))
    return stmt.order_by(CouponActivity.created_at.desc(), CouponActivity.id.desc())


def failed_issues(actor: "Operator", activity_id: int, res_code: str = "", serial: str = "") -> Select:
    """The activity's failed issues, latest failure first; by resCode, or by one serial."""
    stmt = scoped(CouponIssue, actor).where(CouponIssue.coupon_activity_id == activity_id,
                                            CouponIssue.status == "failed")
    if res_code:
        stmt = stmt.where(CouponIssue.res_code == res_code) if res_code != "-" else stmt.where(
            CouponIssue.res_code.is_(None))
    serial = serial.strip()
    if serial:
        stmt = stmt.where(or_(CouponIssue.order_no == serial, CouponIssue.call_trade_no == serial))
    return stmt.order_by(CouponIssue.updated_at.desc(), CouponIssue.id.desc())


@dataclass(frozen=True)
class FailureReason:
    res_code: str | None
    fail_msg: str | None  # one of the messages that came with the code
    count: int


def failure_reasons(actor: "Operator", activity_id: int, limit: int = 8) -> list[FailureReason]:
    """Why the activity's issues failed: each resCode with how often, most frequent first."""
    stmt = scoped(CouponIssue, actor, select(CouponIssue.res_code, func.max(CouponIssue.fail_msg), func.count())).where(
        CouponIssue.coupon_activity_id == activity_id, CouponIssue.status == "failed").group_by(
        CouponIssue.res_code).order_by(func.count().desc()).limit(limit)
    return [FailureReason(code, message, count) for code, message, count in db.session.execute(stmt).all()]


def retry_failures(actor: "Operator", issue_ids: Iterable[int]) -> "RetryReport":
    """Put the selected failed issues back in line (at most RETRY_AT_ONCE)."""
    from app.coupons.issuance import retry_issues

    return retry_issues(sorted(set(issue_ids))[:RETRY_AT_ONCE], actor)


@dataclass
class IssueHistory:
    """Everything that happened to one issue: the bank notifications with their attempts, the
    callbacks 云数汇 sent about it, reconciliation differences and the audit trail."""

    notifications: list = field(default_factory=list)  # [(BankNotification, [BankNotificationAttempt])]
    callbacks: list = field(default_factory=list)
    differences: list = field(default_factory=list)
    events: list = field(default_factory=list)


def issue_history(actor: "Operator", issue: CouponIssue) -> IssueHistory:
    """The history of one issue the actor may see (fetched with `get_scoped_or_404`)."""
    from app.core.audit import AuditEvent
    from app.coupons.models import BankNotification, CouponCallback, CouponReconciliationItem
    from app.coupons.notifications import attempts_of

    notifications = db.session.execute(scoped(BankNotification, actor).where(
        BankNotification.issue_id == issue.id).order_by(BankNotification.id)).scalars()
    return IssueHistory(
        notifications=[(n, attempts_of(n.id)) for n in notifications],
        callbacks=list(db.session.execute(select(CouponCallback).where(CouponCallback.issue_id == issue.id)
                                          .order_by(CouponCallback.received_at.desc()).limit(50)).scalars()),
        differences=list(db.session.execute(scoped(CouponReconciliationItem, actor).where(
            CouponReconciliationItem.issue_id == issue.id).order_by(CouponReconciliationItem.id)).scalars()),
        events=list(db.session.execute(select(AuditEvent).where(
            AuditEvent.object_type == "coupon_issue", AuditEvent.object_id == str(issue.id))
            .order_by(AuditEvent.id.desc()).limit(50)).scalars()),
    )
