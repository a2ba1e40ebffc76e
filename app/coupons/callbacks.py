"""Callbacks from 云数汇 (issuance and redemption) and WeChat Pay (COUPON.USE, direct tunnel).

`POST /callbacks/yunshuhui/<tunnel account id>/issuance` and `/redemption` (the URLs we put into
every issue call), and `POST /callbacks/wechatpay/<tunnel account id>/coupon-use`.

Every callback is stored (`CouponCallback`: headers, body, outcome, reason) in the same short
transaction that applies it, and answered at once:

- verified (signature with the account's notification certificate, timestamp within ±300 s, a
  nonce never seen before — Redis `SET NX` with a TTL outliving the window), matched to our issue
  by our order number, and applied once: the callback's `event_key` ("issuance:<order_no>:<status>",
  "redemption:<order_no>:<status>") is unique, so a duplicate finds it taken and changes nothing
  (outcome `duplicate`); the states only move forward (`issuance.settle` / `record_redemption`),
  so out-of-order callbacks cannot undo anything. Answer `{"code":"SUCCESS","msg":"处理成功"}`.
- not for an issue of ours (outcome `unknown`): stored for investigation and acknowledged with
  SUCCESS, since asking 云数汇 to send it again cannot make it ours.
- refused — bad or missing signature, unknown account (`rejected`), stale timestamp (`stale`),
  replayed nonce, unreadable body (`rejected`) — answered `{"code":"FAIL","msg":…}`, which makes
  云数汇 send it again on its schedule (1 s … 2 h, about 4 h in all). That is what we want: a
  genuine callback that failed because our notification certificate is out of date is applied
  once the certificate is fixed, and 云数汇 signs each retry afresh (new timestamp and nonce). A
  forgery gains nothing from being retried.
- an error while applying: the savepoint is undone, the callback is kept as `rejected` with the
  error (its event key freed), and we answer FAIL (HTTP 500) so 云数汇 retries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, request
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from app.core.timeutil import utcnow
from app.extensions import begin_writing, csrf, db, get_redis
from app.providers import lklapi

from . import issuance
from .models import CouponCallback, CouponIssue, TunnelAccount

NONCE_TTL_SECONDS = 2 * 300 + 60
HEADERS_NOT_KEPT = {"cookie"}
ACK_SUCCESS = {"code": "SUCCESS", "msg": "处理成功"}


@dataclass(frozen=True)
class Receipt:
    """What we answer: the acknowledgement body and its HTTP status."""

    ack: dict
    http_status: int = 200

    def body(self) -> bytes:
        return json.dumps(self.ack, ensure_ascii=False, separators=(",", ":")).encode()


def _fail(message: str, http_status: int) -> Receipt:
    return Receipt({"code": "FAIL", "msg": message}, http_status)


@dataclass
class _Inbound:
    kind: str
    account_id: int
    headers: dict
    body: bytes

    def store(self, outcome: str, reason: str | None = None, event_key: str | None = None,
              issue: CouponIssue | _IssueRef | None = None) -> CouponCallback:
        callback = CouponCallback(kind=self.kind, headers=self.headers,
                                  body=self.body.decode("utf-8", errors="replace"), outcome=outcome,
                                  reason=(reason or "")[:500] or None, event_key=event_key,
                                  issue_id=issue.id if issue else None, issue_org_id=issue.org_id if issue else None,
                                  tunnel_account_id=self.account_id, received_at=utcnow())
        db.session.add(callback)
        db.session.flush()
        return callback

    def refuse(self, outcome: str, reason: str, http_status: int) -> Receipt:
        self.store(outcome, reason)
        db.session.commit()
        return _fail(reason, http_status)


def _kept_headers(headers) -> dict:
    return {name: value for name, value in headers.items() if name.lower() not in HEADERS_NOT_KEPT}


def _first_use_of_nonce(namespace: str, nonce: str) -> bool:
    return bool(get_redis().set(f"callback:nonce:{namespace}:{nonce}", b"1", nx=True, ex=NONCE_TTL_SECONDS))


# --- 云数汇 --------------------------------------------------------------------------------------


def receive_yunshuhui(account_id: int, kind: str, headers, body: bytes) -> Receipt:
    """Verify, store and apply one 云数汇 callback (`kind` issuance | redemption); commits."""
    from app.providers import yunshuhui

    begin_writing()  # a callback is always kept, whatever it says
    inbound = _Inbound(kind, account_id, _kept_headers(headers), body)
    account = db.session.get(TunnelAccount, account_id)
    if account is None or account.tunnel != "yunshuhui" or account.status != "active":
        return inbound.refuse("rejected", "unknown or inactive 云数汇 account", 404)
    authorization = headers.get("Authorization")
    try:
        auth = yunshuhui.verify_callback(account, authorization, body)
    except lklapi.SignatureError as exc:
        return inbound.refuse(_stale_or_rejected(authorization), str(exc), 401)
    if not _first_use_of_nonce(f"ysh:{account.id}", auth.nonce_str):
        return inbound.refuse("rejected", "replayed nonce_str", 401)
    try:
        fields = (yunshuhui.parse_issuance_callback if kind == "issuance" else yunshuhui.parse_redemption_callback)(body)
    except ValueError as exc:
        return inbound.refuse("rejected", f"unreadable body: {exc}", 400)
    issue = _our_issue(account, fields)
    if issue is None:
        inbound.store("unknown", f"no issue of this bank has order {fields.get('mer_order_id')}")
        db.session.commit()
        return Receipt(ACK_SUCCESS)
    status = fields["trade_status"] if kind == "issuance" else fields["redemption_status"]
    return _apply_once(inbound, issue, f"{kind}:{issue.order_no}:{status}", lambda: _apply_yunshuhui(kind, issue, fields))


def _stale_or_rejected(authorization: str | None) -> str:
    """A callback whose signature header is well formed but whose timestamp is out of the window is 'stale'."""
    try:
        auth = lklapi.parse_authorization(authorization)
    except lklapi.SignatureError:
        return "rejected"
    return "rejected" if lklapi.is_fresh(auth.timestamp) else "stale"


@dataclass(frozen=True)
class _IssueRef:
    """Which issue a callback is about: all a duplicate needs (the row itself is locked and read
    by `issuance` when a callback is applied)."""

    id: int
    org_id: int
    order_no: str


def _issue_query(by_order_no: bool):
    """Built once per way of naming the issue (our order number, else 云数汇's coupon id): every
    callback of a storm runs one of them."""
    named = (CouponIssue.order_no == bindparam("order_no") if by_order_no
             else CouponIssue.third_coupon_id == bindparam("third_coupon_id"))
    return (select(CouponIssue.id, CouponIssue.org_id, CouponIssue.order_no)
            .where(CouponIssue.org_id == bindparam("org_id"), named).limit(1))


_ISSUE_BY = {by_order_no: _issue_query(by_order_no) for by_order_no in (True, False)}


def _our_issue(account: TunnelAccount, fields: dict) -> _IssueRef | None:
    row = db.session.execute(_ISSUE_BY[bool(fields.get("mer_order_id"))], {
        "org_id": account.org_id, "order_no": fields.get("mer_order_id"),
        "third_coupon_id": fields.get("third_coupon_id")}).first()
    return _IssueRef(*row) if row else None


def _apply_yunshuhui(kind: str, issue: _IssueRef, fields: dict) -> None:
    if kind == "issuance":
        word = issuance.Word(fields["trade_status"], fail_msg=fields.get("fail_msg"), amount_fen=fields.get("amount_fen"),
                             issued_at=fields.get("trade_paid_at") or fields.get("trade_created_at"))
        issuance.settle(issue.id, word, "callback")
        return
    redemption = issuance.Redemption(
        fields["redemption_status"].lower(), used_at=fields.get("used_at"),
        promo_amount_fen=fields.get("promo_amount_fen"), total_amount_fen=fields.get("total_amount_fen"),
        org_amount_fen=fields.get("org_amount_fen"), trade_no=fields.get("pay_trade_no") or fields.get("trade_no"),
        merchant_no=fields.get("merchant_no"), merchant_name=fields.get("merchant_name"),
        third_coupon_id=fields.get("third_coupon_id"))
    issuance.record_redemption(issue.id, redemption, "callback")  # locks and reads the row
    row = db.session.get(CouponIssue, issue.id)  # the locked row, from the session (no query)
    if fields.get("trade_no") and not row.trade_no:
        row.trade_no = fields["trade_no"]


def _apply_once(inbound: _Inbound, issue: CouponIssue | _IssueRef, event_key: str, apply) -> Receipt:
    """Claim the event key (a duplicate finds it taken), apply, commit; one transaction."""
    if _applied_before(event_key):  # the common duplicate, told apart without a failing insert
        return _duplicate(inbound, issue, event_key)
    try:
        with db.session.begin_nested():
            callback = inbound.store("applied", event_key=event_key, issue=issue)
    except IntegrityError:  # a twin claimed the key a moment ago
        return _duplicate(inbound, issue, event_key)
    try:
        with db.session.begin_nested():
            apply()
    except Exception as exc:  # never lose the callback: keep it, free its key, let the platform retry
        current_app.logger.exception("applying callback %s failed", callback.id)
        callback.outcome, callback.event_key = "rejected", None
        callback.reason = f"could not apply: {type(exc).__name__}: {exc}"[:500]
        db.session.commit()
        return _fail("internal error; please retry", 500)
    db.session.commit()
    return Receipt(ACK_SUCCESS)


_APPLIED = select(CouponCallback.id).where(CouponCallback.event_key == bindparam("event_key")).limit(1)


def _applied_before(event_key: str) -> bool:
    return db.session.execute(_APPLIED, {"event_key": event_key}).first() is not None


def _duplicate(inbound: _Inbound, issue: CouponIssue | _IssueRef, event_key: str) -> Receipt:
    inbound.store("duplicate", f"{event_key} was applied before", issue=issue)
    db.session.commit()
    return Receipt(ACK_SUCCESS)


# --- WeChat Pay COUPON.USE (direct tunnel) -----------------------------------------------------------


def receive_wechat_use(account_id: int, headers, body: bytes) -> tuple[int, dict | None]:
    """Verify, store and apply a COUPON.USE notification; (HTTP status, body) — WeChat Pay wants
    204 without a body for success and 4xx/5xx with {"code":"FAIL","message":…} otherwise."""
    from app.providers import wechatpay

    begin_writing()  # a notification is always kept, whatever it says
    inbound = _Inbound("wechat_use", account_id, _kept_headers(headers), body)
    account = db.session.get(TunnelAccount, account_id)
    if account is None or account.tunnel != "direct" or account.status != "active":
        inbound.refuse("rejected", "unknown or inactive WeChat Pay account", 404)
        return 404, {"code": "FAIL", "message": "unknown account"}
    try:
        note = wechatpay.parse_use_notification(account, headers, body)
    except wechatpay.WechatPayError as exc:
        outcome = "stale" if exc.code == "TIMESTAMP_EXPIRED" else "rejected"
        inbound.refuse(outcome, str(exc), 401)
        return 401, {"code": "FAIL", "message": exc.message}
    if not _first_use_of_nonce(f"wx:{account.id}", headers.get("Wechatpay-Nonce") or note["event_id"]):
        inbound.refuse("rejected", "replayed nonce", 401)
        return 401, {"code": "FAIL", "message": "replayed nonce"}
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.org_id == account.org_id,
                                                         CouponIssue.third_coupon_id == note["coupon_id"])
                               ).scalar_one_or_none()
    if issue is None:
        inbound.store("unknown", f"no issue of this bank has coupon {note['coupon_id']}")
        db.session.commit()
        return 204, None
    status = "expired" if str(note.get("status") or "").upper() == "EXPIRED" else "used"
    redemption = issuance.Redemption(status, used_at=note.get("consume_time"), merchant_no=note.get("consume_mchid"),
                                     trade_no=note.get("transaction_id"), third_coupon_id=note["coupon_id"])
    receipt = _apply_once(inbound, issue, f"redemption:{issue.order_no}:{status.upper()}",
                          lambda: issuance.record_redemption(issue.id, redemption, "callback"))
    if receipt.ack["code"] == "SUCCESS":
        return 204, None
    return 500, {"code": "FAIL", "message": receipt.ack["msg"]}


# --- the endpoints -------------------------------------------------------------------------------

bp = Blueprint("coupon_callbacks", __name__, url_prefix="/callbacks")
csrf.exempt(bp)


@bp.post("/yunshuhui/<int:account_id>/<any(issuance, redemption):kind>")
def yunshuhui_callback(account_id: int, kind: str):
    receipt = receive_yunshuhui(account_id, kind, request.headers, request.get_data())
    return Response(receipt.body(), status=receipt.http_status, content_type="application/json; charset=utf-8")


@bp.post("/wechatpay/<int:account_id>/coupon-use")
def wechat_coupon_use(account_id: int):
    status, document = receive_wechat_use(account_id, request.headers, request.get_data())
    if document is None:
        return Response(status=status)
    return Response(json.dumps(document, ensure_ascii=False), status=status,
                    content_type="application/json; charset=utf-8")
