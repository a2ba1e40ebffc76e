"""云数汇 sandbox: plays Lakala's gateway and 云数汇 under /sandbox/yunshuhui/.

Same envelope, signatures and answers as the real service (PROTOCOLS.md and the **assumed**
items listed in app/providers/yunshuhui.py, which this module plays the same way):

- `POST /sandbox/yunshuhui/api/v3/yunshuhui/coupon/issue` and `.../coupon/query`: the request
  signature is checked exactly (known appid + certificate serial, nonce of 12–32 letters and
  digits, timestamp within ±300 s, SHA256withRSA over the five lines, nonce not seen before);
  refusals answer the gateway's `BBS4xxxx` codes. Every answer is signed with the sandbox's
  platform key (`Lklapi-*` headers).
- Issue validates the fields, is idempotent on (member_id, mer_order_id) (the same order again
  answers the same coupon; the same order with other fields answers 999999), answers PROCESS,
  SUCCESS or FAIL as the issue mode says, and owes an issuance callback to postNotify (a
  PROCESS issue settles after `process_delay_seconds`, to SUCCESS or FAIL).
- `GET /sandbox/yunshuhui/openid/<member_id>?wmcb=URL`: a small page where the visitor picks or
  types a sandbox customer, then is redirected to URL with `openid=…&from=dshy`.
- Redemption: on the console a person "uses" a coupon (order amount) or expires it; the
  redemption callback goes to writeOffNotify. With SANDBOX_YSH_AUTO_REDEEM (on in the demo's
  embedded mode) a cron job uses a fraction of the coupons by itself.
- Callbacks are rows of sandbox_ysh_callbacks, signed with the separate notification key at
  every attempt, retried 1 s, 5 s, 5 s, 10 s, 3 m, 10 m, 20 m, 30 m, 1 h, 2 h after the first
  try until the answer body says `"code":"SUCCESS"`; `deliver_due_callbacks()` sends what is due
  (cron every 2 s, or called directly). Every attempt is recorded and shown.

Misbehaviour (the console's behaviour form or `update_settings`): API latency, HTTP 503,
timeouts (504 after a delay, no work done), badly signed answers (work done); duplicate
callbacks, out-of-order callbacks (issuance held back so a redemption arrives first), a
percentage of callback attempts with bad signatures. `storm()` builds a benchmark's callback
storm. Settings live in Redis (like the other sandboxes' switches); state lives in tables.

Connecting a bank: `provision_merchant(app_id, serial_no, cert_pem, member_id)` registers our
certificate and returns the sandbox's certificates and paths for the TunnelAccount.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random  # simulated outcomes and the seeded storm: nothing here is secret
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence
from urllib.parse import quote, urlsplit

import httpx
from flask import (Blueprint, Response, abort, current_app, flash, make_response, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from app.core import crypto
from app.core.listing import paginate, parse_list_params
from app.core.money import MoneyError, yuan_to_fen
from app.core.permissions import permission_required
from app.core.timeutil import BUSINESS_TZ, as_utc, utcnow
from app.extensions import csrf, db, get_redis
from app.providers import lklapi, tls_context
from app.providers.yunshuhui import (ACK_SUCCESS, CODE_FAILED, CODE_OK, ISSUE_FIELD_LENGTHS, PATH_ISSUE, PATH_QUERY,
                                     RES_NOT_FOUND, callback_body)
from app.sandbox.yunshuhui_models import (SandboxYshActivity, SandboxYshCallback, SandboxYshCallbackAttempt,
                                          SandboxYshCoupon, SandboxYshCustomer, SandboxYshKey, SandboxYshMerchant)

bp = Blueprint("sandbox_yunshuhui", __name__, url_prefix="/sandbox/yunshuhui")

BASE_PATH = "/sandbox/yunshuhui"
RETRY_SCHEDULE = (1, 5, 5, 10, 180, 600, 1200, 1800, 3600, 7200)  # seconds after each failed attempt
TIMESTAMP_WINDOW_SECONDS = 300
NONCE_TTL_SECONDS = 2 * TIMESTAMP_WINDOW_SECONDS
CLAIM_LEASE = timedelta(seconds=60)  # a claimed callback is not picked again for this long
OUT_OF_ORDER_HOLD = timedelta(seconds=30)  # how long an issuance callback is held back
CALLBACK_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
SETTINGS_KEY = "sandbox:ysh:settings"
API_LEFT_KEY = "sandbox:ysh:api_left"
CALLS_KEY = "sandbox:ysh:calls"
NONCE_KEY = "sandbox:ysh:nonce:"
DEFAULT_ACTIVITY = {"title": "沙箱立减券", "face_value_fen": 1000, "threshold_fen": 0, "valid_days": 30}
SANDBOX_MERCHANT_NO = "822290059430001"
SANDBOX_MERCHANT_NAME = "云数汇沙箱商户"

ISSUE_MODES = ("success", "process", "fail", "random")
PROCESS_OUTCOMES = ("success", "fail", "random")
API_MODES = ("latency", "5xx", "timeout", "bad_signature")
DEFAULT_SETTINGS: dict[str, Any] = {
    "issue_mode": "success",  # what an issue answers
    "process_outcome": "success",  # what a PROCESS issue settles to
    "process_delay_seconds": 5,
    "random_success_percent": 60,  # "random" issue mode: this much SUCCESS,
    "random_process_percent": 30,  # this much PROCESS, the rest FAIL
    "fail_msg": "库存不足",
    "api_mode": "",  # "" | latency | 5xx | timeout | bad_signature
    "api_times": -1,  # how many of the next calls misbehave (-1: all)
    "api_latency_ms": 0,
    "cb_duplicates": 0,  # extra copies of every callback
    "cb_out_of_order": 0,  # 1: hold issuance callbacks back so a redemption can arrive first
    "cb_bad_signature_percent": 0,  # share of callback attempts signed badly
}
INT_SETTINGS = {"process_delay_seconds": (0, 86400), "random_success_percent": (0, 100),
                "random_process_percent": (0, 100), "api_times": (-1, 1_000_000), "api_latency_ms": (0, 120_000),
                "cb_duplicates": (0, 20), "cb_out_of_order": (0, 1), "cb_bad_signature_percent": (0, 100)}

# Gateway refusals (**assumed** codes, see app/providers/yunshuhui.py).
BAD_REQUEST = "BBS40000"
BAD_AUTHORIZATION = "BBS40100"
UNKNOWN_CREDENTIALS = "BBS40101"
BAD_SIGNATURE = "BBS40102"
STALE_TIMESTAMP = "BBS40103"
BAD_NONCE = "BBS40104"


class GatewayRefusal(Exception):
    def __init__(self, code: str, msg: str, status: int = 401):
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


class SandboxRefusal(Exception):
    """云数汇 says no (999999), or a person's action on the console is not possible."""

    def __init__(self, msg: str):
        super().__init__(msg)
        self.msg = msg


# ---- keys and merchants -------------------------------------------------------------------------

def ensure_keys() -> dict[str, SandboxYshKey]:
    """The platform and notification key pairs, generated once and kept."""
    keys = {row.purpose: row for row in db.session.execute(select(SandboxYshKey)).scalars()}
    missing = [purpose for purpose in ("platform", "notify") if purpose not in keys]
    for purpose in missing:
        private_pem, cert_pem, serial = lklapi.new_key_pair(f"yunshuhui-sandbox-{purpose}")
        try:
            with db.session.begin_nested():
                db.session.add(SandboxYshKey(purpose=purpose, serial=serial, cert_pem=cert_pem,
                                             private_key_enc=crypto.encrypt(private_pem)))
        except IntegrityError:  # another process made it first
            pass
        keys[purpose] = db.session.execute(select(SandboxYshKey).filter_by(purpose=purpose)).scalar_one()
    if missing:
        db.session.commit()
    return keys


def provision_merchant(app_id: str, serial_no: str, cert_pem: str, member_id: str) -> dict[str, str]:
    """Register a merchant certificate (what a bank does in Lakala's console) and return what our
    TunnelAccount needs: the platform serial and certificate, the notification certificate and
    the paths of the API and of the OpenID page (relative to the site serving the sandbox)."""
    app_id, serial_no, member_id = app_id.strip(), serial_no.strip(), member_id.strip()
    if not app_id or not serial_no:
        raise SandboxRefusal(_("The appid and the certificate serial are required."))
    if not (10 <= len(member_id) <= 20 and member_id.isalnum()):
        raise SandboxRefusal(_("The member id must be 10 to 20 letters or digits."))
    try:
        actual = lklapi.certificate_serial(cert_pem)
    except ValueError:
        raise SandboxRefusal(_("The certificate is not a PEM certificate.")) from None
    if lklapi.same_serial(actual) != lklapi.same_serial(serial_no):
        raise SandboxRefusal(_("The serial does not match the certificate (its serial is %(serial)s).", serial=actual))
    merchant = _merchant(app_id, serial_no)
    if merchant is None:
        merchant = SandboxYshMerchant(app_id=app_id, serial_no=serial_no)
        db.session.add(merchant)
    merchant.cert_pem, merchant.member_id = cert_pem, member_id
    db.session.commit()
    keys = ensure_keys()
    return {"platform_serial": keys["platform"].serial, "platform_cert": keys["platform"].cert_pem,
            "notify_cert": keys["notify"].cert_pem, "base_url_path": BASE_PATH,
            "openid_url_path": f"{BASE_PATH}/openid/{member_id}"}


def connect_tunnel_account(org_id: int, site: str, member_id: str | None = None, app_id: str | None = None):
    """For the demo seed and tests: a fresh key pair for the bank, its certificate registered
    here, and the bank's 云数汇 TunnelAccount (committed) holding this sandbox's certificates and
    URLs under `site` (e.g. "http://127.0.0.1:5000")."""
    from app.coupons.models import TunnelAccount

    private_pem, cert_pem, serial = lklapi.new_key_pair(f"bank-{org_id}")
    member_id = member_id or f"8{org_id:011d}"
    app_id = app_id or f"OP{org_id:08d}"
    info = provision_merchant(app_id, serial, cert_pem, member_id)
    account = TunnelAccount(org_id=org_id, tunnel="yunshuhui", base_url=site.rstrip("/") + info["base_url_path"],
                            openid_url=site.rstrip("/") + info["openid_url_path"], app_id=app_id, serial_no=serial,
                            member_id=member_id, platform_certs={info["platform_serial"]: info["platform_cert"]},
                            notify_cert=info["notify_cert"], status="active")
    account.secrets = {"private_key": private_pem}
    db.session.add(account)
    db.session.commit()
    return account


def _merchant(app_id: str, serial_no: str) -> SandboxYshMerchant | None:
    wanted = lklapi.same_serial(serial_no)
    rows = db.session.execute(select(SandboxYshMerchant).filter_by(app_id=app_id)).scalars()
    return next((row for row in rows if lklapi.same_serial(row.serial_no) == wanted), None)


def define_activity(activity_id: str, title: str = DEFAULT_ACTIVITY["title"], face_value_fen: int = 1000,
                    threshold_fen: int = 0, valid_days: int = 30, stock: int | None = None) -> SandboxYshActivity:
    """Create or change a coupon batch as 云数汇's console would (committed)."""
    if len(activity_id) != 10 or not activity_id.isalnum():
        raise SandboxRefusal(_("The activity id must be 10 letters or digits."))
    if face_value_fen <= 0 or threshold_fen < 0 or valid_days <= 0 or (stock is not None and stock < 0):
        raise SandboxRefusal(_("Face value and validity must be positive; threshold and stock not negative."))
    activity = db.session.execute(select(SandboxYshActivity).filter_by(activity_id=activity_id)).scalar_one_or_none()
    if activity is None:
        activity = SandboxYshActivity(activity_id=activity_id, issued=0)
        db.session.add(activity)
    activity.title, activity.face_value_fen, activity.threshold_fen = title, face_value_fen, threshold_fen
    activity.valid_days, activity.stock = valid_days, stock
    db.session.commit()
    return activity


def ensure_customer(nickname: str) -> SandboxYshCustomer:
    """The sandbox customer of that nickname, created with a fresh openid when new (committed)."""
    nickname = nickname.strip()[:40]
    if not nickname:
        raise SandboxRefusal(_("Type a name for the customer."))
    customer = db.session.execute(select(SandboxYshCustomer).filter_by(nickname=nickname)).scalar_one_or_none()
    if customer is None:
        customer = SandboxYshCustomer(nickname=nickname, openid="oYSH" + secrets.token_urlsafe(21)[:24])
        try:
            with db.session.begin_nested():
                db.session.add(customer)
        except IntegrityError:
            customer = db.session.execute(select(SandboxYshCustomer).filter_by(nickname=nickname)).scalar_one()
        db.session.commit()
    return customer


# ---- settings (misbehaviour switches) ----------------------------------------------------------

def get_settings() -> dict[str, Any]:
    stored = {k.decode(): v.decode() for k, v in get_redis().hgetall(SETTINGS_KEY).items()}
    settings = dict(DEFAULT_SETTINGS)
    for name, value in stored.items():
        if name in INT_SETTINGS:
            settings[name] = int(value)
        elif name in settings:
            settings[name] = value
    return settings


def update_settings(**values: Any) -> dict[str, Any]:
    """Change some switches (validated); unknown names or values raise SandboxRefusal."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name not in DEFAULT_SETTINGS:
            raise SandboxRefusal(f"unknown setting {name}")
        if name in INT_SETTINGS:
            low, high = INT_SETTINGS[name]
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise SandboxRefusal(_("%(name)s must be a whole number.", name=name)) from None
            if not low <= number <= high:
                raise SandboxRefusal(_("%(name)s must be between %(low)s and %(high)s.", name=name, low=low, high=high))
            clean[name] = number
        else:
            choices = {"issue_mode": ISSUE_MODES, "process_outcome": PROCESS_OUTCOMES, "api_mode": ("",) + API_MODES}
            text = str(value or "").strip()
            if name in choices and text not in choices[name]:
                raise SandboxRefusal(_("%(name)s cannot be %(value)s.", name=name, value=text))
            clean[name] = text[:100]
    merged = {**get_settings(), **clean}
    if merged["random_success_percent"] + merged["random_process_percent"] > 100:
        raise SandboxRefusal(_("The random shares of SUCCESS and PROCESS add up to more than 100%."))
    redis = get_redis()
    redis.hset(SETTINGS_KEY, mapping={k: str(v) for k, v in clean.items()})
    if "api_mode" in clean or "api_times" in clean:
        redis.set(API_LEFT_KEY, merged["api_times"])
    return merged


def reset_settings() -> None:
    get_redis().delete(SETTINGS_KEY, API_LEFT_KEY)


def call_count() -> int:
    return int(get_redis().get(CALLS_KEY) or 0)


def _api_misbehaviour(settings: dict[str, Any]) -> str | None:
    """The misbehaviour this call must show, using up one of its `api_times` atomically."""
    mode = settings["api_mode"]
    if not mode:
        return None
    if settings["api_times"] == -1:
        return mode
    return mode if get_redis().decr(API_LEFT_KEY) >= 0 else None


# ---- the API ------------------------------------------------------------------------------------

def _signed_response(payload: dict[str, Any], app_id: str, status: int = 200, tamper: bool = False) -> Response:
    body = callback_body(payload)
    key = ensure_keys()["platform"]
    headers = lklapi.response_headers(app_id, key.serial, key.private_key, body)
    if tamper:
        headers["Lklapi-Signature"] = _tampered(headers["Lklapi-Signature"])
    return Response(body, status=status, headers=headers, mimetype="application/json")


def _tampered(signature: str) -> str:
    """A well-formed signature that does not verify (one bit of it flipped)."""
    raw = bytearray(base64.b64decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _resp_time() -> str:
    return utcnow().astimezone(BUSINESS_TZ).strftime("%Y%m%d%H%M%S")


def _authenticate(header: str | None, body: bytes) -> SandboxYshMerchant:
    """The gateway's checks of a signed request, each with its own refusal."""
    try:
        auth = lklapi.parse_authorization(header)
    except lklapi.SignatureError as exc:
        raise GatewayRefusal(BAD_AUTHORIZATION, str(exc)) from None
    if not auth.appid or not auth.serial_no:
        raise GatewayRefusal(BAD_AUTHORIZATION, "Authorization 缺少 appid 或 serial_no")
    merchant = _merchant(auth.appid, auth.serial_no)
    if merchant is None:
        raise GatewayRefusal(UNKNOWN_CREDENTIALS, "appid 或证书序列号无效")
    if not lklapi.NONCE_PATTERN.match(auth.nonce_str):
        raise GatewayRefusal(BAD_NONCE, "nonce_str 须为 12-32 位字母或数字")
    if not lklapi.is_fresh(auth.timestamp, TIMESTAMP_WINDOW_SECONDS):
        raise GatewayRefusal(STALE_TIMESTAMP, "timestamp 已过期")
    text = lklapi.signed_text(auth.appid, auth.serial_no, auth.timestamp, auth.nonce_str, body)
    if not lklapi.verify(merchant.cert_pem, text, auth.signature):
        raise GatewayRefusal(BAD_SIGNATURE, "验签失败")
    if not get_redis().set(f"{NONCE_KEY}{auth.appid}:{auth.nonce_str}", 1, nx=True, ex=NONCE_TTL_SECONDS):
        raise GatewayRefusal(BAD_NONCE, "nonce_str 重复")
    return merchant


def _req_data(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except ValueError:
        raise GatewayRefusal(BAD_REQUEST, "请求报文不是 JSON", 400) from None
    if not isinstance(envelope, dict) or envelope.get("version") != "3.0" or not isinstance(envelope.get("req_data"), dict):
        raise GatewayRefusal(BAD_REQUEST, "请求报文须为 {req_time, version: 3.0, req_data}", 400)
    req_time = str(envelope.get("req_time") or "")
    if len(req_time) != 14 or not req_time.isdigit():
        raise GatewayRefusal(BAD_REQUEST, "req_time 须为 yyyyMMddHHmmss", 400)
    return envelope["req_data"]


def _api(handler: Callable[[SandboxYshMerchant, dict[str, Any]], dict[str, Any]]) -> Response:
    get_redis().incr(CALLS_KEY)
    settings = get_settings()
    bad = _api_misbehaviour(settings)
    if bad == "5xx":
        return Response('{"code":"BBS50000","msg":"sandbox: told to fail"}', 503, mimetype="application/json")
    if bad in ("latency", "timeout"):
        time.sleep(settings["api_latency_ms"] / 1000)
        if bad == "timeout":
            return Response('{"code":"BBS50400","msg":"sandbox: told to time out"}', 504, mimetype="application/json")
    body = request.get_data()
    header = request.headers.get("Authorization")
    try:
        merchant = _authenticate(header, body)
        req_data = _req_data(body)
    except GatewayRefusal as exc:
        appid = _header_appid(header)
        return _signed_response({"code": exc.code, "msg": exc.msg, "resp_time": _resp_time()}, appid, exc.status)
    try:
        payload = {"code": CODE_OK, "msg": "成功", "data": handler(merchant, req_data)}
    except SandboxRefusal as exc:
        db.session.rollback()
        payload = {"code": CODE_FAILED, "msg": exc.msg}
    return _signed_response(payload, merchant.app_id, tamper=bad == "bad_signature")


def _header_appid(header: str | None) -> str:
    try:
        return lklapi.parse_authorization(header).appid or ""
    except lklapi.SignatureError:
        return ""


def _check_issue_fields(merchant: SandboxYshMerchant, req_data: dict[str, Any]) -> dict[str, str]:
    fields = {name: str(req_data.get(name) or "").strip() for name in ISSUE_FIELD_LENGTHS}
    for name, (low, high) in ISSUE_FIELD_LENGTHS.items():
        if not low <= len(fields[name]) <= high:
            raise SandboxRefusal(f"{name} 长度须为 {low}-{high} 位")
    if fields["member_id"] != merchant.member_id:
        raise SandboxRefusal("member_id 与商户不符")
    for name in ("writeOffNotify", "postNotify"):
        url = str(req_data.get(name) or "").strip()
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc or len(url) > 500):
            raise SandboxRefusal(f"{name} 须为 http(s) 地址")
        fields[name] = url
    return fields


def _fingerprint(fields: dict[str, str]) -> str:
    parts = [fields[name] for name in ("activity_id", "owner_id", "promotion_id", "channel_openid")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _activity(activity_id: str) -> SandboxYshActivity:
    """The batch, created with the default face value when 云数汇's console never defined it."""
    activity = db.session.execute(select(SandboxYshActivity).filter_by(activity_id=activity_id)).scalar_one_or_none()
    if activity is None:
        try:
            with db.session.begin_nested():
                db.session.add(SandboxYshActivity(activity_id=activity_id, issued=0, **DEFAULT_ACTIVITY))
        except IntegrityError:
            pass
        activity = db.session.execute(select(SandboxYshActivity).filter_by(activity_id=activity_id)).scalar_one()
    return activity


def _outcome(settings: dict[str, Any]) -> str:
    mode = settings["issue_mode"]
    if mode == "random":
        roll = random.randrange(100)
        if roll < settings["random_success_percent"]:
            return "SUCCESS"
        return "PROCESS" if roll < settings["random_success_percent"] + settings["random_process_percent"] else "FAIL"
    return {"success": "SUCCESS", "process": "PROCESS", "fail": "FAIL"}[mode]


def _take_stock(activity: SandboxYshActivity) -> bool:
    """Count one coupon against a limited stock (atomically); unlimited stock is not touched."""
    if activity.stock is None:
        return True
    taken = db.session.execute(update(SandboxYshActivity)
                               .where(SandboxYshActivity.id == activity.id,
                                      SandboxYshActivity.issued < SandboxYshActivity.stock)
                               .values(issued=SandboxYshActivity.issued + 1))
    return taken.rowcount == 1


def issue_coupon(merchant: SandboxYshMerchant, req_data: dict[str, Any]) -> dict[str, Any]:
    """The issue call: the `data` answered (committed), or SandboxRefusal (999999)."""
    fields = _check_issue_fields(merchant, req_data)
    fingerprint = _fingerprint(fields)
    existing = _coupon_by_order(fields["member_id"], fields["mer_order_id"])
    if existing is not None:
        return _same_order(existing, fingerprint)
    settings = get_settings()
    activity = _activity(fields["activity_id"])
    status = _outcome(settings)
    fail_msg = settings["fail_msg"] if status == "FAIL" else None
    if status != "FAIL" and not _take_stock(activity):
        status, fail_msg = "FAIL", "库存不足"
    now = utcnow()
    coupon = SandboxYshCoupon(
        member_id=fields["member_id"], mer_order_id=fields["mer_order_id"], fingerprint=fingerprint,
        app_id=merchant.app_id, activity_id=fields["activity_id"], owner_id=fields["owner_id"],
        promotion_id=fields["promotion_id"], channel_openid=fields["channel_openid"],
        write_off_notify=fields["writeOffNotify"] or None, post_notify=fields["postNotify"] or None,
        third_coupon_id=None if status == "FAIL" else _new_id("CP"), trade_no=_new_id("YT"),
        batch_code=f"B{activity.activity_id}", trade_status=status, fail_msg=fail_msg,
        face_value_fen=activity.face_value_fen, threshold_fen=activity.threshold_fen,
        valid_to=now + timedelta(days=activity.valid_days), created_at=now)
    if status == "PROCESS":
        coupon.settle_at = now + timedelta(seconds=settings["process_delay_seconds"])
        coupon.settle_to = _settle_to(settings)
    else:
        coupon.settled_at = now
    try:
        with db.session.begin_nested():
            db.session.add(coupon)
    except IntegrityError:  # the same order raced in and won; answer what it got
        db.session.rollback()
        twin = _coupon_by_order(fields["member_id"], fields["mer_order_id"])
        if twin is None:
            raise
        return _same_order(twin, fingerprint)
    if status != "PROCESS":
        schedule_callback(coupon, "issuance", settings)
    db.session.commit()
    return _issue_data(coupon)


def _same_order(coupon: SandboxYshCoupon, fingerprint: str) -> dict[str, Any]:
    if coupon.fingerprint != fingerprint:
        raise SandboxRefusal("商户订单号重复")
    db.session.rollback()
    return _issue_data(coupon)


def _settle_to(settings: dict[str, Any]) -> str:
    outcome = settings["process_outcome"]
    if outcome == "random":
        return secrets.choice(("SUCCESS", "SUCCESS", "FAIL"))
    return outcome.upper()


def _new_id(prefix: str) -> str:
    return f"{prefix}{utcnow().astimezone(BUSINESS_TZ):%Y%m%d}{secrets.randbelow(10 ** 12):012d}"


def _coupon_by_order(member_id: str, mer_order_id: str) -> SandboxYshCoupon | None:
    return db.session.execute(select(SandboxYshCoupon).filter_by(member_id=member_id, mer_order_id=mer_order_id)
                              ).scalar_one_or_none()


def _issue_data(coupon: SandboxYshCoupon) -> dict[str, Any]:
    return {"resCode": CODE_FAILED if coupon.trade_status == "FAIL" else CODE_OK, "failMsg": coupon.fail_msg or "",
            "activity_id": coupon.activity_id, "owner_id": coupon.owner_id, "promotion_id": coupon.promotion_id,
            "third_coupon_id": coupon.third_coupon_id or "", "mer_order_id": coupon.mer_order_id,
            "trade_no": coupon.trade_no, "batch_code": coupon.batch_code, "channel_openid": coupon.channel_openid,
            "trade_status": coupon.trade_status}


def query_coupon(merchant: SandboxYshMerchant, req_data: dict[str, Any]) -> dict[str, Any]:
    """The query call's `data`: the order's trade status and redemption."""
    mer_order_id = str(req_data.get("mer_order_id") or "").strip()
    if not mer_order_id:
        raise SandboxRefusal("mer_order_id 不能为空")
    member_id = str(req_data.get("member_id") or merchant.member_id)
    if member_id != merchant.member_id:
        raise SandboxRefusal("member_id 与商户不符")
    coupon = _coupon_by_order(member_id, mer_order_id)
    if coupon is None:
        return {"resCode": RES_NOT_FOUND, "failMsg": "订单不存在", "mer_order_id": mer_order_id, "trade_status": None}
    for name in ("activity_id", "owner_id", "trade_no"):
        asked = str(req_data.get(name) or "").strip()
        if asked and asked != getattr(coupon, name):
            raise SandboxRefusal(f"{name} 与订单不符")
    return {**_issue_data(coupon), **_redemption_fields(coupon)}


def _redemption_fields(coupon: SandboxYshCoupon) -> dict[str, Any]:
    def amount(value: int | None) -> int | str:
        return "" if value is None else value

    return {"promo_amount": amount(coupon.promo_amount_fen), "total_amount": amount(coupon.total_amount_fen),
            "org_amount": amount(coupon.org_amount_fen), "gmt_used": _beijing(coupon.used_at),
            "tradeStatus": coupon.redemption_status or ""}


def _beijing(value: datetime | None) -> str:
    return as_utc(value).astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S") if value else ""


@bp.post(PATH_ISSUE)
@csrf.exempt
def api_issue():
    return _api(issue_coupon)


@bp.post(PATH_QUERY)
@csrf.exempt
def api_query():
    return _api(query_coupon)


# ---- settling, redemption ----------------------------------------------------------------------

def settle_due_coupons(now: datetime | None = None, limit: int = 500) -> int:
    """PROCESS issues whose time has come become SUCCESS or FAIL, each owing an issuance callback."""
    now = now or utcnow()
    stmt = (select(SandboxYshCoupon).where(SandboxYshCoupon.trade_status == "PROCESS", SandboxYshCoupon.settle_at <= now)
            .order_by(SandboxYshCoupon.settle_at).limit(limit))
    coupons = list(db.session.execute(_skip_locked(stmt)).scalars())
    settings = get_settings()
    for coupon in coupons:
        coupon.trade_status = coupon.settle_to or "SUCCESS"
        coupon.settled_at = now
        if coupon.trade_status == "FAIL":
            coupon.fail_msg, coupon.third_coupon_id = settings["fail_msg"], None
            _release_stock(coupon.activity_id)
        schedule_callback(coupon, "issuance", settings)
    db.session.commit()
    return len(coupons)


def _release_stock(activity_id: str) -> None:
    db.session.execute(update(SandboxYshActivity)
                       .where(SandboxYshActivity.activity_id == activity_id, SandboxYshActivity.stock.is_not(None),
                              SandboxYshActivity.issued > 0)
                       .values(issued=SandboxYshActivity.issued - 1))


def _skip_locked(stmt):
    """Rows locked by another runner are skipped (PostgreSQL); SQLite has one writer anyway."""
    if db.engine.dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def _locked_coupon(coupon_id: int) -> SandboxYshCoupon:
    stmt = select(SandboxYshCoupon).filter_by(id=coupon_id)
    if db.engine.dialect.name == "postgresql":
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    coupon = db.session.execute(stmt).scalar_one_or_none()
    if coupon is None:
        raise SandboxRefusal(_("No such coupon."))
    return coupon


def use_coupon(coupon_id: int, order_amount_fen: int, merchant_name: str | None = None,
               now: datetime | None = None, notify: bool = True) -> SandboxYshCoupon:
    """A customer pays `order_amount_fen` with the coupon; the redemption callback is scheduled
    (unless `notify` is False)."""
    now = now or utcnow()
    coupon = _locked_coupon(coupon_id)
    _check_usable(coupon, now)
    if order_amount_fen <= 0 or order_amount_fen < coupon.threshold_fen:
        raise SandboxRefusal(_("The order amount must be positive and at least the threshold (%(fen)s fen).",
                               fen=coupon.threshold_fen))
    _record_use(coupon, order_amount_fen, merchant_name, now)
    if notify:
        schedule_callback(coupon, "redemption")
    db.session.commit()
    return coupon


def _record_use(coupon: SandboxYshCoupon, order_amount_fen: int, merchant_name: str | None, now: datetime) -> None:
    promo = min(coupon.face_value_fen, order_amount_fen)
    coupon.redemption_status, coupon.used_at = "USED", now
    coupon.promo_amount_fen, coupon.total_amount_fen, coupon.org_amount_fen = promo, order_amount_fen, promo
    coupon.pay_trade_no = _new_id("PT")
    coupon.merchant_no, coupon.merchant_name = SANDBOX_MERCHANT_NO, (merchant_name or SANDBOX_MERCHANT_NAME)[:100]


def expire_coupon(coupon_id: int, now: datetime | None = None) -> SandboxYshCoupon:
    """The coupon runs out unused; a redemption callback with tradeStatus EXPIRED is scheduled."""
    now = now or utcnow()
    coupon = _locked_coupon(coupon_id)
    _check_usable(coupon, now, expiring=True)
    coupon.redemption_status, coupon.used_at = "EXPIRED", now
    schedule_callback(coupon, "redemption")
    db.session.commit()
    return coupon


def _check_usable(coupon: SandboxYshCoupon, now: datetime, expiring: bool = False) -> None:
    if coupon.trade_status != "SUCCESS":
        raise SandboxRefusal(_("Only an issued (SUCCESS) coupon can be used or expired."))
    if coupon.redemption_status:
        raise SandboxRefusal(_("This coupon is already %(status)s.", status=coupon.redemption_status))
    if not expiring and as_utc(coupon.valid_to) <= now:
        raise SandboxRefusal(_("This coupon is past its validity; expire it instead."))


def auto_redeem(fraction: float = 0.3, min_age_seconds: int = 60, limit: int = 200) -> int:
    """The demo's customers: every issued coupon older than `min_age_seconds` is looked at once
    and used with probability `fraction`, for a random order amount above its threshold."""
    cutoff = utcnow() - timedelta(seconds=min_age_seconds)
    stmt = (select(SandboxYshCoupon.id).where(SandboxYshCoupon.trade_status == "SUCCESS",
                                              SandboxYshCoupon.redemption_status.is_(None),
                                              SandboxYshCoupon.auto_checked.is_(False),
                                              SandboxYshCoupon.created_at <= cutoff)
            .order_by(SandboxYshCoupon.id).limit(limit))
    ids = list(db.session.execute(stmt).scalars())
    if not ids:
        return 0
    db.session.execute(update(SandboxYshCoupon).where(SandboxYshCoupon.id.in_(ids)).values(auto_checked=True))
    db.session.commit()
    used = 0
    for coupon_id in ids:
        if secrets.randbelow(10_000) >= fraction * 10_000:
            continue
        coupon = db.session.get(SandboxYshCoupon, coupon_id)
        amount = max(coupon.threshold_fen, coupon.face_value_fen) + 100 + secrets.randbelow(19_900)
        try:
            use_coupon(coupon_id, amount)
            used += 1
        except SandboxRefusal:
            db.session.rollback()
    return used


def auto_redeem_enabled() -> bool:
    """SANDBOX_YSH_AUTO_REDEEM (app/config.py: on in the embedded mode only, unless set)."""
    return bool(current_app.config.get("SANDBOX_YSH_AUTO_REDEEM"))


# ---- callbacks ----------------------------------------------------------------------------------

def issuance_payload(coupon: SandboxYshCoupon) -> dict[str, Any]:
    """The issuance callback body (amount in yuan; `sign` is opaque, the header signs)."""
    created = _beijing(coupon.created_at)
    return {"orgId": coupon.member_id, "callTradeNo": coupon.mer_order_id,
            "amount": round(coupon.face_value_fen / 100, 2), "tradeStatus": coupon.trade_status,
            "failMsg": coupon.fail_msg or "", "tradeCreateTime": created,
            "tradePaymentTime": _beijing(coupon.settled_at) or created, "sign": secrets.token_hex(16)}


def redemption_payload(coupon: SandboxYshCoupon) -> dict[str, Any]:
    """The redemption (核销) callback body, amounts in fen."""
    return {"member_id": coupon.member_id, "owner_id": coupon.owner_id, "channel_openid": coupon.channel_openid,
            "promotion_id": coupon.promotion_id, "third_coupon_id": coupon.third_coupon_id or "",
            "activity_id": coupon.activity_id, **_redemption_fields(coupon), "trade_no": coupon.trade_no,
            "mer_order_id": coupon.mer_order_id, "merchant_no": coupon.merchant_no or "",
            "merchant_name": coupon.merchant_name or "", "pay_trade_no": coupon.pay_trade_no or ""}


def schedule_callback(coupon: SandboxYshCoupon, kind: str, settings: dict[str, Any] | None = None
                      ) -> list[SandboxYshCallback]:
    """Owe the callback (and any deliberate duplicates) to the coupon's notify URL; not committed."""
    settings = settings or get_settings()
    url = coupon.post_notify if kind == "issuance" else coupon.write_off_notify
    if not url:
        return []
    payload = issuance_payload(coupon) if kind == "issuance" else redemption_payload(coupon)
    due = utcnow()
    if kind == "issuance" and settings["cb_out_of_order"]:
        due += OUT_OF_ORDER_HOLD
    elif kind == "redemption" and settings["cb_out_of_order"]:
        due -= timedelta(seconds=1)  # ahead of anything already due
    first = SandboxYshCallback(coupon=coupon, kind=kind, url=url, body=callback_body(payload).decode(),
                               status="pending", next_attempt_at=due)
    db.session.add(first)
    db.session.flush()
    copies = [SandboxYshCallback(coupon=coupon, kind=kind, url=url, body=first.body, status="pending",
                                 next_attempt_at=due, duplicate_of=first.id) for _ in range(settings["cb_duplicates"])]
    db.session.add_all(copies)
    return [first, *copies]


@dataclass(frozen=True)
class DeliveryResult:
    callback_id: int
    ok: bool
    http_status: int | None
    excerpt: str | None
    error: str | None
    duration_ms: int
    bad_signature: bool


def _sign_callback(body: bytes, bad: bool) -> str:
    header = lklapi.callback_authorization(ensure_keys()["notify"].private_key, body)
    return _spoiled(header) if bad else header


def _spoiled(header: str) -> str:
    """The same Authorization header with a signature that does not verify."""
    good = lklapi.parse_authorization(header).signature
    return header.replace(good, _tampered(good))


def _send(http: httpx.Client, callback_id: int, url: str, body: bytes, authorization: str,
          bad: bool) -> DeliveryResult:
    started = time.monotonic()
    try:
        response = http.post(url, content=body, headers={"Authorization": authorization,
                                                         "Content-Type": "application/json; charset=utf-8"})
    except httpx.HTTPError as exc:
        return DeliveryResult(callback_id, False, None, None, f"{type(exc).__name__}: {exc}"[:500],
                              int((time.monotonic() - started) * 1000), bad)
    elapsed = int((time.monotonic() - started) * 1000)
    try:
        ok = json.loads(response.content).get("code") == ACK_SUCCESS["code"]
    except (ValueError, AttributeError):
        ok = False
    return DeliveryResult(callback_id, ok, response.status_code, response.text[:500], None, elapsed, bad)


def deliver_due_callbacks(limit: int = 200, now: datetime | None = None,
                          transport: httpx.BaseTransport | None = None, workers: int = 8) -> dict[str, int]:
    """Send every callback that is due (claimed with a lease, so two runners never send one twice
    at once), record each attempt, and schedule the next try of those not answered SUCCESS."""
    now = now or utcnow()
    stmt = (select(SandboxYshCallback.id).where(SandboxYshCallback.status == "pending",
                                                SandboxYshCallback.next_attempt_at <= now)
            .order_by(SandboxYshCallback.next_attempt_at, SandboxYshCallback.id).limit(limit))
    ids = list(db.session.execute(_skip_locked(stmt)).scalars())
    if not ids:
        db.session.commit()
        return {"attempted": 0, "delivered": 0, "failed": 0, "abandoned": 0}
    db.session.execute(update(SandboxYshCallback).where(SandboxYshCallback.id.in_(ids))
                       .values(next_attempt_at=now + CLAIM_LEASE))
    db.session.commit()
    rows = {row.id: (row.url, row.body.encode()) for row in
            db.session.execute(select(SandboxYshCallback).where(SandboxYshCallback.id.in_(ids))).scalars()}
    percent = get_settings()["cb_bad_signature_percent"]
    jobs = []
    for callback_id in ids:
        url, body = rows[callback_id]
        bad = random.randrange(100) < percent
        jobs.append((callback_id, url, body, _sign_callback(body, bad), bad))
    with httpx.Client(timeout=CALLBACK_TIMEOUT, transport=transport, verify=tls_context()) as http:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            results = list(pool.map(lambda job: _send(http, *job), jobs))
    return _record_results(results, now)


def _record_results(results: list[DeliveryResult], now: datetime) -> dict[str, int]:
    counts = {"attempted": len(results), "delivered": 0, "failed": 0, "abandoned": 0}
    for result in results:
        callback = db.session.get(SandboxYshCallback, result.callback_id)
        callback.attempts += 1
        db.session.add(SandboxYshCallbackAttempt(
            callback_id=callback.id, attempted_at=now, http_status=result.http_status,
            response_excerpt=result.excerpt, ok=result.ok, bad_signature=result.bad_signature, error=result.error,
            duration_ms=result.duration_ms))
        if result.ok:
            callback.status, callback.delivered_at, callback.next_attempt_at = "delivered", utcnow(), None
            counts["delivered"] += 1
        elif callback.attempts > len(RETRY_SCHEDULE):
            callback.status, callback.next_attempt_at = "abandoned", None
            counts["abandoned"] += 1
        else:
            callback.next_attempt_at = now + timedelta(seconds=RETRY_SCHEDULE[callback.attempts - 1])
            counts["failed"] += 1
    db.session.commit()
    return counts


def redeliver_now(callback_id: int) -> None:
    """Make one callback due at once (again, even if it was given up)."""
    callback = db.session.get(SandboxYshCallback, callback_id)
    if callback is None:
        raise SandboxRefusal(_("No such callback."))
    if callback.status == "delivered":
        raise SandboxRefusal(_("This callback was already answered SUCCESS."))
    callback.status, callback.next_attempt_at = "pending", utcnow()
    db.session.commit()


def run_cycle(transport: httpx.BaseTransport | None = None) -> dict[str, int]:
    """One turn of the sandbox's clock: settle PROCESS issues, let demo customers use coupons,
    send due callbacks. Does nothing when the sandboxes are off."""
    if not current_app.config.get("SANDBOXES_ENABLED"):
        return {}
    settled = settle_due_coupons()
    redeemed = auto_redeem() if auto_redeem_enabled() else 0
    return {"settled": settled, "redeemed": redeemed, **deliver_due_callbacks(transport=transport)}


# ---- the benchmark's storm ----------------------------------------------------------------------

@dataclass(frozen=True)
class StormRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    coupon_id: int
    good_signature: bool


def storm(coupons: Sequence[SandboxYshCoupon], copies: int = 10, bad_signature_percent: float = 5,
          url: str | None = None, seed: int | None = None) -> list[StormRequest]:
    """Use every coupon (when still unused) and build `copies` redemption callbacks for each,
    each freshly signed, shuffled, with `bad_signature_percent` of all of them badly signed —
    never all copies of one coupon, so exactly one redemption per coupon can be applied.
    Nothing is sent or stored as a callback row: the caller fires the requests."""
    rng = random.Random(seed)
    if copies < 1:
        raise ValueError("copies must be at least 1")
    if any(coupon.trade_status != "SUCCESS" for coupon in coupons):
        raise ValueError("only issued (SUCCESS) coupons can be used in a storm")
    key = ensure_keys()["notify"].private_key
    now = utcnow()
    for coupon in coupons:
        if coupon.redemption_status is None:
            _record_use(coupon, max(coupon.threshold_fen, coupon.face_value_fen) + rng.randrange(100, 10000), None, now)
    db.session.commit()
    bodies = [(coupon, callback_body(redemption_payload(coupon))) for coupon in coupons]
    slots = [(index, copy) for index in range(len(bodies)) for copy in range(copies)]
    bad_total = round(len(slots) * bad_signature_percent / 100)
    spoilable = [slot for slot in slots if slot[1] > 0] if copies > 1 else []  # copy 0 of each stays good
    bad = set(rng.sample(spoilable, min(bad_total, len(spoilable))))
    requests = []
    for index, copy in slots:
        coupon, body = bodies[index]
        header = lklapi.callback_authorization(key, body)
        if (index, copy) in bad:
            header = _spoiled(header)
        requests.append(StormRequest(url or coupon.write_off_notify or "", {
            "Authorization": header, "Content-Type": "application/json; charset=utf-8"}, body, coupon.id,
            (index, copy) not in bad))
    rng.shuffle(requests)
    return requests


# ---- pages --------------------------------------------------------------------------------------

@bp.get("/openid/<member_id>")
def openid_page(member_id: str):
    """The OpenID hand-off: a visitor picks who they are and goes back to `wmcb`."""
    wmcb = _hand_off_target(member_id, request.args.get("wmcb"))
    customers = db.session.execute(select(SandboxYshCustomer).order_by(SandboxYshCustomer.nickname)).scalars().all()
    response = make_response(render_template("sandbox/yunshuhui_openid.html", member_id=member_id, wmcb=wmcb,
                                             customers=customers))
    # The form's answer redirects to the bank's page, usually on another site: allow that target.
    from app.web import SECURITY_HEADERS

    response.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", "form-action 'self' http: https:")
    return response


@bp.post("/openid/<member_id>")
def openid_choose(member_id: str):
    wmcb = _hand_off_target(member_id, request.form.get("wmcb"))
    chosen = (request.form.get("openid") or "").strip()
    if chosen:
        customer = db.session.execute(select(SandboxYshCustomer).filter_by(openid=chosen)).scalar_one_or_none()
    else:
        try:
            customer = ensure_customer(request.form.get("nickname") or "")
        except SandboxRefusal as exc:
            flash(exc.msg, "error")
            return redirect(url_for(".openid_page", member_id=member_id, wmcb=wmcb))
    if customer is None:
        flash(_("Choose a customer."), "error")
        return redirect(url_for(".openid_page", member_id=member_id, wmcb=wmcb))
    return redirect(openid_return_url(wmcb, customer.openid))


def openid_return_url(wmcb: str, openid: str) -> str:
    """`wmcb` with `openid=…&from=dshy` appended (after `?` or `&` as the URL needs)."""
    separator = "&" if "?" in wmcb else "?"
    if wmcb.endswith(("?", "&")):
        separator = ""
    return f"{wmcb}{separator}openid={quote(openid, safe='')}&from=dshy"


def _hand_off_target(member_id: str, wmcb: str | None) -> str:
    """The `wmcb` to send the visitor back to (400 unless http(s)); 404 for an unknown member."""
    url = (wmcb or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 1000:
        abort(400, description="wmcb must be an http(s) URL")
    if not db.session.execute(select(SandboxYshMerchant.id).filter_by(member_id=member_id)).first():
        abort(404)
    return url


def _console_context() -> dict[str, Any]:
    params = parse_list_params(request.args, ("status",), default_sort="id")
    stmt = select(SandboxYshCoupon)
    if params.q:
        like = f"%{params.q}%"
        stmt = stmt.where(or_(SandboxYshCoupon.mer_order_id.ilike(like), SandboxYshCoupon.channel_openid.ilike(like),
                              SandboxYshCoupon.third_coupon_id.ilike(like)))
    status = params.filters.get("status")
    if status in ("PROCESS", "SUCCESS", "FAIL"):
        stmt = stmt.where(SandboxYshCoupon.trade_status == status)
    elif status in ("USED", "EXPIRED"):
        stmt = stmt.where(SandboxYshCoupon.redemption_status == status)
    page = paginate(stmt.order_by(SandboxYshCoupon.id.desc()), params)
    callbacks = list(db.session.execute(select(SandboxYshCallback).order_by(SandboxYshCallback.id.desc()).limit(30))
                     .unique().scalars())
    attempts: dict[int, list[SandboxYshCallbackAttempt]] = {c.id: [] for c in callbacks}
    if callbacks:
        for attempt in db.session.execute(select(SandboxYshCallbackAttempt)
                                          .where(SandboxYshCallbackAttempt.callback_id.in_(list(attempts)))
                                          .order_by(SandboxYshCallbackAttempt.id)).scalars():
            attempts[attempt.callback_id].append(attempt)
    return {
        "keys": ensure_keys(), "params": params, "page": page, "callbacks": callbacks, "attempts": attempts,
        "merchants": db.session.execute(select(SandboxYshMerchant).order_by(SandboxYshMerchant.id)).scalars().all(),
        "activities": db.session.execute(select(SandboxYshActivity).order_by(SandboxYshActivity.activity_id)
                                         ).scalars().all(),
        "settings": get_settings(), "calls": call_count(), "issue_modes": ISSUE_MODES,
        "process_outcomes": PROCESS_OUTCOMES, "api_modes": API_MODES, "retry_schedule": RETRY_SCHEDULE,
        "now": utcnow(),
    }


@bp.get("/")
@permission_required("platform.manage")
def console():
    return render_template("sandbox/yunshuhui.html", **_console_context())


def _back(message: str, category: str = "success"):
    flash(message, category)
    back = request.form.get("next") or ""
    return redirect(back if back.startswith(BASE_PATH + "/") else url_for(".console"))


def _act(action: Callable[[], Any], success: Callable[[Any], str]):
    """Run a console action; flash its refusal, or its success message, and go back."""
    try:
        result = action()
    except (SandboxRefusal, MoneyError) as exc:
        return _back(getattr(exc, "msg", str(exc)), "error")
    return _back(success(result))


@bp.post("/merchants")
@permission_required("platform.manage")
def register_merchant():
    form = request.form
    return _act(lambda: provision_merchant(form.get("app_id", ""), form.get("serial_no", ""), form.get("cert_pem", ""),
                                           form.get("member_id", "")),
                lambda _result: _("The merchant certificate is registered."))


def _activity_from_form() -> SandboxYshActivity:
    form = request.form
    stock = (form.get("stock") or "").strip()
    return define_activity((form.get("activity_id") or "").strip(),
                           (form.get("title") or "").strip() or DEFAULT_ACTIVITY["title"],
                           yuan_to_fen(form.get("face_value")) or 0, yuan_to_fen(form.get("threshold")) or 0,
                           form.get("valid_days", 30, type=int), int(stock) if stock.isdigit() else None)


@bp.post("/activities")
@permission_required("platform.manage")
def save_activity():
    return _act(_activity_from_form, lambda _result: _("The activity is saved."))


@bp.post("/settings")
@permission_required("platform.manage")
def save_settings():
    values = {name: request.form.get(name) for name in DEFAULT_SETTINGS if name in request.form}
    values["cb_out_of_order"] = 1 if request.form.get("cb_out_of_order") else 0
    return _act(lambda: update_settings(**values), lambda _result: _("The sandbox's behaviour is saved."))


@bp.post("/settings/reset")
@permission_required("platform.manage")
def settings_reset():
    reset_settings()
    return _back(_("The sandbox behaves normally again."))


def _use_from_form(coupon_id: int) -> SandboxYshCoupon:
    amount = yuan_to_fen(request.form.get("amount"))
    if amount is None:
        raise SandboxRefusal(_("Enter the order amount."))
    return use_coupon(coupon_id, amount, request.form.get("merchant_name") or None)


@bp.post("/coupons/<int:coupon_id>/use")
@permission_required("platform.manage")
def use(coupon_id: int):
    return _act(lambda: _use_from_form(coupon_id), lambda coupon: _(
        "Coupon %(id)s is used; the redemption callback is on its way.", id=coupon.third_coupon_id))


@bp.post("/coupons/<int:coupon_id>/expire")
@permission_required("platform.manage")
def expire(coupon_id: int):
    return _act(lambda: expire_coupon(coupon_id), lambda coupon: _(
        "Coupon %(id)s has expired; the callback is on its way.", id=coupon.third_coupon_id))


@bp.post("/callbacks/deliver")
@permission_required("platform.manage")
def deliver_now():
    settle_due_coupons()
    counts = deliver_due_callbacks()
    return _back(_("Callbacks sent: %(attempted)s, answered SUCCESS: %(delivered)s.", **counts))


@bp.post("/callbacks/<int:callback_id>/retry")
@permission_required("platform.manage")
def retry_callback(callback_id: int):
    return _act(lambda: redeliver_now(callback_id),
                lambda _result: _("The callback will be sent again within seconds."))
