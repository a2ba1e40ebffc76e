"""The Douyin 生活服务 sandbox: Douyin's side of the certificate protocol, at /sandbox/douyin/.

Point a `DouyinClient` at `<site>/sandbox/douyin` with the sandbox app below (created on first
use, and by `seed_sandbox_skus()`):

    client_key    = "awsandboxgym0001"
    client_secret = "sandbox-douyin-secret-0001"

API (CSRF-exempt, JSON, answers in Douyin's wrapper, codes from `app.providers.douyin`):
`POST oauth/client_token/`, `GET goodlife/v1/fulfilment/certificate/prepare/`,
`POST .../verify/`, `POST .../cancel/`, `GET .../get/`, and, **assumed** (not in our protocol notes),
`GET goodlife/v1/trade/order/query/` and `GET .../verify_record/query/` for the order sync and
the reconciliation (see `DouyinClient.query_orders` / `query_verify_records`). State lives in sandbox_douyin_* tables;
the rules hold under concurrency on PostgreSQL (a verify_token is consumed by a conditional
update, a certificate is verified and a verification cancelled under a row lock). A verify_token
is good for 30 minutes and one verify of the certificate its prepare named; a verification can
be cancelled for one hour (tests age one by editing `SandboxDouyinVerification.verified_at`).

`POST misbehave` (JSON) makes the API misbehave: `latency_ms` (delay, then answer normally),
`status` (answer that HTTP status, e.g. 500 or 503, without doing anything), `timeout_seconds`
(hang that long, then answer 504 without doing anything), optionally limited to some calls
(`only`: ["token", "prepare", "verify", "cancel", "get", "orders", "verify_records"]) and to the next `times` calls; an
empty body clears it. Every API call is counted per call name (`call_count`), so tests can see
how often a client tried.

Short links: `GET s/<slug>/` plays v.douyin.com, the address a buyer's QR code holds; it answers
302 to `voucher/?object_id=<encrypted_code>`, the page the buyer would see, whose object_id is
prepare's `encrypted_data` (see `DouyinClient.resolve_short_link`).

The page `GET /sandbox/douyin/` lists the skus and certificates and lets a person buy a
certificate (a browser form, CSRF-protected) or refund one; the typed code and the short link
are shown there.
"""
from __future__ import annotations

import hmac
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.core import crypto
from app.core.permissions import permission_required
from app.core.timeutil import as_utc, utcnow
from app.extensions import csrf, db, get_redis
from app.providers.douyin import (ASSUMED_CODES, BAD_PARAMETER, CREDENTIALS_INVALID, STATUS_NUMBERS, TOKEN_EXPIRED,
                                  TOKEN_INVALID, AssumedCode)
from app.sandbox.douyin_models import (SandboxDouyinApp, SandboxDouyinCertificate, SandboxDouyinSku,
                                       SandboxDouyinToken, SandboxDouyinVerification, SandboxDouyinVerifyToken)

bp = Blueprint("sandbox_douyin", __name__, url_prefix="/sandbox/douyin")

SANDBOX_CLIENT_KEY = "awsandboxgym0001"
SANDBOX_CLIENT_SECRET = "sandbox-douyin-secret-0001"
CANCEL_WINDOW = timedelta(hours=1)
VERIFY_TOKEN_TTL = timedelta(minutes=30)
CERT_API = "/goodlife/v1/fulfilment/certificate"
MISBEHAVE_KEY = "sandbox:douyin:misbehave"
MISBEHAVE_LEFT_KEY = "sandbox:douyin:misbehave:left"
CALLS_KEY = "sandbox:douyin:calls:"
SLUG_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

SANDBOX_SKUS = (
    # sku_id, title, groupon_type, market price, pay price, times_count, valid days
    ("DYSKU1001", "月卡（30 天）", 1, 39900, 29900, 1, 90),
    ("DYSKU1002", "年卡（365 天）", 1, 299900, 199900, 1, 180),
    ("DYSKU1003", "20 次健身次卡", 3, 120000, 80000, 20, 365),
    ("DYSKU1004", "私教课 10 节", 1, 300000, 199900, 1, 180),
    ("DYSKU1005", "团课体验（单次）", 1, 9900, 4900, 1, 60),
)


# --- seed and service functions (used by the page, the demo seed and tests) ----------------------

def ensure_sandbox_app() -> SandboxDouyinApp:
    """The documented sandbox app, created when missing."""
    app_row = db.session.execute(select(SandboxDouyinApp).filter_by(client_key=SANDBOX_CLIENT_KEY)).scalar_one_or_none()
    if app_row is None:
        app_row = create_app_credentials(SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET, "健身房沙箱应用")
    return app_row


def create_app_credentials(client_key: str, client_secret: str, name: str, token_ttl_seconds: int = 7200) -> SandboxDouyinApp:
    app_row = SandboxDouyinApp(client_key=client_key, client_secret_enc=crypto.encrypt(client_secret), name=name,
                               token_ttl_seconds=token_ttl_seconds)
    db.session.add(app_row)
    try:
        db.session.commit()
    except IntegrityError:  # created at the same moment by another process
        db.session.rollback()
        app_row = db.session.execute(select(SandboxDouyinApp).filter_by(client_key=client_key)).scalar_one()
    return app_row


def seed_sandbox_skus() -> list[SandboxDouyinSku]:
    """The gym's sandbox skus (and the sandbox app); running it again changes nothing."""
    ensure_sandbox_app()
    skus = []
    for sku_id, title, groupon_type, market, pay, times, days in SANDBOX_SKUS:
        sku = db.session.execute(select(SandboxDouyinSku).filter_by(sku_id=sku_id)).scalar_one_or_none()
        if sku is None:
            sku = SandboxDouyinSku(sku_id=sku_id, title=title, groupon_type=groupon_type, market_price_fen=market,
                                   pay_price_fen=pay, times_count=times, valid_days=days)
            db.session.add(sku)
        skus.append(sku)
    try:
        db.session.commit()
    except IntegrityError:  # seeded at the same moment elsewhere: theirs are the same rows
        db.session.rollback()
        return list(db.session.execute(select(SandboxDouyinSku).where(
            SandboxDouyinSku.sku_id.in_([row[0] for row in SANDBOX_SKUS]))).scalars())
    return skus


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def buy_certificate(sku: SandboxDouyinSku, buyer_phone: str | None = None, poi_id: str | None = None,
                    valid_from: datetime | None = None, expire_time: datetime | None = None) -> SandboxDouyinCertificate:
    """A buyer pays for one certificate of `sku` (codes from the CSPRNG)."""
    now = utcnow()
    valid_from = valid_from or now
    cert = SandboxDouyinCertificate(
        certificate_id="7" + _digits(18), code=_digits(12), encrypted_code="CgYI" + secrets.token_urlsafe(30),
        sku_pk=sku.id, sku=sku, order_id="10" + _digits(17),
        buyer_phone_masked=crypto.mask_phone(crypto.normalise_phone(buyer_phone)) or None,
        status="unused", times_count=sku.times_count, times_used=0, poi_id=poi_id or None,
        valid_from=valid_from, expire_time=expire_time or valid_from + timedelta(days=sku.valid_days))
    db.session.add(cert)
    db.session.commit()
    return cert


def refund_certificate(cert: SandboxDouyinCertificate) -> bool:
    changed = db.session.execute(update(SandboxDouyinCertificate)
                                 .where(SandboxDouyinCertificate.id == cert.id,
                                        SandboxDouyinCertificate.status == "unused")
                                 .values(status="refunded")).rowcount
    db.session.commit()
    return bool(changed)


def set_misbehave(latency_ms: int = 0, status: int = 0, timeout_seconds: float = 0, only: list[str] | None = None,
                  times: int | None = None) -> None:
    """Make the API misbehave (shared by every process through Redis); all zero clears it."""
    redis = get_redis()
    redis.delete(MISBEHAVE_KEY, MISBEHAVE_LEFT_KEY)
    if not (latency_ms or status or timeout_seconds):
        return
    redis.set(MISBEHAVE_KEY, json.dumps({"latency_ms": int(latency_ms), "status": int(status),
                                         "timeout_seconds": float(timeout_seconds), "only": only}))
    if times is not None:
        redis.set(MISBEHAVE_LEFT_KEY, int(times))


def clear_misbehave() -> None:
    set_misbehave()


def call_count(name: str) -> int:
    """How many times the API call `name` (token, prepare, verify, cancel, get) was received."""
    return int(get_redis().get(CALLS_KEY + name) or 0)


def effective_status(cert: SandboxDouyinCertificate, now: datetime) -> str:
    if cert.status == "unused" and as_utc(cert.expire_time) <= now:
        return "expired"
    return cert.status


def refusal(cert: SandboxDouyinCertificate | None, now: datetime, poi_id: str | None = None) -> AssumedCode | None:
    """Why this certificate cannot be verified now (at `poi_id`, when given), or None."""
    if cert is None:
        return ASSUMED_CODES["not_found"]
    status = effective_status(cert, now)
    if status == "refunded":
        return ASSUMED_CODES["refunded"]
    if status == "expired":
        return ASSUMED_CODES["expired"]
    if status == "used" or cert.times_used >= cert.times_count:
        return ASSUMED_CODES["already_used"]
    if as_utc(cert.valid_from) > now:
        return ASSUMED_CODES["not_yet_valid"]
    if poi_id is not None and cert.poi_id and cert.poi_id != poi_id:
        return ASSUMED_CODES["not_valid_here"]
    return None


# --- protocol plumbing -----------------------------------------------------------------------------

def answer(error_code: int = 0, description: str = "", http_status: int = 200, **data: Any):
    """Douyin's wrapper."""
    body = {"data": {"error_code": error_code, "description": description, **data},
            "extra": {"error_code": error_code, "description": description, "sub_error_code": 0,
                      "sub_description": "", "logid": secrets.token_hex(16), "now": int(time.time() * 1000)}}
    return jsonify(body), http_status


def refuse(code: AssumedCode, **data: Any):
    return answer(code.error_code, code.description, **data)


def _misbehaving(call: str):
    """Count the call, then apply the misbehave setting: a response to send instead, or None."""
    redis = get_redis()
    redis.incr(CALLS_KEY + call)
    raw = redis.get(MISBEHAVE_KEY)
    if not raw:
        return None
    setting = json.loads(raw)
    if setting.get("only") and call not in setting["only"]:
        return None
    if redis.exists(MISBEHAVE_LEFT_KEY) and redis.decr(MISBEHAVE_LEFT_KEY) < 0:
        return None
    if setting.get("timeout_seconds"):
        time.sleep(setting["timeout_seconds"])
        return jsonify({"message": "gateway timeout"}), 504
    if setting.get("latency_ms"):
        time.sleep(setting["latency_ms"] / 1000)
    if setting.get("status"):
        return jsonify({"message": "sandbox misbehaving"}), int(setting["status"])
    return None


def api(call: str, needs_token: bool = True):
    """An API view: CSRF-exempt, counted, misbehaving on demand, token-checked."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            bad = _misbehaving(call)
            if bad is not None:
                return bad
            if needs_token:
                token = request.headers.get("access-token", "")
                row = db.session.execute(select(SandboxDouyinToken).filter_by(access_token=token)).scalar_one_or_none() if token else None
                if row is None:
                    return answer(TOKEN_INVALID, "access_token is invalid")
                if as_utc(row.expires_at) <= utcnow():
                    return answer(TOKEN_EXPIRED, "access_token has expired")
                g.douyin_client_key = row.client_key
            return view(*args, **kwargs)

        return csrf.exempt(wrapper)

    return decorate


def _body() -> dict[str, Any]:
    if request.is_json:
        return request.get_json(silent=True) or {}
    return request.form.to_dict()


def _certificate_json(cert: SandboxDouyinCertificate) -> dict[str, Any]:
    sku = cert.sku
    item = {
        "certificate_id": cert.certificate_id,
        "encrypted_code": cert.encrypted_code,
        "code": cert.code,
        "order_id": cert.order_id,
        "expire_time": int(as_utc(cert.expire_time).timestamp()),
        "start_time": int(as_utc(cert.valid_from).timestamp()),
        "buyer_phone_masked": cert.buyer_phone_masked,
        "sku": {"sku_id": sku.sku_id, "title": sku.title, "groupon_type": sku.groupon_type,
                "market_price": sku.market_price_fen, "account_id": "", "sold_start_time": 0},
        "amount": {"original_amount": sku.market_price_fen, "pay_amount": sku.pay_price_fen,
                   "merchant_ticket_amount": 0, "list_market_amount": sku.market_price_fen,
                   "platform_discount_amount": 0, "payment_discount_amount": 0, "coupon_pay_amount": sku.pay_price_fen},
    }
    if sku.groupon_type == 3:
        item["time_card"] = {"times_count": cert.times_count, "times_used": cert.times_used}
    return item


# --- the API -------------------------------------------------------------------------------------

@bp.post("/oauth/client_token/")
@api("token", needs_token=False)
def client_token():
    body = _body()
    if body.get("grant_type") != "client_credential" or not body.get("client_key") or not body.get("client_secret"):
        return answer(BAD_PARAMETER, "client_key, client_secret and grant_type=client_credential are required")
    ensure_sandbox_app()
    app_row = db.session.execute(select(SandboxDouyinApp).filter_by(client_key=body["client_key"])).scalar_one_or_none()
    secret = crypto.decrypt(app_row.client_secret_enc) if app_row else ""
    if app_row is None or not hmac.compare_digest(secret.encode(), str(body["client_secret"]).encode()):
        return answer(CREDENTIALS_INVALID, "client_key or client_secret is invalid")
    token = "clt." + secrets.token_hex(24)
    db.session.add(SandboxDouyinToken(access_token=token, client_key=app_row.client_key,
                                      expires_at=utcnow() + timedelta(seconds=app_row.token_ttl_seconds)))
    db.session.commit()
    return answer(access_token=token, expires_in=app_row.token_ttl_seconds)


@bp.get(f"{CERT_API}/prepare/")
@api("prepare")
def prepare():
    code, encrypted = request.args.get("code", "").strip(), request.args.get("encrypted_data", "").strip()
    if bool(code) == bool(encrypted):
        return answer(BAD_PARAMETER, "give exactly one of code and encrypted_data")
    column = SandboxDouyinCertificate.code if code else SandboxDouyinCertificate.encrypted_code
    cert = db.session.execute(select(SandboxDouyinCertificate).where(column == (code or encrypted))).scalar_one_or_none()
    now = utcnow()
    refused = refusal(cert, now)
    if refused:
        return refuse(refused)
    token = SandboxDouyinVerifyToken(verify_token=secrets.token_urlsafe(24), client_key=g.douyin_client_key,
                                     certificate_ids=[cert.id], expires_at=now + VERIFY_TOKEN_TTL)
    db.session.add(token)
    db.session.commit()
    return answer(verify_token=token.verify_token, order_id=cert.order_id, certificates=[_certificate_json(cert)])


@bp.post(f"{CERT_API}/verify/")
@api("verify")
def verify():
    body = _body()
    verify_token, poi_id = body.get("verify_token"), body.get("poi_id")
    encrypted_codes, codes = body.get("encrypted_codes") or [], body.get("codes") or []
    if (not verify_token or not poi_id or not isinstance(encrypted_codes, list) or not isinstance(codes, list)
            or not (encrypted_codes or codes) or not all(isinstance(c, str) for c in encrypted_codes + codes)):
        return answer(BAD_PARAMETER, "verify_token, poi_id and encrypted_codes (or codes) are required")
    now = utcnow()
    # Single use: whoever flips used_at first owns the token; the other verify finds it used.
    consumed = db.session.execute(
        update(SandboxDouyinVerifyToken)
        .where(SandboxDouyinVerifyToken.verify_token == verify_token, SandboxDouyinVerifyToken.used_at.is_(None),
               SandboxDouyinVerifyToken.expires_at > now, SandboxDouyinVerifyToken.client_key == g.douyin_client_key)
        .values(used_at=now)
        .returning(SandboxDouyinVerifyToken.certificate_ids)).first()
    if consumed is None:
        db.session.rollback()
        return refuse(ASSUMED_CODES["verify_token_invalid"])
    allowed = set(consumed[0])
    results: list[dict[str, Any]] = []
    for kind, value in [("encrypted", c) for c in encrypted_codes] + [("code", c) for c in codes]:
        column = SandboxDouyinCertificate.encrypted_code if kind == "encrypted" else SandboxDouyinCertificate.code
        cert = db.session.execute(select(SandboxDouyinCertificate).where(column == value).with_for_update(of=SandboxDouyinCertificate)
                                  .execution_options(populate_existing=True)).unique().scalar_one_or_none()
        refused = (ASSUMED_CODES["verify_token_invalid"] if cert is not None and cert.id not in allowed
                   else refusal(cert, now, poi_id))
        if refused:
            results.append({"result": refused.result, "msg": refused.description, "code": value,
                            "origin_code": cert.code if cert else "", "verify_id": "",
                            "certificate_id": cert.certificate_id if cert else ""})
            continue
        cert.times_used += 1
        if cert.times_used >= cert.times_count:
            cert.status = "used"
        verification = SandboxDouyinVerification(verify_id="70" + _digits(17), certificate_pk=cert.id,
                                                 poi_id=str(poi_id), verified_at=now)
        db.session.add(verification)
        results.append({"result": 0, "msg": "", "code": value, "origin_code": cert.code,
                        "verify_id": verification.verify_id, "certificate_id": cert.certificate_id,
                        "order_id": cert.order_id, "sku_id": cert.sku.sku_id, "account_id": ""})
    db.session.commit()
    first_refusal = next((r for r in results if r["result"] != 0), None)
    if first_refusal and all(r["result"] != 0 for r in results):
        code = next(c for c in ASSUMED_CODES.values() if c.result == first_refusal["result"])
        return answer(code.error_code, code.description, verify_results=results)
    return answer(verify_results=results)


@bp.post(f"{CERT_API}/cancel/")
@api("cancel")
def cancel():
    body = _body()
    verify_id, certificate_id = body.get("verify_id"), body.get("certificate_id")
    if not verify_id or not certificate_id:
        return answer(BAD_PARAMETER, "verify_id and certificate_id are required")
    verification = db.session.execute(
        select(SandboxDouyinVerification).filter_by(verify_id=str(verify_id)).with_for_update()
        .execution_options(populate_existing=True)).scalar_one_or_none()
    cert = None
    if verification is not None:
        cert = db.session.execute(select(SandboxDouyinCertificate).where(
            SandboxDouyinCertificate.id == verification.certificate_pk).with_for_update(of=SandboxDouyinCertificate)
            .execution_options(populate_existing=True)).unique().scalar_one()
    if verification is None or cert.certificate_id != str(certificate_id):
        db.session.rollback()
        return refuse(ASSUMED_CODES["not_found"])
    now = utcnow()
    if verification.cancelled_at is not None:
        db.session.rollback()
        return refuse(ASSUMED_CODES["already_cancelled"])
    if now - as_utc(verification.verified_at) > CANCEL_WINDOW:
        db.session.rollback()
        return refuse(ASSUMED_CODES["cancel_window_passed"])
    verification.cancelled_at = now
    cert.times_used -= 1
    if cert.status == "used":
        cert.status = "unused"
    db.session.commit()
    return answer()


@bp.get(f"{CERT_API}/get/")
@api("get")
def get_certificate():
    encrypted = request.args.get("encrypted_code", "").strip()
    if not encrypted:
        return answer(BAD_PARAMETER, "encrypted_code is required")
    cert = db.session.execute(select(SandboxDouyinCertificate).filter_by(encrypted_code=encrypted)).scalar_one_or_none()
    if cert is None:
        return refuse(ASSUMED_CODES["not_found"])
    records = db.session.execute(select(SandboxDouyinVerification).filter_by(certificate_pk=cert.id)
                                 .order_by(SandboxDouyinVerification.verified_at)).scalars()
    item = _certificate_json(cert)
    item["status"] = STATUS_NUMBERS[effective_status(cert, utcnow())]
    item["time_card"] = {"times_count": cert.times_count, "times_used": cert.times_used}
    item["verify_records"] = [{"verify_id": v.verify_id, "poi_id": v.poi_id,
                               "verify_time": int(as_utc(v.verified_at).timestamp()),
                               "cancelled": v.cancelled_at is not None} for v in records]
    return answer(certificate=item)


def _page_args() -> tuple[datetime, datetime, int, int] | None:
    try:
        start = datetime.fromtimestamp(int(request.args["start_time"]), tz=timezone.utc)
        end = datetime.fromtimestamp(int(request.args["end_time"]), tz=timezone.utc)
        page_num = max(1, int(request.args.get("page_num") or 1))
        page_size = min(100, max(1, int(request.args.get("page_size") or 20)))
    except (KeyError, ValueError):
        return None
    return start, end, page_num, page_size


@bp.get("/goodlife/v1/trade/order/query/")
@api("orders")
def query_orders():
    """**Assumed** order query (see `DouyinClient.query_orders`): certificates bought in the window."""
    args = _page_args()
    if args is None:
        return answer(BAD_PARAMETER, "start_time, end_time (Unix seconds), page_num and page_size are required")
    start, end, page_num, page_size = args
    where = [SandboxDouyinCertificate.created_at >= start, SandboxDouyinCertificate.created_at < end]
    poi_id = request.args.get("poi_id")
    if poi_id:
        where.append(or_(SandboxDouyinCertificate.poi_id.is_(None), SandboxDouyinCertificate.poi_id == poi_id))
    total = db.session.scalar(select(func.count()).select_from(SandboxDouyinCertificate).where(*where))
    certs = db.session.execute(select(SandboxDouyinCertificate).where(*where).order_by(SandboxDouyinCertificate.id)
                               .offset((page_num - 1) * page_size).limit(page_size)).unique().scalars().all()
    now = utcnow()
    orders = []
    for cert in certs:
        item = _certificate_json(cert)
        item["status"] = STATUS_NUMBERS[effective_status(cert, now)]
        item["time_card"] = {"times_count": cert.times_count, "times_used": cert.times_used}
        orders.append({"order_id": cert.order_id, "create_time": int(as_utc(cert.created_at).timestamp()),
                       "certificates": [item]})
    return answer(orders=orders, page={"page_num": page_num, "page_size": page_size, "total": total})


@bp.get(f"{CERT_API}/verify_record/query/")
@api("verify_records")
def query_verify_records():
    """**Assumed** verify-record query (see `DouyinClient.query_verify_records`)."""
    args = _page_args()
    if args is None:
        return answer(BAD_PARAMETER, "start_time, end_time (Unix seconds), page_num and page_size are required")
    start, end, page_num, page_size = args
    where = [SandboxDouyinVerification.verified_at >= start, SandboxDouyinVerification.verified_at < end]
    if request.args.get("poi_id"):
        where.append(SandboxDouyinVerification.poi_id == request.args["poi_id"])
    total = db.session.scalar(select(func.count()).select_from(SandboxDouyinVerification).where(*where))
    rows = db.session.execute(select(SandboxDouyinVerification, SandboxDouyinCertificate)
                              .join(SandboxDouyinCertificate,
                                    SandboxDouyinCertificate.id == SandboxDouyinVerification.certificate_pk)
                              .where(*where).order_by(SandboxDouyinVerification.id)
                              .offset((page_num - 1) * page_size).limit(page_size)).unique().all()
    records = [{"verify_id": v.verify_id, "certificate_id": c.certificate_id, "encrypted_code": c.encrypted_code,
                "code": c.code, "poi_id": v.poi_id, "verify_time": int(as_utc(v.verified_at).timestamp()),
                "cancelled": v.cancelled_at is not None} for v, c in rows]
    return answer(records=records, page={"page_num": page_num, "page_size": page_size, "total": total})


# --- short links (what a buyer's QR code holds) --------------------------------------------------

def short_link_slug(cert: SandboxDouyinCertificate) -> str:
    """The path of a certificate's short link: its certificate_id in base 62 (no column needed)."""
    number, digits = int(cert.certificate_id), []
    while number:
        number, rest = divmod(number, 62)
        digits.append(SLUG_ALPHABET[rest])
    return "".join(reversed(digits)) or "0"


def _certificate_id_of(slug: str) -> str | None:
    number = 0
    for char in slug:
        index = SLUG_ALPHABET.find(char)
        if index < 0:
            return None
        number = number * 62 + index
    return str(number)


@bp.get("/s/<slug>/")
def short_link(slug: str):
    """Like v.douyin.com: the short link of a QR code redirects to a page whose URL carries the
    certificate's object_id (its encrypted_code), which is prepare's encrypted_data."""
    certificate_id = _certificate_id_of(slug)
    cert = db.session.execute(select(SandboxDouyinCertificate).filter_by(certificate_id=certificate_id)
                              ).unique().scalar_one_or_none() if certificate_id else None
    if cert is None:
        return answer(BAD_PARAMETER, "no such short link", http_status=404)
    return redirect(url_for(".voucher_page", object_id=cert.encrypted_code, scene="certificate"), code=302)


@bp.get("/voucher/")
def voucher_page():
    """Where a short link lands (the buyer's voucher page in the app); the desk never fetches it."""
    cert = db.session.execute(select(SandboxDouyinCertificate).filter_by(
        encrypted_code=request.args.get("object_id", ""))).unique().scalar_one_or_none()
    if cert is None:
        return answer(BAD_PARAMETER, "no such certificate", http_status=404)
    return answer(certificate={"code": cert.code, "title": cert.sku.title,
                               "status": effective_status(cert, utcnow())})


@bp.post("/misbehave")
@csrf.exempt
@permission_required("platform.manage")
def misbehave():
    body = request.get_json(silent=True) or {}
    try:
        set_misbehave(latency_ms=int(body.get("latency_ms") or 0), status=int(body.get("status") or 0),
                      timeout_seconds=float(body.get("timeout_seconds") or 0), only=body.get("only") or None,
                      times=int(body["times"]) if body.get("times") is not None else None)
    except (TypeError, ValueError):
        return jsonify({"ok": False, "message": "latency_ms, status, times: integers; timeout_seconds: a number"}), 400
    raw = get_redis().get(MISBEHAVE_KEY)
    return jsonify({"ok": True, "misbehave": json.loads(raw) if raw else None})


# --- the human page ------------------------------------------------------------------------------

@bp.get("/")
@permission_required("platform.manage")
def index():
    seed_sandbox_skus()  # a fresh sandbox offers the gym's skus at once
    skus = db.session.execute(select(SandboxDouyinSku).order_by(SandboxDouyinSku.sku_id)).scalars().all()
    certificates = db.session.execute(select(SandboxDouyinCertificate)
                                      .order_by(SandboxDouyinCertificate.id.desc()).limit(100)).unique().scalars().all()
    raw = get_redis().get(MISBEHAVE_KEY)
    return render_template("sandbox/douyin.html", skus=skus, certificates=certificates, now=utcnow(),
                           effective_status=effective_status, short_link_slug=short_link_slug,
                           misbehave_setting=json.loads(raw) if raw else None, client_key=SANDBOX_CLIENT_KEY,
                           client_secret=SANDBOX_CLIENT_SECRET)


@bp.post("/buy")
@permission_required("platform.manage")
def buy():
    sku = db.session.execute(select(SandboxDouyinSku).filter_by(sku_id=request.form.get("sku_id", ""))).scalar_one_or_none()
    if sku is None:
        flash("请选择商品 / Choose a sku.", "danger")
        return redirect(url_for(".index"))
    cert = buy_certificate(sku, buyer_phone=request.form.get("buyer_phone") or None,
                           poi_id=(request.form.get("poi_id") or "").strip() or None)
    flash(f"已购买：{sku.title}，券码 {cert.code}", "success")
    return redirect(url_for(".index"))


@bp.post("/certificates/<certificate_id>/refund")
@permission_required("platform.manage")
def refund(certificate_id: str):
    cert = db.session.execute(select(SandboxDouyinCertificate).filter_by(certificate_id=certificate_id)).unique().scalar_one_or_none()
    if cert is not None and refund_certificate(cert):
        flash(f"已退款：{cert.code}", "success")
    else:
        flash("只有未使用的券可以退款 / Only unused certificates can be refunded.", "warning")
    return redirect(url_for(".index"))
