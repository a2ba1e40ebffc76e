"""Issuing coupons to banks' customers, from the bank's request to a settled row.

- `accept_issue(client, data)`: validate a bank's request and store the issue — the activity's
  issue total and the customer's per-member limit are taken by atomic statements (a guarded
  `UPDATE ... issued_count + 1 WHERE issued_count < issue_total`, and an upsert on
  `coupon_member_counts` guarded by `issued < per_member_limit`) in the same transaction as the
  `CouponIssue` row (status queued, our own `order_no`) and its outbox message, so the limits hold
  under any concurrency and nothing is queued that was not counted. The bank's `callTradeNo`
  de-duplicates per bank: the same one again is the same issue; with another body it is refused.
- The outbox handler `coupons.issue` calls the tunnel (云数汇, or WeChat Pay for the direct tunnel)
  with our `order_no` as `mer_order_id` and our own callback URLs, and records the answer. A
  transient failure (outcome unknown) raises, so the outbox retries with backoff; before sending
  again it asks 云数汇 what became of the order (idempotent on `mer_order_id` anyway).
- `settle` / `record_redemption`: the one place where an issue changes state, whatever told us
  (the answer, a callback, a query). States only move forward: queued → processing →
  succeeded / failed; a success is never undone (a SUCCESS after a FAIL wins and takes the stock
  again); a redemption proves the coupon was issued, so it marks a not-yet-settled issue
  succeeded; USED wins over EXPIRED. A FAIL releases the stock and the customer's count. Every
  settlement owes the bank a notification (`notifications`).
- `settle_processing`: the periodic query of issues left in PROCESS.
- `retry_issues(ids, actor)`: put failed issues back in line (stock permitting; audited), with a
  new order number, since 云数汇 would answer the old one with its old FAIL.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import lazyload

from app.core import audit, crypto, outbox
from app.core.tenancy import scoped
from app.core.timeutil import BUSINESS_TZ, utcnow
from app.extensions import commit_keeping_loaded, db, upsert_built_once

from . import bank_auth, notifications
from .models import (BankApiClient, CouponActivity, CouponIssue, CouponMemberCount, PartnerBank, TunnelAccount,
                     mask_openid)

ISSUE_KIND = "coupons.issue"
# Tries at the upstream call before the message is dead-lettered: with the outbox's doubling
# backoff (capped at 6 h) about a day of 云数汇 being unreachable; then "retry" on the outbox screen.
ISSUE_MAX_ATTEMPTS = 12
FINAL = ("succeeded", "failed")
SUPPORTED_TUNNELS = ("yunshuhui", "direct")
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:5000"
CALL_TRADE_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
OPEN_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
URL_MAX = 500


# --- what a tunnel says --------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """What the tunnel said of an issue: PROCESS, SUCCESS or FAIL, with its identifiers."""

    trade_status: str
    res_code: str | None = None
    fail_msg: str | None = None
    third_coupon_id: str | None = None
    trade_no: str | None = None
    batch_code: str | None = None
    amount_fen: int | None = None
    issued_at: datetime | None = None


@dataclass(frozen=True)
class Redemption:
    """A coupon used (or expired), from the redemption callback or a query."""

    status: str  # used | expired
    used_at: datetime | None = None
    promo_amount_fen: int | None = None
    total_amount_fen: int | None = None
    org_amount_fen: int | None = None
    trade_no: str | None = None
    merchant_no: str | None = None
    merchant_name: str | None = None
    third_coupon_id: str | None = None


@dataclass(frozen=True)
class Lookup:
    """A query's answer: the issue's status, and its redemption once there is one."""

    word: Word
    redemption: Redemption | None = None


class TunnelUnavailable(Exception):
    """The tunnel gave no trustworthy answer: the outcome is unknown, try again later."""


class Tunnel(Protocol):
    def issue(self, issue: CouponIssue) -> Word: ...

    def look_up(self, issue: CouponIssue) -> Lookup | None: ...


# --- accepting a bank's request ------------------------------------------------------------------


@dataclass
class IssueRefused(Exception):
    """A request we will not take: HTTP status, a stable code and a message for the bank."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


@dataclass(frozen=True)
class IssueRequest:
    open_id: str
    call_trade_no: str
    activity_code: str | None
    batch_code: str | None
    bank_id: str | None
    member_id: str | None
    write_off_notify: str
    post_notify: str


@dataclass(frozen=True)
class Acceptance:
    issue: CouponIssue
    created: bool  # False: the same callTradeNo was accepted before, this is that issue


def read_issue_request(data: Any) -> IssueRequest:
    """The bank's JSON body, checked field by field (400 with the field's name on the first problem)."""
    if not isinstance(data, dict):
        raise IssueRefused(400, "INVALID_JSON", "the body must be a JSON object")
    text = {name: _text_field(data, name) for name in ("openId", "callTradeNo", "activityCode", "batchCode", "bankId",
                                                       "memberId", "writeOffNotify", "postNotify")}
    _require(text["openId"] and OPEN_ID.match(text["openId"]), "openId", "1 to 128 letters, digits, '_' or '-'")
    _require(text["callTradeNo"] and CALL_TRADE_NO.match(text["callTradeNo"]), "callTradeNo",
             "1 to 64 letters, digits, '_' or '-'")
    _require(text["activityCode"] or text["batchCode"], "activityCode", "give activityCode or batchCode")
    _require(not text["memberId"] or len(text["memberId"]) <= 64, "memberId", "at most 64 characters")
    for name in ("writeOffNotify", "postNotify"):
        _require(text[name] and len(text[name]) <= URL_MAX, name, f"a URL of at most {URL_MAX} characters")
    return IssueRequest(open_id=text["openId"], call_trade_no=text["callTradeNo"], activity_code=text["activityCode"],
                        batch_code=text["batchCode"], bank_id=text["bankId"], member_id=text["memberId"],
                        write_off_notify=text["writeOffNotify"], post_notify=text["postNotify"])


def _text_field(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise IssueRefused(400, "INVALID_FIELD", f"{name} must be a string")
    return str(value).strip() or None


def _require(condition: Any, name: str, rule: str) -> None:
    if not condition:
        raise IssueRefused(400, "INVALID_FIELD", f"{name}: {rule}")


def accept_issue(client: BankApiClient, data: Any) -> Acceptance:
    """Store a bank's issue request (queued, counted, with its outbox message) and commit; raises IssueRefused."""
    request = read_issue_request(data)
    _check_bank_id(client, request.bank_id)
    for name, url in (("writeOffNotify", request.write_off_notify), ("postNotify", request.post_notify)):
        refusal = bank_auth.url_refusal(client, url)
        if refusal:
            raise IssueRefused(422, "URL_NOT_ALLOWED", f"{name}: {refusal}")
    openid_hash = crypto.lookup_hash(request.open_id)
    for _ in range(2):  # a twin with the same callTradeNo may commit between our look and our insert
        earlier = _issue_by_call_trade_no(client.org_id, request.call_trade_no)
        if earlier is not None:
            return Acceptance(_same_request_or_refuse(earlier, request, openid_hash), created=False)
        activity = _issuable_activity(client, request)
        try:
            issue = _store_new_issue(client, activity, request, openid_hash)
        except IntegrityError:
            db.session.rollback()
            continue
        return Acceptance(issue, created=True)
    raise IssueRefused(409, "CALL_TRADE_NO_IN_FLIGHT", "an issue with this callTradeNo is being accepted; retry")


def _check_bank_id(client: BankApiClient, bank_id: str | None) -> None:
    if bank_id is None:
        return
    bank = db.session.execute(select(PartnerBank).where(PartnerBank.code == bank_id)).scalar_one_or_none()
    if bank is None or bank.org_id != client.org_id:
        raise IssueRefused(404, "BANK_NOT_FOUND", f"bankId {bank_id} is not a bank this client may act for")


# The issue API's statements are built once, with bind parameters: SQLAlchemy then compiles each
# once per process and skips building it and computing its cache key at every request.
_ISSUE_BY_CALL_TRADE_NO = select(CouponIssue).where(CouponIssue.org_id == bindparam("org_id"),
                                                    CouponIssue.call_trade_no == bindparam("call_trade_no"))


def _issue_by_call_trade_no(org_id: int, call_trade_no: str) -> CouponIssue | None:
    return db.session.execute(_ISSUE_BY_CALL_TRADE_NO,
                              {"org_id": org_id, "call_trade_no": call_trade_no}).scalar_one_or_none()


def find_issue(client: BankApiClient, call_trade_no: str) -> CouponIssue | None:
    """The issue a bank's client asked for by its callTradeNo (only its own bank's)."""
    return _issue_by_call_trade_no(client.org_id, call_trade_no)


def _same_request_or_refuse(issue: CouponIssue, request: IssueRequest, openid_hash: str) -> CouponIssue:
    activity = issue.activity
    same = (issue.openid_hash == openid_hash
            and request.activity_code in (None, activity.code) and request.batch_code in (None, activity.batch_no)
            and issue.bank_member_id == request.member_id and issue.write_off_notify == request.write_off_notify
            and issue.post_notify == request.post_notify)
    if not same:
        raise IssueRefused(422, "CALL_TRADE_NO_REUSED",
                           f"callTradeNo {request.call_trade_no} was used before with a different request")
    return issue


def _activity_query(by_code: bool, by_batch: bool):
    stmt = select(CouponActivity).where(CouponActivity.org_id == bindparam("org_id"))
    if by_code:
        stmt = stmt.where(CouponActivity.code == bindparam("code"))
    if by_batch:
        stmt = stmt.where(CouponActivity.batch_no == bindparam("batch"))
    return stmt.limit(2)


_ACTIVITY_BY = {(code, batch): _activity_query(code, batch) for code in (False, True) for batch in (False, True)}


def _issuable_activity(client: BankApiClient, request: IssueRequest) -> CouponActivity:
    stmt = _ACTIVITY_BY[bool(request.activity_code), bool(request.batch_code)]
    found = list(db.session.execute(stmt, {"org_id": client.org_id, "code": request.activity_code,
                                           "batch": request.batch_code}).scalars())
    if not found:
        raise IssueRefused(404, "ACTIVITY_NOT_FOUND", "no coupon activity of this bank has that activityCode / batchCode")
    if len(found) > 1:
        raise IssueRefused(409, "ACTIVITY_AMBIGUOUS", "several activities share this batchCode; send activityCode")
    activity = found[0]
    check_issuable(activity)
    return activity


def check_issuable(activity: CouponActivity) -> None:
    """Raise IssueRefused unless coupons of `activity` can be issued now (enabled, running, tunnel ready)."""
    if not activity.enabled:
        raise IssueRefused(409, "ACTIVITY_DISABLED", f"coupon activity {activity.code} is disabled")
    status = activity.status
    if status != "running":
        raise IssueRefused(409, "ACTIVITY_NOT_RUNNING", f"coupon activity {activity.code} is {status.replace('_', ' ')}")
    _check_tunnel_ready(activity)


def _check_tunnel_ready(activity: CouponActivity) -> None:
    if activity.tunnel not in SUPPORTED_TUNNELS:
        raise IssueRefused(422, "TUNNEL_NOT_SUPPORTED", f"coupons of the {activity.tunnel} tunnel are not issued "
                                                        "through this API")
    if tunnel_account(activity.org_id, activity.tunnel) is None:
        raise IssueRefused(409, "TUNNEL_NOT_CONFIGURED", f"the bank has no active {activity.tunnel} tunnel account")
    needed = ("upstream_activity_id", "owner_id", "promotion_id") if activity.tunnel == "yunshuhui" else ("promotion_id",)
    missing = [name for name in needed if not getattr(activity, name)]
    if missing:
        raise IssueRefused(409, "ACTIVITY_NOT_CONFIGURED",
                           f"coupon activity {activity.code} lacks {', '.join(missing)} for its tunnel")


_TUNNEL_ACCOUNT = select(TunnelAccount).where(TunnelAccount.org_id == bindparam("org_id"),
                                               TunnelAccount.tunnel == bindparam("tunnel"), TunnelAccount.status == "active")


def tunnel_account(org_id: int, tunnel: str) -> TunnelAccount | None:
    return db.session.execute(_TUNNEL_ACCOUNT, {"org_id": org_id, "tunnel": tunnel}).scalar_one_or_none()


def _store_new_issue(client: BankApiClient, activity: CouponActivity, request: IssueRequest,
                     openid_hash: str) -> CouponIssue:
    issue = CouponIssue(org_id=client.org_id, order_no=new_order_no(), call_trade_no=request.call_trade_no,
                        coupon_activity_id=activity.id, api_client_id=client.id,
                        openid_enc=crypto.encrypt(request.open_id), openid_hash=openid_hash,
                        openid_masked=mask_openid(request.open_id), bank_member_id=request.member_id,
                        write_off_notify=request.write_off_notify, post_notify=request.post_notify, status="queued")
    refusal = queue_issue(issue, activity)
    if refusal:
        db.session.rollback()
        raise refusal
    commit_keeping_loaded()  # the answer is made from the issue just written: no need to read it again
    return issue


def queue_issue(issue: CouponIssue, activity: CouponActivity) -> IssueRefused | None:
    """Add a new issue to the caller's transaction: take its counts (guarded) and put its delivery in
    the outbox. Returns the refusal when a limit stops it (the caller rolls back); never commits."""
    db.session.add(issue)
    db.session.flush()  # a twin's callTradeNo raises IntegrityError here, before any count is taken
    refusal = _take_counts(issue, activity)
    if refusal is None:
        _queue_delivery(issue)
    return refusal


def new_order_no() -> str:
    """Our order number, sent upstream as mer_order_id: 'CP' + Beijing date + 16 random digits."""
    day = utcnow().astimezone(BUSINESS_TZ).strftime("%Y%m%d")
    return f"CP{day}{secrets.randbelow(10 ** 16):016d}"


def _queue_delivery(issue: CouponIssue) -> None:
    outbox.add_message(ISSUE_KIND, {"issue_id": issue.id, "order_no": issue.order_no}, org_id=issue.org_id,
                       dedupe_key=f"{ISSUE_KIND}:{issue.order_no}", max_attempts=ISSUE_MAX_ATTEMPTS)


# --- stock and per-member counts -----------------------------------------------------------------


def _member_count_upsert(insert_into):
    """One more coupon for a customer of an activity, unless they have the activity's limit."""
    counts = CouponMemberCount.__table__.c
    return insert_into(CouponMemberCount.__table__).values(
        coupon_activity_id=bindparam("activity_id"), openid_hash=bindparam("openid_hash"), issued=1,
    ).on_conflict_do_update(index_elements=["coupon_activity_id", "openid_hash"], set_={"issued": counts.issued + 1},
                            where=counts.issued < bindparam("limit")).returning(counts.issued)


_MEMBER_COUNT = upsert_built_once(_member_count_upsert)
_ACTIVITIES = CouponActivity.__table__.c
_TAKE_ONE = (update(CouponActivity.__table__)
             .where(_ACTIVITIES.id == bindparam("activity_id"), _ACTIVITIES.issued_count < _ACTIVITIES.issue_total)
             .values(issued_count=_ACTIVITIES.issued_count + 1).returning(_ACTIVITIES.issued_count))


def _take_counts(issue: CouponIssue, activity: CouponActivity) -> IssueRefused | None:
    """Count one more coupon for the customer and for the activity, both guarded; None when both held."""
    member = {"activity_id": activity.id, "openid_hash": issue.openid_hash, "limit": activity.per_member_limit}
    if db.session.execute(_MEMBER_COUNT(), member).scalar_one_or_none() is None:
        return IssueRefused(409, "MEMBER_LIMIT_REACHED",
                            f"this customer already has {activity.per_member_limit} coupon(s) of this activity")
    if db.session.execute(_TAKE_ONE, {"activity_id": activity.id}).scalar_one_or_none() is None:
        return IssueRefused(409, "STOCK_EXHAUSTED", f"coupon activity {activity.code} has no coupons left")
    return None


def _release_counts(issue: CouponIssue) -> None:
    """Give back what a failed issue took, so the stock is not lost (rows locked in the same order
    as `_take_counts`: the customer's count, then the activity, so the two never deadlock)."""
    db.session.execute(update(CouponMemberCount)
                       .where(CouponMemberCount.coupon_activity_id == issue.coupon_activity_id,
                              CouponMemberCount.openid_hash == issue.openid_hash, CouponMemberCount.issued > 0)
                       .values(issued=CouponMemberCount.issued - 1).execution_options(synchronize_session=False))
    db.session.execute(update(CouponActivity)
                       .where(CouponActivity.id == issue.coupon_activity_id, CouponActivity.issued_count > 0)
                       .values(issued_count=CouponActivity.issued_count - 1).execution_options(synchronize_session=False))


# --- settling ------------------------------------------------------------------------------------


def lock_issue(issue_id: int) -> CouponIssue:
    """The issue, re-read and locked until the transaction ends (every change to it goes through here)."""
    return db.session.execute(select(CouponIssue).where(CouponIssue.id == issue_id)
                              .options(lazyload(CouponIssue.activity)).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()


def settle(issue_id: int, word: Word, by: str) -> CouponIssue:
    """Apply the tunnel's word on an issue (in the caller's transaction)."""
    issue = lock_issue(issue_id)
    _keep_identifiers(issue, word)
    if word.trade_status == "SUCCESS":
        _succeed(issue, by, word.issued_at)
    elif word.trade_status == "FAIL":
        _fail(issue, by, word)
    elif issue.status == "queued":
        issue.status = "processing"
        issue.trade_status = "PROCESS"
    return issue


def _keep_identifiers(issue: CouponIssue, word: Word) -> None:
    for name in ("third_coupon_id", "trade_no", "batch_code"):
        value = getattr(word, name)
        if value and not getattr(issue, name):
            setattr(issue, name, value)
    if word.amount_fen is not None and issue.promo_amount_fen is None:
        issue.promo_amount_fen = word.amount_fen
    if word.res_code and issue.status not in FINAL:
        issue.res_code = word.res_code


def _succeed(issue: CouponIssue, by: str, issued_at: datetime | None) -> None:
    if issue.status == "succeeded":
        return
    if issue.status == "failed":  # a late success of a coupon whose stock we had given back: take it again
        refusal = _take_counts(issue, db.session.get(CouponActivity, issue.coupon_activity_id))
        if refusal:
            current_app.logger.warning("issue %s succeeded after FAIL but %s", issue.order_no, refusal.message)
    issue.status = "succeeded"
    issue.trade_status = "SUCCESS"
    issue.fail_msg = None
    issue.settled_by = by
    issue.issued_at = issued_at or utcnow()
    notifications.notify_bank(issue, "issuance")


def _fail(issue: CouponIssue, by: str, word: Word) -> None:
    if issue.status in FINAL:  # a success is never undone; a failure is told once
        return
    issue.status = "failed"
    issue.trade_status = "FAIL"
    issue.res_code = word.res_code or issue.res_code
    issue.fail_msg = (word.fail_msg or "")[:500] or None
    issue.settled_by = by
    _release_counts(issue)
    notifications.notify_bank(issue, "issuance")


def record_redemption(issue_id: int, redemption: Redemption, by: str) -> bool:
    """Apply a redemption (USED / EXPIRED); False when it changes nothing. Marks the issue succeeded
    if nothing had settled it yet (a redemption before the issuance callback)."""
    issue = lock_issue(issue_id)
    if issue.redemption_status == redemption.status or issue.redemption_status == "used":
        return False
    if issue.status != "succeeded":
        _succeed(issue, by, None)
    issue.redemption_status = redemption.status
    issue.used_at = redemption.used_at
    for name in ("promo_amount_fen", "total_amount_fen", "org_amount_fen", "merchant_no", "merchant_name"):
        value = getattr(redemption, name)
        if value is not None:
            setattr(issue, name, value)
    issue.redemption_trade_no = redemption.trade_no or issue.redemption_trade_no
    if redemption.third_coupon_id and not issue.third_coupon_id:
        issue.third_coupon_id = redemption.third_coupon_id
    notifications.notify_bank(issue, "redemption")
    return True


# --- the outbox job that calls the tunnel --------------------------------------------------------


@outbox.outbox_handler(ISSUE_KIND)
def deliver_issue(payload: dict) -> str:
    """Send one queued issue to its tunnel and record the answer (raises when the outcome is unknown)."""
    issue = db.session.get(CouponIssue, payload["issue_id"])
    if issue is None or issue.order_no != payload.get("order_no"):
        return "superseded: the issue was retried under another order number"
    if issue.status in FINAL:
        return f"nothing to do: already {issue.status}"
    tried_before = issue.attempts > 0
    try:
        tunnel = tunnel_for(issue)
        lookup = tunnel.look_up(issue) if tried_before else None  # did an earlier call get through?
        word = tunnel.issue(issue) if lookup is None else lookup.word
    except TunnelUnavailable:
        issue_id = issue.id
        notifications.persist_despite_rollback(lambda session: session.execute(
            update(CouponIssue).where(CouponIssue.id == issue_id).values(attempts=CouponIssue.attempts + 1)))
        raise
    # Counted once the tunnel has answered: nothing is written while it is called (on the embedded
    # default's SQLite a pending write would lock out the in-process sandbox answering the call), and
    # an answer that never comes rolls the count back either way (the outbox's savepoint).
    issue.attempts += 1
    if lookup is not None:
        _apply_lookup(issue.id, lookup)
        return f"settled by query: {lookup.word.trade_status}"
    settle(issue.id, word, "answer")
    return f"answered {word.trade_status}"


def _apply_lookup(issue_id: int, lookup: Lookup) -> None:
    settle(issue_id, lookup.word, "query")
    if lookup.redemption is not None:
        record_redemption(issue_id, lookup.redemption, "query")


def tunnel_for(issue: CouponIssue) -> Tunnel:
    """The tunnel an issue goes through; a tunnel that cannot be used answers FAIL for every issue."""
    activity = issue.activity
    account = tunnel_account(issue.org_id, activity.tunnel)
    if account is None:
        return _Refusing("TUNNEL", f"the bank has no active {activity.tunnel} tunnel account")
    if activity.tunnel == "yunshuhui":
        return _YunshuhuiTunnel(account)
    if activity.tunnel == "direct":
        return _DirectTunnel(account)
    return _Refusing("TUNNEL", f"the {activity.tunnel} tunnel does not issue coupons")


@dataclass
class _Refusing:
    code: str
    message: str

    def issue(self, issue: CouponIssue) -> Word:
        return Word("FAIL", res_code=self.code, fail_msg=self.message)

    def look_up(self, issue: CouponIssue) -> Lookup | None:
        return None


def public_base_url() -> str:
    """Where 云数汇 and browsers reach us (PUBLIC_BASE_URL; the embedded default's address otherwise)."""
    return (current_app.config.get("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/")


def callback_url(account: TunnelAccount, kind: str) -> str:
    """Our callback URL for one tunnel account: .../callbacks/yunshuhui/<id>/issuance or /redemption."""
    return f"{public_base_url()}/callbacks/yunshuhui/{account.id}/{kind}"


@dataclass
class _YunshuhuiTunnel:
    account: TunnelAccount

    def _client(self):
        from app.providers import yunshuhui

        return yunshuhui.YunshuhuiClient.for_account(self.account)

    def issue(self, issue: CouponIssue) -> Word:
        from app.providers.yunshuhui import YunshuhuiError, YunshuhuiUnavailable

        activity = issue.activity
        try:
            answer = self._client().issue(
                activity_id=activity.upstream_activity_id, owner_id=activity.owner_id,
                promotion_id=activity.promotion_id, channel_openid=issue.openid, mer_order_id=issue.order_no,
                write_off_notify=callback_url(self.account, "redemption"),
                post_notify=callback_url(self.account, "issuance"))
        except YunshuhuiUnavailable as exc:
            raise TunnelUnavailable(str(exc)) from exc
        except YunshuhuiError as exc:
            return Word("FAIL", res_code=exc.code[:16], fail_msg=exc.message)
        return Word(answer.trade_status or "PROCESS", res_code=answer.res_code, fail_msg=answer.fail_msg,
                    third_coupon_id=answer.third_coupon_id, trade_no=answer.trade_no, batch_code=answer.batch_code)

    def look_up(self, issue: CouponIssue) -> Lookup | None:
        from app.providers.yunshuhui import YunshuhuiError, YunshuhuiUnavailable

        activity = issue.activity
        try:
            answer = self._client().query(owner_id=activity.owner_id, mer_order_id=issue.order_no,
                                          activity_id=activity.upstream_activity_id, trade_no=issue.trade_no)
        except YunshuhuiUnavailable as exc:
            raise TunnelUnavailable(str(exc)) from exc
        except YunshuhuiError as exc:
            current_app.logger.warning("query of issue %s refused: %s", issue.order_no, exc)
            return None
        if answer.not_found or answer.trade_status is None:
            return None
        redemption = None
        if answer.redemption_status:
            redemption = Redemption(answer.redemption_status.lower(), used_at=answer.used_at,
                                    promo_amount_fen=answer.promo_amount_fen, total_amount_fen=answer.total_amount_fen,
                                    org_amount_fen=answer.org_amount_fen)
        word = Word(answer.trade_status, res_code=answer.res_code, fail_msg=answer.fail_msg,
                    amount_fen=answer.promo_amount_fen)
        return Lookup(word, redemption)


@dataclass
class _DirectTunnel:
    """WeChat Pay 代金券: the stock is the activity's promotion_id, our order_no the out_request_no.
    Sending is synchronous and idempotent by out_request_no, so a retry needs no query first."""

    account: TunnelAccount

    def issue(self, issue: CouponIssue) -> Word:
        from app.providers.wechatpay import WechatCouponClient, WechatPayError, WechatPayUnavailable

        try:
            sent = WechatCouponClient.for_account(self.account).send_coupon(
                openid=issue.openid, stock_id=issue.activity.promotion_id, out_request_no=issue.order_no)
        except WechatPayUnavailable as exc:
            raise TunnelUnavailable(str(exc)) from exc
        except WechatPayError as exc:
            return Word("FAIL", res_code=exc.code[:16], fail_msg=exc.message)
        return Word("SUCCESS", res_code="SUCCESS", third_coupon_id=sent.coupon_id)

    def look_up(self, issue: CouponIssue) -> Lookup | None:
        return None


# --- the periodic query of unsettled issues ------------------------------------------------------


@dataclass
class SettleReport:
    checked: int = 0
    settled: int = 0
    unavailable: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "settled": self.settled, "unavailable": self.unavailable,
                "errors": self.errors[:20]}


def settle_processing(older_than: timedelta = timedelta(minutes=5), limit: int = 200) -> SettleReport:
    """Ask the tunnel about issues left in PROCESS for longer than `older_than` (each asked at most
    once per `older_than`); one commit per issue, so one slow answer holds nothing else up."""
    cutoff = utcnow() - older_than
    ids = list(db.session.execute(
        select(CouponIssue.id).where(CouponIssue.status == "processing", CouponIssue.created_at < cutoff,
                                     or_(CouponIssue.last_queried_at.is_(None), CouponIssue.last_queried_at < cutoff))
        .order_by(CouponIssue.id).limit(limit)).scalars())
    db.session.rollback()
    report = SettleReport()
    for issue_id in ids:
        report.checked += 1
        issue = db.session.get(CouponIssue, issue_id)
        try:
            lookup = tunnel_for(issue).look_up(issue)
        except TunnelUnavailable as exc:
            db.session.rollback()
            report.unavailable += 1
            report.errors.append(f"{issue.order_no}: {exc}")
            continue
        lock_issue(issue_id).last_queried_at = utcnow()
        if lookup is not None:
            _apply_lookup(issue_id, lookup)
            if lookup.word.trade_status != "PROCESS":
                report.settled += 1
        db.session.commit()
    return report


# --- retrying failed issues by hand --------------------------------------------------------------


@dataclass
class RetryReport:
    retried: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # issue id -> why not


def retry_issues(issue_ids: list[int] | tuple[int, ...], actor) -> RetryReport:
    """Queue failed issues again (each under a new order number, taking stock and the customer's
    count again, audited); issues the actor cannot see, that are not failed, or for which the stock
    or the customer's limit no longer allow, are refused with a reason. Commits."""
    report = RetryReport()
    for issue_id in sorted(set(int(i) for i in issue_ids)):
        issue = db.session.execute(scoped(CouponIssue, actor).where(CouponIssue.id == issue_id)
                                   .options(lazyload(CouponIssue.activity)).with_for_update()).scalar_one_or_none()
        reason = _retry_refusal(issue)
        if reason is None:
            savepoint = db.session.begin_nested()
            refusal = _take_counts(issue, issue.activity)
            if refusal is not None:
                savepoint.rollback()
                reason = RETRY_REFUSALS[refusal.code]
            else:
                savepoint.commit()
                _requeue(issue)
                report.retried.append(issue_id)
        if reason is not None:
            report.refused[issue_id] = str(reason)
    db.session.commit()
    return report


RETRY_REFUSALS = {"STOCK_EXHAUSTED": _l("No coupons are left in the activity"),
                  "MEMBER_LIMIT_REACHED": _l("The customer already has as many coupons as the per-member limit allows")}


def _retry_refusal(issue: CouponIssue | None) -> str | None:
    if issue is None:
        return _l("Not found")
    if issue.status != "failed":
        return _l("Only failed issues can be retried")
    activity = issue.activity
    if not activity.enabled or activity.status != "running":
        return _l("The coupon activity is not running")
    return None


def _requeue(issue: CouponIssue) -> None:
    before = audit.snapshot(issue, ("status", "order_no", "res_code", "fail_msg"))
    issue.order_no = new_order_no()
    issue.status = "queued"
    issue.attempts = 0
    for name in ("res_code", "fail_msg", "trade_status", "settled_by", "last_queried_at"):
        setattr(issue, name, None)
    db.session.flush()
    _queue_delivery(issue)
    audit.record("coupon_issue.retry", "coupon_issue", issue.id, before=before,
                 after=audit.snapshot(issue, ("status", "order_no")), org_id=issue.org_id)


audit.ACTION_LABELS.setdefault("coupon_issue.retry", _l("Retried a failed coupon issue"))
