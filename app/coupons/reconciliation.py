"""Reconciliation of coupon issues with 云数汇: for each active 云数汇 tunnel account, ask 云数汇
(`YunshuhuiClient.query`) about our issues that are unsettled, recently changed, or already
listed as different, and keep every difference as a `CouponReconciliationItem`
(field trade_status / redemption_status / amount; ours vs theirs), listed for people to resolve.

What is checked, per bank (its `org_id`, its 云数汇 activities), leaving alone issues younger than
`GRACE` (the pipeline is still at work on them): issues still queued or processing; issues asked
for or redeemed within the window (`created_at` / `used_at`, both indexed; the schedule runs
hourly with a two-hour window, so each change is seen at least once); issues with an open item.

How the two sides are compared (decided here, README design notes):
- trade status: ours in 云数汇's words (queued → QUEUED, processing → PROCESS, succeeded → SUCCESS,
  failed → FAIL) against theirs (NOT_FOUND when 云数汇 does not know the order). A FAIL or a
  QUEUED that 云数汇 does not know agrees: nothing was issued on either side;
- redemption status (used / expired / none), only for an issue 云数汇 says it issued;
- amounts of a redeemed coupon (discount, order, paid), only those 云数汇 reported.
An item is unique on (issue, field, theirs), so a rerun finds a known difference once; an open
item whose difference is gone when checked again is resolved by the system (audited); a person
resolves the rest by hand (audited). Reconciliation changes no issue: settling an issue is the
issuance pipeline's work (`app.coupons.issuance`), which queries 云数汇 on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterable

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, or_, select, union
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.core import audit
from app.core.tenancy import in_org_subtree, scoped
from app.core.timeutil import local_day_range, utcnow
from app.coupons.models import CouponActivity, CouponIssue, CouponReconciliationItem, TunnelAccount
from app.extensions import db
from app.providers.yunshuhui import QueryAnswer, YunshuhuiClient, YunshuhuiError, YunshuhuiUnavailable

if TYPE_CHECKING:
    from datetime import date

    from app.auth.models import Operator

GRACE = timedelta(minutes=5)
DEFAULT_WINDOW = timedelta(hours=2)
MAX_WINDOW = timedelta(days=7)
PER_ACCOUNT_LIMIT = 5_000  # queries one run makes for one bank at the most
UNAVAILABLE_IN_A_ROW = 3  # 云数汇 unreachable this many times running: stop asking for this bank
COMMIT_EVERY = 50
NONE = "none"
NOT_FOUND = "NOT_FOUND"
FIELDS = ("trade_status", "redemption_status", "amount")
OUR_TRADE_STATUS = {"queued": "QUEUED", "processing": "PROCESS", "succeeded": "SUCCESS", "failed": "FAIL"}
AGREEING = {("QUEUED", NOT_FOUND), ("FAIL", NOT_FOUND)}
AMOUNT_PARTS = ("promo", "total", "org")

audit.ACTION_LABELS.update({
    "coupon_reconciliation.resolve": _l("Resolved a coupon reconciliation difference"),
    "coupon_reconciliation.auto_resolve": _l("A coupon reconciliation difference was gone when checked again"),
})


@dataclass(frozen=True)
class Difference:
    field: str
    ours: str
    theirs: str


def _amounts(values: dict[str, int | None], parts: Iterable[str]) -> str:
    """'promo=1000;total=12000' (fen) of the named parts; a missing amount reads 'none'."""
    return ";".join(f"{part}={NONE if values[part] is None else values[part]}" for part in parts)


def differences(issue: CouponIssue, answer: QueryAnswer) -> list[Difference]:
    """Where our issue row and 云数汇's answer about it disagree (see the module docstring)."""
    ours_trade = OUR_TRADE_STATUS[issue.status]
    theirs_trade = NOT_FOUND if answer.not_found or answer.trade_status is None else answer.trade_status
    found: list[Difference] = []
    if ours_trade != theirs_trade and (ours_trade, theirs_trade) not in AGREEING:
        found.append(Difference("trade_status", ours_trade, theirs_trade))
    if theirs_trade != "SUCCESS":
        return found
    ours_redemption = issue.redemption_status or NONE
    theirs_redemption = (answer.redemption_status or NONE).lower()
    if ours_redemption != theirs_redemption:
        found.append(Difference("redemption_status", ours_redemption, theirs_redemption))
    elif theirs_redemption == "used":
        theirs = {"promo": answer.promo_amount_fen, "total": answer.total_amount_fen, "org": answer.org_amount_fen}
        ours = {"promo": issue.promo_amount_fen, "total": issue.total_amount_fen, "org": issue.org_amount_fen}
        parts = [part for part in AMOUNT_PARTS if theirs[part] is not None]
        if any(ours[part] != theirs[part] for part in parts):
            found.append(Difference("amount", _amounts(ours, parts), _amounts(theirs, parts)))
    return found


def parse_amounts(value: str | None) -> list[tuple[str, int | None]]:
    """[('promo', 1000), ('total', None)] from a stored amount difference."""
    pairs = []
    for item in (value or "").split(";"):
        part, _, fen = item.partition("=")
        if part in AMOUNT_PARTS:
            pairs.append((part, int(fen) if fen.lstrip("-").isdigit() else None))
    return pairs


# --- which issues to ask about -------------------------------------------------------------------

def issues_to_check(account: TunnelAccount, now: datetime, window: timedelta) -> list[int]:
    """Ids of the bank's 云数汇 issues to ask about, oldest first (at most PER_ACCOUNT_LIMIT)."""
    since = now - min(window, MAX_WINDOW)
    activities = select(CouponActivity.id).where(CouponActivity.org_id == account.org_id,
                                                 CouponActivity.tunnel == "yunshuhui")
    mine = (CouponIssue.org_id == account.org_id, CouponIssue.coupon_activity_id.in_(activities),
            CouponIssue.created_at < now - GRACE)
    open_issues = select(CouponReconciliationItem.issue_id).where(CouponReconciliationItem.org_id == account.org_id,
                                                                   CouponReconciliationItem.status == "open")
    wanted = union(
        select(CouponIssue.id).where(*mine, CouponIssue.status.in_(("queued", "processing"))),
        select(CouponIssue.id).where(*mine, or_(CouponIssue.created_at >= since, CouponIssue.used_at >= since)),
        select(CouponIssue.id).where(*mine, CouponIssue.id.in_(open_issues)),
    ).subquery()
    return list(db.session.execute(select(wanted.c.id).order_by(wanted.c.id).limit(PER_ACCOUNT_LIMIT)).scalars())


# --- recording -----------------------------------------------------------------------------------

def _insert():
    return pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert


def record_differences(issue: CouponIssue, found: list[Difference], now: datetime) -> tuple[int, int]:
    """Store new differences (a known one is skipped by the unique key) and resolve the issue's
    open items that no longer hold; (new, resolved)."""
    new = 0
    for difference in found:
        stmt = _insert()(CouponReconciliationItem).values(
            org_id=issue.org_id, issue_id=issue.id, field=difference.field, ours=difference.ours[:100],
            theirs=difference.theirs[:100], status="open", created_at=now, updated_at=now,
        ).on_conflict_do_nothing(index_elements=["issue_id", "field", "theirs"])
        new += db.session.execute(stmt).rowcount or 0
    current = {(d.field, d.theirs[:100]) for d in found}
    resolved = 0
    stale = db.session.execute(select(CouponReconciliationItem).where(
        CouponReconciliationItem.issue_id == issue.id, CouponReconciliationItem.status == "open")).scalars()
    for item in stale:
        if (item.field, item.theirs) not in current:
            with audit.acting_as(audit.SYSTEM):  # whoever started the check, the system decided this
                _resolve(item, "coupon_reconciliation.auto_resolve", now)
            resolved += 1
    return new, resolved


def _resolve(item: CouponReconciliationItem, action: str, now: datetime, note: str = "") -> None:
    item.status = "resolved"
    item.resolved_at = now
    after = {"status": "resolved", "field": item.field, "ours": item.ours, "theirs": item.theirs}
    if note:
        after["note"] = note
    audit.record(action, "coupon_reconciliation_item", item.id, before={"status": "open"}, after=after,
                 org_id=item.org_id)


# --- running it ----------------------------------------------------------------------------------

@dataclass
class AccountOutcome:
    checked: int = 0
    new: int = 0
    resolved: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the bank's check stopped early

    def as_dict(self) -> dict:
        return {"checked": self.checked, "new": self.new, "resolved": self.resolved, "errors": len(self.errors),
                "first_errors": self.errors[:5], "stopped": self.stopped}


Progress = Callable[[int, int], None]
ClientFor = Callable[[TunnelAccount], YunshuhuiClient]


def active_accounts(account_ids: Iterable[int] | None = None) -> list[TunnelAccount]:
    stmt = select(TunnelAccount).where(TunnelAccount.tunnel == "yunshuhui", TunnelAccount.status == "active")
    if account_ids is not None:
        stmt = stmt.where(TunnelAccount.id.in_(list(account_ids)))
    return list(db.session.execute(stmt.order_by(TunnelAccount.id)).scalars())


def reconcile_account(account: TunnelAccount, *, window: timedelta = DEFAULT_WINDOW, now: datetime | None = None,
                      client_for: ClientFor = YunshuhuiClient.for_account,
                      progress: Progress | None = None) -> AccountOutcome:
    """Ask 云数汇 about the bank's issues to check and record the differences; commits as it goes."""
    now = now or utcnow()
    outcome = AccountOutcome()
    ids = issues_to_check(account, now, window)
    if not ids:
        return outcome
    client = client_for(account)
    unavailable_in_a_row = 0
    try:
        for done, issue_id in enumerate(ids, 1):
            issue = db.session.get(CouponIssue, issue_id)
            try:
                answer = _ask(client, issue)
            except YunshuhuiUnavailable as exc:
                outcome.errors.append(f"{issue.order_no}: {exc}")
                unavailable_in_a_row += 1
                if unavailable_in_a_row >= UNAVAILABLE_IN_A_ROW:
                    outcome.stopped = f"云数汇 unavailable: {exc}"
                    break
                continue
            except YunshuhuiError as exc:
                outcome.errors.append(f"{issue.order_no}: {exc}")
                continue
            unavailable_in_a_row = 0
            outcome.checked += 1
            new, resolved = record_differences(issue, differences(issue, answer), now)
            outcome.new += new
            outcome.resolved += resolved
            if done % COMMIT_EVERY == 0:
                db.session.commit()
                if progress:
                    progress(done, len(ids))
    finally:
        db.session.commit()
        client.close()
    return outcome


def _ask(client: YunshuhuiClient, issue: CouponIssue) -> QueryAnswer:
    activity = issue.activity
    if not activity.owner_id or not activity.upstream_activity_id:
        raise YunshuhuiError("CONFIG", "the coupon activity has no 云数汇 activity id or owner id")
    return client.query(owner_id=activity.owner_id, mer_order_id=issue.order_no,
                        activity_id=activity.upstream_activity_id, trade_no=issue.trade_no)


def reconcile(account_ids: Iterable[int] | None = None, *, window: timedelta = DEFAULT_WINDOW,
              client_for: ClientFor = YunshuhuiClient.for_account,
              progress: Callable[[int, str], None] | None = None) -> dict:
    """Reconcile every active 云数汇 account (or those named); one bank failing does not stop the others."""
    accounts = active_accounts(account_ids)
    results: dict[str, dict] = {}
    for index, account in enumerate(accounts):
        def account_progress(done: int, total: int, index: int = index) -> None:
            if progress:
                share = (index + done / total) / len(accounts)
                progress(int(99 * share), f"{index + 1}/{len(accounts)}: {done}/{total}")

        try:
            outcome = reconcile_account(account, window=window, client_for=client_for, progress=account_progress)
        except YunshuhuiError as exc:  # the account cannot be used at all (configuration)
            db.session.rollback()
            outcome = AccountOutcome(stopped=str(exc))
        results[f"account#{account.id}"] = outcome.as_dict()
    return {"accounts": len(accounts), "checked": sum(r["checked"] for r in results.values()),
            "new": sum(r["new"] for r in results.values()), "resolved": sum(r["resolved"] for r in results.values()),
            "results": results}


# --- the page --------------------------------------------------------------------------------------

def items_matching(actor: "Operator", *, status: str = "", field_name: str = "", serial: str = "", org_id: str = "",
                   first: "date | None" = None, last: "date | None" = None) -> Select:
    """The visible differences matching the page's filters, newest first."""
    stmt = scoped(CouponReconciliationItem, actor)
    if status in ("open", "resolved"):
        stmt = stmt.where(CouponReconciliationItem.status == status)
    if field_name in FIELDS:
        stmt = stmt.where(CouponReconciliationItem.field == field_name)
    serial = serial.strip()
    if serial:
        issue_ids = scoped(CouponIssue, actor, select(CouponIssue.id)).where(
            or_(CouponIssue.order_no == serial, CouponIssue.call_trade_no == serial))
        stmt = stmt.where(CouponReconciliationItem.issue_id.in_(issue_ids))
    if org_id:
        stmt = stmt.where(in_org_subtree(actor, CouponReconciliationItem.org_id, org_id))
    start, end = local_day_range(first, last)
    if start:
        stmt = stmt.where(CouponReconciliationItem.created_at >= start)
    if end:
        stmt = stmt.where(CouponReconciliationItem.created_at < end)
    return stmt.order_by(CouponReconciliationItem.created_at.desc(), CouponReconciliationItem.id.desc())


def issues_of(actor: "Operator", items: list[CouponReconciliationItem]) -> dict[int, CouponIssue]:
    """The (visible) issues the listed differences are about, by id."""
    ids = {item.issue_id for item in items}
    if not ids:
        return {}
    return {i.id: i for i in db.session.execute(scoped(CouponIssue, actor).where(CouponIssue.id.in_(ids))).scalars()}


def resolve_items(actor: "Operator", item_ids: Iterable[int], note: str = "") -> int:
    """Mark the actor's visible open differences resolved (each audited); how many were. Commits."""
    ids = list(item_ids)
    if not ids:
        return 0
    items = db.session.execute(scoped(CouponReconciliationItem, actor).where(
        CouponReconciliationItem.id.in_(ids), CouponReconciliationItem.status == "open").with_for_update()).scalars()
    count = 0
    now = utcnow()
    for item in items:
        _resolve(item, "coupon_reconciliation.resolve", now, note.strip()[:200])
        count += 1
    db.session.commit()
    return count


def visible_accounts(actor: "Operator") -> list[TunnelAccount]:
    """The active 云数汇 accounts of the actor's banks (what "run now" reconciles)."""
    stmt = scoped(TunnelAccount, actor).where(TunnelAccount.tunnel == "yunshuhui", TunnelAccount.status == "active")
    return list(db.session.execute(stmt.order_by(TunnelAccount.id)).scalars())
