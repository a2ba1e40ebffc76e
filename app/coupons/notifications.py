"""Notifications we owe a bank, and the bank's view of an issue.

When an issue settles (issuance result, to the bank's `postNotify`) or its coupon is used or
expires (redemption, to `writeOffNotify`), `notify_bank` writes a `BankNotification` with a unique
`event_key` (so no event is ever told twice) and an outbox message in the same transaction. The
outbox handler `coupons.notify_bank` POSTs the document, signed with the key pair we keep for the
bank's API client (the LKLAPI callback form: `Authorization: LKLAPI-SHA256withRSA
timestamp=…,nonce_str=…,signature=…` over `timestamp\\nnonce\\nbody\\n`; `Lklapi-Serial` names our
certificate). The bank must answer 2xx with `{"code":"SUCCESS"}`; anything else is a failure that
the outbox retries with its backoff. Every try is kept as a `BankNotificationAttempt` (status,
answer excerpt, duration) — failed tries too, although the outbox undoes a failing handler's
database work: `persist_despite_rollback` writes them after that undo.

The document is camelCase, in the words banks know from 云数汇 (`tradeStatus` SUCCESS / FAIL for
an issuance, USED / EXPIRED for a redemption), times in Beijing time `YYYY-MM-DD HH:mm:ss`,
amounts in fen. It carries the customer's openid in full (the bank knows its customer); the stored
payload does not, the openid is added from the encrypted column when sending.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable

import httpx
from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session

from app.core import outbox
from app.core.timeutil import format_local, utcnow
from app.extensions import db

from . import bank_auth
from .models import BankApiClient, BankNotification, BankNotificationAttempt, CouponIssue

NOTIFY_KIND = "coupons.notify_bank"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
EXCERPT = 500


def persist_despite_rollback(work: Callable[[Session], object]) -> None:
    """Keep a record of a failure although the handler is about to raise: the outbox rolls back
    the savepoint around the handler, then commits the message's new state; `work(session)` runs
    just before that commit (no SQL may run while the savepoint closes). At once when no savepoint
    is open (the handler was called directly)."""
    session = db.session()
    savepoint = session.get_nested_transaction()
    unnested = session.info.get("outbox_unnested")  # the embedded default's outbox rolls back the whole transaction
    if savepoint is None and not unnested:
        work(session)
        return

    def after_rollback(rolled_back_session: Session, previous_transaction) -> None:
        if previous_transaction is savepoint or (unnested and previous_transaction.parent is None):
            event.listen(rolled_back_session, "before_commit", lambda committing: work(committing), once=True)

    event.listen(session, "after_soft_rollback", after_rollback, once=True)


# --- the bank's view of an issue ------------------------------------------------------------------


def _local(value) -> str | None:
    return format_local(value) or None


def bank_view(issue: CouponIssue) -> dict:
    """The issue as a bank reads it (API answers and notifications alike; no openid)."""
    activity = issue.activity
    redemption = None
    if issue.redemption_status:
        redemption = {"tradeStatus": issue.redemption_status.upper(), "usedAt": _local(issue.used_at),
                      "promoAmount": issue.promo_amount_fen, "totalAmount": issue.total_amount_fen,
                      "orgAmount": issue.org_amount_fen, "tradeNo": issue.redemption_trade_no,
                      "merchantNo": issue.merchant_no, "merchantName": issue.merchant_name}
    return {
        "callTradeNo": issue.call_trade_no, "orderNo": issue.order_no, "memberId": issue.bank_member_id,
        "activityCode": activity.code, "batchCode": activity.batch_no, "status": issue.status,
        "tradeStatus": issue.trade_status, "resCode": issue.res_code, "failMsg": issue.fail_msg,
        "thirdCouponId": issue.third_coupon_id, "tradeNo": issue.trade_no, "issuedAt": _local(issue.issued_at),
        "createdAt": _local(issue.created_at), "redemption": redemption,
    }


def _document(issue: CouponIssue, kind: str) -> dict:
    view = bank_view(issue)
    if kind == "issuance":
        keep = ("callTradeNo", "orderNo", "memberId", "activityCode", "batchCode", "thirdCouponId", "tradeNo",
                "issuedAt", "failMsg")
        return {"notifyType": "ISSUANCE", "tradeStatus": issue.trade_status, **{k: view[k] for k in keep}}
    return {"notifyType": "REDEMPTION", **{k: view[k] for k in ("callTradeNo", "orderNo", "memberId", "activityCode",
                                                                  "batchCode", "thirdCouponId")},
            **view["redemption"]}


def event_key(issue: CouponIssue, kind: str) -> str:
    if kind == "issuance":
        return f"issuance:{issue.order_no}"
    return f"redemption:{issue.order_no}:{(issue.redemption_status or '').upper()}"


def notify_bank(issue: CouponIssue, kind: str) -> BankNotification | None:
    """Owe the bank one notification of this event (once per event; none without a URL or client)."""
    url = issue.post_notify if kind == "issuance" else issue.write_off_notify
    if not url or issue.api_client_id is None:
        return None
    key = event_key(issue, kind)
    if db.session.execute(select(BankNotification.id).where(BankNotification.event_key == key)).scalar() is not None:
        return None
    notification = BankNotification(org_id=issue.org_id, issue_id=issue.id, kind=kind, event_key=key, url=url,
                                     payload=_document(issue, kind), status="pending")
    db.session.add(notification)
    db.session.flush()
    message = outbox.add_message(NOTIFY_KIND, {"notification_id": notification.id}, org_id=issue.org_id,
                                 dedupe_key=f"bank-notify:{key}"[:128])
    notification.outbox_message_id = message.id
    return notification


# --- delivery ------------------------------------------------------------------------------------


class BankRefused(Exception):
    """The bank did not take the notification (no answer, not 2xx, or not {"code":"SUCCESS"})."""


_http_clients: dict[int, httpx.Client] = {}
_http_lock = threading.Lock()


def _http() -> httpx.Client:
    """One pooled client per process (a forked worker makes its own)."""
    client = _http_clients.get(os.getpid())
    if client is None:
        with _http_lock:
            client = _http_clients.setdefault(os.getpid(), httpx.Client(timeout=TIMEOUT, follow_redirects=False))
    return client


def signed_body(notification: BankNotification, issue: CouponIssue, client: BankApiClient) -> tuple[bytes, dict]:
    """The exact bytes we send and their headers."""
    document = {**notification.payload, "openId": issue.openid, "notifyId": str(notification.id)}
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json; charset=utf-8",
               "Authorization": bank_auth.notification_authorization(client, body),
               "Lklapi-Serial": client.our_serial_no}
    return body, headers


@outbox.outbox_handler(NOTIFY_KIND)
def deliver_notification(payload: dict) -> str:
    notification = db.session.get(BankNotification, payload["notification_id"])
    if notification is None:
        return "gone"
    if notification.status == "delivered":
        return "already delivered"
    issue = db.session.get(CouponIssue, notification.issue_id)
    client = db.session.get(BankApiClient, issue.api_client_id)
    body, headers = signed_body(notification, issue, client)
    started = time.perf_counter()
    status, text, error = None, None, None
    try:
        response = _http().post(notification.url, content=body, headers=headers)
        status, text = response.status_code, response.text
        if not _says_success(response):
            error = f"HTTP {status}: the bank did not answer {{\"code\":\"SUCCESS\"}}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempt = {"notification_id": notification.id, "attempted_at": utcnow(), "http_status": status,
               "response_excerpt": (text or "")[:EXCERPT] or None, "ok": error is None,
               "error": error[:EXCERPT] if error else None,
               "duration_ms": int((time.perf_counter() - started) * 1000)}
    if error is None:
        _record_attempt(db.session(), attempt, "delivered")
        return f"HTTP {status}: {(text or '')[:200]}"
    persist_despite_rollback(lambda session: _record_attempt(session, attempt, _status_after_failure(notification)))
    raise BankRefused(error)


def _says_success(response: httpx.Response) -> bool:
    if not 200 <= response.status_code < 300:
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("code") == "SUCCESS"


def _status_after_failure(notification: BankNotification) -> str:
    """'failed' when the outbox will not try again (its last attempt), else still 'pending'."""
    message = db.session.get(outbox.OutboxMessage, notification.outbox_message_id) \
        if notification.outbox_message_id else None
    return "failed" if message is not None and message.attempts >= message.max_attempts else "pending"


def _record_attempt(session: Session, attempt: dict, status: str) -> None:
    session.execute(insert(BankNotificationAttempt).values(**attempt))
    values = {"attempts": BankNotification.attempts + 1, "status": status}
    if status == "delivered":
        values["delivered_at"] = attempt["attempted_at"]
    session.execute(update(BankNotification).where(BankNotification.id == attempt["notification_id"])
                    .values(**values).execution_options(synchronize_session=False))


def attempts_of(notification_id: int) -> list[BankNotificationAttempt]:
    """The tries at one notification, oldest first (for the monitor's history)."""
    return list(db.session.execute(select(BankNotificationAttempt)
                                   .where(BankNotificationAttempt.notification_id == notification_id)
                                   .order_by(BankNotificationAttempt.id)).scalars())
