"""WeChat Pay sandbox: plays WeChat Pay v3's side of the 代金券 (cash coupon) API under /sandbox/wechatpay/.

The gateway base URL of a sandbox merchant is `<host>/sandbox/wechatpay`; the API paths below it are
the real ones, and the canonical URL signed in a request is the part from `/v3/` on (as the real
host sees it). Our client (app/providers/wechatpay.py, on `wechatpayv3`) talks to it unchanged.

- Requests must carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,
  timestamp=…,serial_no=…` over `METHOD\\nURL\\ntimestamp\\nnonce\\nbody\\n`, signed by the merchant
  certificate it was given (`provision_merchant`), timestamp within ±300 s; else 401 SIGN_ERROR.
- Answers are signed with the merchant's sandbox platform key (`Wechatpay-Timestamp/-Nonce/
  -Signature/-Serial/-Signature-Type`, text `timestamp\\nnonce\\nbody\\n`), errors as
  `{"code", "message"}` with the HTTP status.
- `GET /v3/certificates` answers the platform certificate encrypted with the merchant's APIv3 key
  (AEAD_AES_256_GCM, associated_data "certificate"), as the library downloads it.
- `POST /v3/marketing/favor/users/{openid}/coupons` sends a coupon from a stock: idempotent per
  (sending mchid, out_request_no) — the same request answers the same coupon_id, a different one
  with that number is refused; the stock row is locked while its budget and the per-user limit are
  checked, so the budget never goes below zero. `GET …/coupons/{coupon_id}?appid=` queries it.
- `POST /v3/marketing/favor/callbacks` sets where the merchant's COUPON.USE notifications go.
- When a person uses a coupon on the sandbox page (`use_coupon`), a COUPON.USE notification
  (resource encrypted with the APIv3 key, associated_data "coupon") is delivered to that URL and
  retried on the payment-notification schedule (15 s, 15 s, 30 s, 3 m, 10 m, 20 m, 30 m ×3, 1 h,
  3 h ×3, 6 h ×2) until it gets 200 or 204; each attempt is signed afresh.

**Assumed** (not in PROTOCOLS.md): stock exhausted → 403 NOT_ENOUGH "批次预算耗尽"; per-user limit
or outside the stock's window → 403 RULELIMIT; a reused out_request_no with other parameters → 400
INVALID_REQUEST; a stock of another merchant → 403 NOAUTH; unknown stock or coupon → 404
RESOURCE_NOT_EXISTS; the ±300 s window on requests. One platform key pair per sandbox merchant.

Misbehaviour: `set_misbehaviour(mode, times, latency_ms)` or the form on the page. API modes:
"latency" (sleep, then work normally), "timeout" (sleep, then 504 without working), "5xx" (500
SYSTEM_ERROR without working), "bad_signature" / "signtest" (do the work, sign the answer with a
stray key / a `WECHATPAY/SIGNTEST/` probe). Notification modes: "notify_duplicate" (every delivery
is sent twice), "notify_bad_signature", "notify_signtest". `times` counts calls (-1: all).
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import string
import time
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Callable

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.core.money import MoneyError, yuan_to_fen
from app.core.timeutil import BUSINESS_TZ, as_utc, utcnow
from app.extensions import csrf, db, get_redis
from app.providers.lklapi import certificate_serial, new_key_pair, new_nonce, now_timestamp, sign, signed_text, verify
from app.providers.wechatpay import SIGNATURE_TYPE, SIGNTEST_PREFIX, TIMESTAMP_WINDOW_SECONDS, USE_EVENT, same_serial
from app.sandbox.wechatpay_models import (SandboxWxpayCoupon, SandboxWxpayMerchant, SandboxWxpayNotification,
                                          SandboxWxpayStock)

bp = Blueprint("sandbox_wechatpay", __name__, url_prefix="/sandbox/wechatpay")

RETRY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
NOTIFY_TIMEOUT_SECONDS = 5
DELIVERED_STATUSES = (200, 204)
API_MODES = ("latency", "timeout", "5xx", "bad_signature", "signtest")
NOTIFY_MODES = ("notify_duplicate", "notify_bad_signature", "notify_signtest")
MISBEHAVE_KEYS = {"api": "sandbox:wechatpay:misbehave:api", "notify": "sandbox:wechatpay:misbehave:notify"}
CALLS_KEY = "sandbox:wechatpay:calls"
HISTORY_LENGTH = 20
_AUTH_FIELD = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_OPENID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


class SandboxError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ---- merchants, stocks, coupons (used by the API, the page, the demo and tests) -------------------

def provision_merchant(mchid: str, serial_no: str, cert_pem: str, apiv3_key: str) -> dict[str, str]:
    """Tell the sandbox about a merchant: the certificate (and its serial) its requests are signed
    with and its APIv3 key. Returns the sandbox platform certificate to store on our side:
    {"platform_serial", "platform_cert"}. Provisioning again updates the merchant, keeping the
    platform key. Committed."""
    if not re.fullmatch(r"\d{1,32}", mchid or ""):
        raise ValueError("mchid must be digits")
    if len((apiv3_key or "").encode()) != 32:
        raise ValueError("the APIv3 key must be 32 characters")
    if not same_serial(certificate_serial(cert_pem), serial_no):
        raise ValueError("serial_no is not the serial of the certificate")
    merchant = db.session.execute(select(SandboxWxpayMerchant).filter_by(mchid=mchid)).scalar_one_or_none()
    if merchant is None:
        private_pem, platform_cert, platform_serial = new_key_pair(f"WeChat Pay sandbox platform {mchid}")
        merchant = SandboxWxpayMerchant(mchid=mchid, platform_serial=platform_serial.upper(),
                                        platform_cert=platform_cert)
        merchant.platform_private_key = private_pem
        db.session.add(merchant)
    merchant.merchant_serial_no = serial_no.upper()
    merchant.merchant_cert = cert_pem
    merchant.apiv3_key = apiv3_key
    db.session.commit()
    return {"platform_serial": merchant.platform_serial, "platform_cert": merchant.platform_cert}


def merchant_by_mchid(mchid: str) -> SandboxWxpayMerchant | None:
    return db.session.execute(select(SandboxWxpayMerchant).filter_by(mchid=mchid)).scalar_one_or_none()


def set_notify_url(mchid: str, notify_url: str | None) -> SandboxWxpayMerchant:
    """Where COUPON.USE notifications of this merchant's stocks go (None: nowhere). Committed."""
    merchant = merchant_by_mchid(mchid)
    if merchant is None:
        raise ValueError(f"no sandbox merchant {mchid}")
    merchant.notify_url = notify_url or None
    db.session.commit()
    return merchant


def create_stock(mchid: str, *, coupon_amount_fen: int, max_coupons: int, transaction_minimum_fen: int = 0,
                 max_coupons_per_user: int = 1, name: str | None = None, description: str | None = None,
                 begin_at: datetime | None = None, end_at: datetime | None = None,
                 available_days: int = 30) -> SandboxWxpayStock:
    """Create a running 代金券 stock of a merchant (as the merchant platform would). Committed."""
    merchant = merchant_by_mchid(mchid)
    if merchant is None:
        raise ValueError(f"no sandbox merchant {mchid}")
    if coupon_amount_fen <= 0 or max_coupons <= 0 or max_coupons_per_user <= 0 or transaction_minimum_fen < 0:
        raise ValueError("face value, budget and per-user limit must be positive, the threshold not negative")
    if transaction_minimum_fen and transaction_minimum_fen <= coupon_amount_fen:
        raise ValueError("the threshold must be above the face value")
    begin_at = begin_at or utcnow() - timedelta(minutes=1)
    end_at = end_at or begin_at + timedelta(days=available_days)
    if end_at <= begin_at:
        raise ValueError("the stock must end after it begins")
    stock = SandboxWxpayStock(
        stock_id=_unique_digits(SandboxWxpayStock.stock_id, 8), merchant_id=merchant.id, merchant=merchant,
        name=(name or f"微信支付代金券 {coupon_amount_fen / 100:.2f}元")[:40], description=description,
        coupon_amount_fen=coupon_amount_fen, transaction_minimum_fen=transaction_minimum_fen,
        max_coupons=max_coupons, max_coupons_per_user=max_coupons_per_user, sent_count=0,
        available_begin_at=begin_at, available_end_at=end_at)
    db.session.add(stock)
    db.session.commit()
    return stock


def send_coupon(merchant: SandboxWxpayMerchant, openid: str, fields: dict[str, Any]) -> dict[str, str]:
    """发放代金券 for an authenticated merchant; answers {"coupon_id"} or raises SandboxError. Committed."""
    stock_id, out_request_no, appid, creator = (str(fields.get(name) or "").strip() for name in
                                                ("stock_id", "out_request_no", "appid", "stock_creator_mchid"))
    missing = [name for name, value in (("stock_id", stock_id), ("out_request_no", out_request_no),
                                        ("appid", appid), ("stock_creator_mchid", creator)) if not value]
    if missing or not _OPENID.match(openid) or len(out_request_no) > 128:
        raise SandboxError(400, "PARAM_ERROR", f"参数错误: {', '.join(missing) or 'openid / out_request_no'}")
    stock = db.session.execute(
        select(SandboxWxpayStock).filter_by(stock_id=stock_id).with_for_update(of=SandboxWxpayStock)
        .execution_options(populate_existing=True)).scalar_one_or_none()  # one send per stock at a time
    if stock is None:
        raise SandboxError(404, "RESOURCE_NOT_EXISTS", "批次不存在")
    if stock.merchant.mchid != creator:
        raise SandboxError(400, "INVALID_REQUEST", "批次号与创建批次的商户号不匹配")
    if stock.merchant_id != merchant.id:
        raise SandboxError(403, "NOAUTH", "商户无权发放该批次")
    earlier = db.session.execute(select(SandboxWxpayCoupon).filter_by(
        sender_mchid=merchant.mchid, out_request_no=out_request_no)).scalar_one_or_none()
    if earlier is not None:
        return _repeat(earlier, stock, openid, appid)
    _check_can_send(stock, openid)
    coupon = SandboxWxpayCoupon(coupon_id=_unique_digits(SandboxWxpayCoupon.coupon_id, 11), stock_pk=stock.id,
                                sender_mchid=merchant.mchid, out_request_no=out_request_no, appid=appid,
                                openid=openid, status="SENDED")
    stock.sent_count += 1
    db.session.add(coupon)
    try:
        db.session.commit()
    except IntegrityError:  # a twin with the same out_request_no won (where rows are not locked, e.g. SQLite)
        db.session.rollback()
        twin = db.session.execute(select(SandboxWxpayCoupon).filter_by(
            sender_mchid=merchant.mchid, out_request_no=out_request_no)).scalar_one()
        return _repeat(twin, twin.stock, openid, appid)
    return {"coupon_id": coupon.coupon_id}


def _repeat(earlier: SandboxWxpayCoupon, stock: SandboxWxpayStock, openid: str, appid: str) -> dict[str, str]:
    if earlier.stock_pk != stock.id or earlier.openid != openid or earlier.appid != appid:
        raise SandboxError(400, "INVALID_REQUEST", "商户单据号重复，且请求参数与原请求不一致")
    answer = {"coupon_id": earlier.coupon_id}
    db.session.rollback()  # release the stock lock; nothing changes
    return answer


def _check_can_send(stock: SandboxWxpayStock, openid: str) -> None:
    now = utcnow()
    if not as_utc(stock.available_begin_at) <= now < as_utc(stock.available_end_at):
        raise SandboxError(403, "RULELIMIT", "批次不在可发放时间内")
    held = db.session.scalar(select(func.count()).select_from(SandboxWxpayCoupon)
                             .filter_by(stock_pk=stock.id, openid=openid))
    if held >= stock.max_coupons_per_user:
        raise SandboxError(403, "RULELIMIT", "用户领取已达上限")
    if stock.sent_count >= stock.max_coupons:
        raise SandboxError(403, "NOT_ENOUGH", "批次预算耗尽")


def coupon_status(coupon: SandboxWxpayCoupon, now: datetime | None = None) -> str:
    """SENDED / USED / EXPIRED: an unused coupon expires with its stock's window."""
    if coupon.status == "SENDED" and (now or utcnow()) >= as_utc(coupon.stock.available_end_at):
        return "EXPIRED"
    return coupon.status


def coupon_json(coupon: SandboxWxpayCoupon) -> dict[str, Any]:
    """The coupon as 查询代金券详情 and the COUPON.USE resource describe it."""
    stock = coupon.stock
    data: dict[str, Any] = {
        "stock_creator_mchid": stock.merchant.mchid,
        "stock_id": stock.stock_id,
        "coupon_id": coupon.coupon_id,
        "coupon_name": stock.name,
        "status": coupon_status(coupon),
        "description": stock.description or "",
        "create_time": _rfc3339(coupon.created_at),
        "coupon_type": "NORMAL",
        "no_cash": False,
        "singleitem": False,
        "available_begin_time": _rfc3339(stock.available_begin_at),
        "available_end_time": _rfc3339(stock.available_end_at),
        "normal_coupon_information": {"coupon_amount": stock.coupon_amount_fen,
                                      "transaction_minimum": stock.transaction_minimum_fen},
    }
    if coupon.status == "USED":
        data["consume_information"] = {"consume_time": _rfc3339(coupon.consume_time),
                                       "consume_mchid": coupon.consume_mchid,
                                       "transaction_id": coupon.transaction_id, "goods_detail": []}
    return data


def use_coupon(coupon_id: str, *, consume_mchid: str | None = None,
               transaction_id: str | None = None) -> SandboxWxpayCoupon:
    """A person pays with the coupon: it becomes USED and, when the stock's merchant has a notify URL,
    a COUPON.USE notification is queued and handed to a worker. Committed; ValueError when not usable."""
    coupon = db.session.execute(
        select(SandboxWxpayCoupon).filter_by(coupon_id=coupon_id).with_for_update(of=SandboxWxpayCoupon)
        .execution_options(populate_existing=True)).scalar_one_or_none()
    if coupon is None:
        raise ValueError(f"no coupon {coupon_id}")
    status = coupon_status(coupon)
    if status != "SENDED":
        db.session.rollback()
        raise ValueError(f"coupon {coupon_id} is {status}")
    coupon.status = "USED"
    coupon.consume_time = utcnow().replace(microsecond=0)
    coupon.consume_mchid = consume_mchid or coupon.stock.merchant.mchid
    coupon.transaction_id = transaction_id or "42" + "".join(secrets.choice(string.digits) for _ in range(26))
    notification = _queue_use_notification(coupon)
    db.session.commit()
    if notification is not None:
        _hand_to_worker()
    return coupon


def _queue_use_notification(coupon: SandboxWxpayCoupon) -> SandboxWxpayNotification | None:
    merchant = coupon.stock.merchant
    if not merchant.notify_url:
        return None
    event_id = str(uuid.uuid4())
    envelope = {
        "id": event_id,
        "create_time": _rfc3339(utcnow()),
        "resource_type": "encrypt-resource",
        "event_type": USE_EVENT,
        "summary": "代金券核销通知",
        "resource": encrypt_resource(merchant.apiv3_key, json.dumps(coupon_json(coupon), ensure_ascii=False),
                                     associated_data="coupon", original_type="coupon"),
    }
    notification = SandboxWxpayNotification(event_id=event_id, merchant_id=merchant.id, coupon_pk=coupon.id,
                                            url=merchant.notify_url, body=json.dumps(envelope, ensure_ascii=False),
                                            status="pending", attempts=0, next_attempt_at=utcnow(), history=[])
    db.session.add(notification)
    return notification


def encrypt_resource(apiv3_key: str, plaintext: str, *, associated_data: str,
                     original_type: str | None = None) -> dict[str, str]:
    """AEAD_AES_256_GCM with the APIv3 key: a 12-character nonce, the tag appended to the ciphertext."""
    nonce = new_nonce(12)
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    resource = {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": associated_data, "nonce": nonce}
    if original_type:
        resource["original_type"] = original_type
    return resource


def _hand_to_worker() -> None:
    """Deliver now through a worker; the cron sweep is the safety net when Redis is down."""
    from jobs import queue
    from jobs.sandbox_wechatpay import deliver_wechatpay_sandbox_notifications

    try:
        queue("default").enqueue(deliver_wechatpay_sandbox_notifications)
    except Exception:  # noqa: BLE001 - Redis unreachable; the notification waits in its table
        current_app.logger.warning("could not enqueue WeChat Pay sandbox notification delivery")


# ---- notification delivery ---------------------------------------------------------------------

def deliver_due_notifications(*, now: datetime | None = None, http: httpx.Client | None = None,
                              limit: int = 100) -> list[tuple[int, str]]:
    """Attempt every pending notification whose time has come: [(id, status after the attempt)]."""
    now = now or utcnow()
    ids = db.session.scalars(
        select(SandboxWxpayNotification.id).filter_by(status="pending")
        .where(SandboxWxpayNotification.next_attempt_at <= now)
        .order_by(SandboxWxpayNotification.next_attempt_at).limit(limit)).all()
    db.session.rollback()
    outcomes = []
    for notification_id in ids:
        status = deliver_notification(notification_id, now=now, http=http)
        if status is not None:
            outcomes.append((notification_id, status))
    return outcomes


def deliver_notification(notification_id: int, *, now: datetime | None = None,
                         http: httpx.Client | None = None) -> str | None:
    """One attempt at one due notification (skipped when another worker holds it or it is not due).
    Success is HTTP 200 or 204; otherwise the next attempt follows RETRY_SCHEDULE, then it is abandoned."""
    now = now or utcnow()
    row = db.session.execute(
        select(SandboxWxpayNotification).filter_by(id=notification_id, status="pending")
        .with_for_update(skip_locked=True, of=SandboxWxpayNotification)
        .execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None or as_utc(row.next_attempt_at) > now:
        db.session.rollback()
        return None
    bad = _misbehave_now("notify")
    mode = bad["mode"] if bad else None
    client = http or httpx.Client(timeout=NOTIFY_TIMEOUT_SECONDS)
    try:
        http_status, error = _post_notification(client, row, mode)
        if mode == "notify_duplicate":
            _post_notification(client, row, None)  # the same event again, signed afresh
    finally:
        if http is None:
            client.close()
    _record_attempt(row, http_status, error, now)
    db.session.commit()
    return row.status


def _post_notification(client: httpx.Client, row: SandboxWxpayNotification,
                       mode: str | None) -> tuple[int | None, str | None]:
    body = row.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Mozilla/4.0",
               **_signed_headers(row.merchant, body, {"notify_bad_signature": "bad_signature",
                                                      "notify_signtest": "signtest"}.get(mode or ""))}
    try:
        answer = client.post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if answer.status_code in DELIVERED_STATUSES:
        return answer.status_code, None
    return answer.status_code, answer.text[:500] or f"HTTP {answer.status_code}"


def _record_attempt(row: SandboxWxpayNotification, http_status: int | None, error: str | None, now: datetime) -> None:
    row.attempts += 1
    row.last_http_status = http_status
    row.last_error = error
    row.history = (row.history or [])[-(HISTORY_LENGTH - 1):] + [
        {"at": _rfc3339(now), "status": http_status, "error": error}]
    if error is None:
        row.status = "delivered"
        row.delivered_at = now
    elif row.attempts > len(RETRY_SCHEDULE):
        row.status = "abandoned"
    else:
        row.next_attempt_at = now + timedelta(seconds=RETRY_SCHEDULE[row.attempts - 1])


# ---- signatures ---------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _stray_key() -> str:
    """A key WeChat Pay never signs with, for the bad-signature misbehaviour."""
    return new_key_pair("stray key")[0]


def _signed_headers(merchant: SandboxWxpayMerchant, body: bytes, mode: str | None = None) -> dict[str, str]:
    timestamp, nonce = now_timestamp(), new_nonce()
    key = _stray_key() if mode == "bad_signature" else merchant.platform_private_key
    signature = sign(key, signed_text(timestamp, nonce, body))
    if mode == "signtest":
        signature = SIGNTEST_PREFIX + signature
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
            "Wechatpay-Serial": merchant.platform_serial, "Wechatpay-Signature-Type": SIGNATURE_TYPE}


def _canonical_url() -> str:
    """The URL as signed: from `/v3/` on, with the query exactly as sent."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path.rstrip("?")
    return raw[raw.find("/v3/"):]


def _authenticated_merchant() -> SandboxWxpayMerchant:
    header = request.headers.get("Authorization", "")
    if not header.startswith(SIGNATURE_TYPE + " "):
        raise SandboxError(401, "SIGN_ERROR", "Authorization 认证类型不是 WECHATPAY2-SHA256-RSA2048")
    fields = dict(_AUTH_FIELD.findall(header[len(SIGNATURE_TYPE):]))
    missing = [name for name in ("mchid", "nonce_str", "signature", "timestamp", "serial_no") if not fields.get(name)]
    if missing:
        raise SandboxError(401, "SIGN_ERROR", f"Authorization 缺少 {', '.join(missing)}")
    merchant = merchant_by_mchid(fields["mchid"])
    if merchant is None:
        raise SandboxError(401, "SIGN_ERROR", "商户号不存在")
    if not same_serial(fields["serial_no"], merchant.merchant_serial_no):
        raise SandboxError(401, "SIGN_ERROR", "商户证书序列号有误")
    try:
        skew = abs(time.time() - int(fields["timestamp"]))
    except ValueError:
        skew = TIMESTAMP_WINDOW_SECONDS + 1
    if skew > TIMESTAMP_WINDOW_SECONDS:
        raise SandboxError(401, "SIGN_ERROR", "请求时间戳已过期")
    message = signed_text(request.method, _canonical_url(), fields["timestamp"], fields["nonce_str"],
                          request.get_data())
    if not verify(merchant.merchant_cert, message, fields["signature"]):
        raise SandboxError(401, "SIGN_ERROR", "签名错误")
    return merchant


# ---- the API --------------------------------------------------------------------------------------

def _answer(payload: dict[str, Any], status: int = 200, merchant: SandboxWxpayMerchant | None = None,
            mode: str | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    response = Response(body, status=status, content_type="application/json; charset=utf-8")
    response.headers["Request-ID"] = secrets.token_hex(16)
    if merchant is not None:
        response.headers.update(_signed_headers(merchant, body, mode))
    return response


def _api(handler: Callable[[SandboxWxpayMerchant], dict[str, Any]]) -> Response:
    get_redis().incr(CALLS_KEY)
    bad = _misbehave_now("api")
    mode = bad["mode"] if bad else None
    if mode == "5xx":
        return _answer({"code": "SYSTEM_ERROR", "message": "sandbox: told to fail"}, 500)
    if mode in ("latency", "timeout"):
        time.sleep(bad["latency_ms"] / 1000)
        if mode == "timeout":
            return _answer({"code": "SYSTEM_ERROR", "message": "sandbox: told to time out"}, 504)
    try:
        merchant = _authenticated_merchant()
    except SandboxError as exc:
        db.session.rollback()
        return _answer({"code": exc.code, "message": exc.message}, exc.status)
    try:
        payload, status = handler(merchant), 200
    except SandboxError as exc:
        db.session.rollback()
        payload, status = {"code": exc.code, "message": exc.message}, exc.status
    return _answer(payload, status, merchant, mode)


def _json_body() -> dict[str, Any]:
    try:
        data = json.loads(request.get_data() or b"{}")
    except ValueError:
        raise SandboxError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from None
    if not isinstance(data, dict):
        raise SandboxError(400, "PARAM_ERROR", "请求体不是 JSON 对象")
    return data


@bp.get("/v3/certificates")
def certificates():
    def handle(merchant: SandboxWxpayMerchant) -> dict[str, Any]:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(merchant.platform_cert.encode())
        return {"data": [{
            "serial_no": merchant.platform_serial,
            "effective_time": _rfc3339(cert.not_valid_before_utc),
            "expire_time": _rfc3339(cert.not_valid_after_utc),
            "encrypt_certificate": encrypt_resource(merchant.apiv3_key, merchant.platform_cert,
                                                    associated_data="certificate"),
        }]}

    return _api(handle)


@bp.post("/v3/marketing/favor/users/<openid>/coupons")
@csrf.exempt
def send(openid: str):
    return _api(lambda merchant: send_coupon(merchant, openid, _json_body()))


@bp.get("/v3/marketing/favor/users/<openid>/coupons/<coupon_id>")
def query(openid: str, coupon_id: str):
    def handle(merchant: SandboxWxpayMerchant) -> dict[str, Any]:
        coupon = db.session.execute(select(SandboxWxpayCoupon).filter_by(coupon_id=coupon_id)).scalar_one_or_none()
        if (coupon is None or coupon.openid != openid or coupon.appid != request.args.get("appid")
                or merchant.mchid not in (coupon.sender_mchid, coupon.stock.merchant.mchid)):
            raise SandboxError(404, "RESOURCE_NOT_EXISTS", "代金券不存在")
        return coupon_json(coupon)

    return _api(handle)


@bp.post("/v3/marketing/favor/callbacks")
@csrf.exempt
def callbacks():
    def handle(merchant: SandboxWxpayMerchant) -> dict[str, Any]:
        data = _json_body()
        url = str(data.get("notify_url") or "")
        if str(data.get("mchid") or "") != merchant.mchid:
            raise SandboxError(400, "PARAM_ERROR", "mchid 与请求商户号不一致")
        if not url.startswith(("https://", "http://")):
            raise SandboxError(400, "PARAM_ERROR", "notify_url 格式错误")
        merchant.notify_url = url if data.get("switch", True) else None
        db.session.commit()
        return {"update_time": _rfc3339(utcnow()), "notify_url": url}

    return _api(handle)


# ---- misbehaviour -----------------------------------------------------------------------------

def set_misbehaviour(mode: str | None, times: int = -1, latency_ms: int = 0) -> None:
    """Make the next `times` calls (-1: all) of the mode's kind (API answers or notification
    deliveries) misbehave; mode None or "" makes everything behave again."""
    redis = get_redis()
    if not mode:
        redis.delete(*MISBEHAVE_KEYS.values())
        return
    if mode not in API_MODES + NOTIFY_MODES:
        raise ValueError(f"mode must be one of {API_MODES + NOTIFY_MODES}")
    key = MISBEHAVE_KEYS["notify" if mode in NOTIFY_MODES else "api"]
    redis.delete(key)
    redis.hset(key, mapping={"mode": mode, "remaining": int(times), "latency_ms": int(latency_ms)})


def misbehaviour() -> dict[str, dict[str, Any]]:
    """{"api": {...}, "notify": {...}} of what is set now (empty dicts when behaving)."""
    settings = {}
    for kind, key in MISBEHAVE_KEYS.items():
        raw = {k.decode(): v.decode() for k, v in get_redis().hgetall(key).items()}
        settings[kind] = ({"mode": raw["mode"], "remaining": int(raw["remaining"]),
                           "latency_ms": int(raw["latency_ms"])} if raw else {})
    return settings


def call_count() -> int:
    return int(get_redis().get(CALLS_KEY) or 0)


def _misbehave_now(kind: str) -> dict[str, Any] | None:
    """The misbehaviour this call must show, consuming one of its `times` atomically."""
    setting = misbehaviour()[kind]
    if not setting:
        return None
    if setting["remaining"] == -1:
        return setting
    left = get_redis().hincrby(MISBEHAVE_KEYS[kind], "remaining", -1)
    return setting if left >= 0 else None


# ---- helpers ------------------------------------------------------------------------------------

def _rfc3339(value: datetime | None) -> str | None:
    """2019-12-26T20:58:27+08:00 (WeChat Pay writes Beijing time with its offset)."""
    return as_utc(value).astimezone(BUSINESS_TZ).isoformat(timespec="seconds") if value else None


def _unique_digits(column, length: int) -> str:
    while True:
        value = str(secrets.randbelow(9 * 10 ** (length - 1)) + 10 ** (length - 1))
        if not db.session.execute(select(column).where(column == value)).first():
            return value


# ---- the human page -----------------------------------------------------------------------------

@bp.get("/")
def index():
    merchants = db.session.scalars(select(SandboxWxpayMerchant).order_by(SandboxWxpayMerchant.mchid)).all()
    stocks = db.session.scalars(select(SandboxWxpayStock).order_by(SandboxWxpayStock.id.desc()).limit(50)).all()
    coupons = db.session.scalars(select(SandboxWxpayCoupon).order_by(SandboxWxpayCoupon.id.desc()).limit(50)).all()
    notifications = db.session.scalars(select(SandboxWxpayNotification)
                                       .order_by(SandboxWxpayNotification.id.desc()).limit(50)).all()
    return render_template("sandbox/wechatpay.html", merchants=merchants, stocks=stocks, coupons=coupons,
                           notifications=notifications, coupon_status=coupon_status, misbehaviour=misbehaviour(),
                           calls=call_count(), api_modes=API_MODES, notify_modes=NOTIFY_MODES)


@bp.post("/stocks")
def new_stock():
    form = request.form
    try:
        create_stock(form.get("mchid", ""), name=form.get("name") or None,
                     coupon_amount_fen=yuan_to_fen(form.get("coupon_amount")) or 0,
                     transaction_minimum_fen=yuan_to_fen(form.get("transaction_minimum")) or 0,
                     max_coupons=form.get("max_coupons", 0, type=int),
                     max_coupons_per_user=form.get("max_coupons_per_user", 1, type=int),
                     available_days=form.get("available_days", 30, type=int))
    except (MoneyError, ValueError) as exc:
        flash(_("The stock was not created: %(reason)s", reason=str(exc)), "error")
        return redirect(url_for(".index"))
    flash(_("Stock created."), "success")
    return redirect(url_for(".index"))


@bp.post("/coupons/<coupon_id>/use")
def use(coupon_id: str):
    try:
        coupon = use_coupon(coupon_id)
    except ValueError as exc:
        flash(_("The coupon cannot be used: %(reason)s", reason=str(exc)), "error")
        return redirect(url_for(".index"))
    flash(_("Coupon %(coupon)s used in transaction %(transaction)s.", coupon=coupon.coupon_id,
            transaction=coupon.transaction_id), "success")
    return redirect(url_for(".index"))


@bp.post("/notifications/deliver")
def deliver_now():
    outcomes = deliver_due_notifications()
    flash(_("%(count)s due notifications attempted.", count=len(outcomes)), "success")
    return redirect(url_for(".index"))


@bp.post("/misbehave")
def misbehave():
    form = request.form
    try:
        set_misbehaviour(form.get("mode") or None, form.get("times", -1, type=int), form.get("latency_ms", 0, type=int))
    except ValueError:
        flash(_("Unknown misbehaviour."), "error")
    else:
        flash(_("Misbehaviour set.") if form.get("mode") else _("The sandbox behaves normally again."), "success")
    return redirect(url_for(".index"))
