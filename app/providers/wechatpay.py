"""WeChat Pay API v3 代金券 (cash coupon) client for the direct tunnel, on the `wechatpayv3` library.

Owns the direct tunnel's protocol: sending a coupon from a stock to an openid, querying a coupon,
setting the merchant's coupon notification URL, downloading the platform certificates, and reading
a COUPON.USE notification (signature, timestamp window, AEAD_AES_256_GCM resource). Errors come
out as our own: `WechatPayError` (permanent: the same call will fail again) and its subclass
`WechatPayUnavailable` (transient: timeout, connection failure, 5xx / 429 / SYSTEM_ERROR, an answer
whose signature does not verify or that is not what the API promises). `send_coupon` is idempotent
by `out_request_no`, so the caller retries an `WechatPayUnavailable` with the same number; this
client does not retry by itself (the issuance pipeline owns backoff).

The library does the protocol: it signs requests (`WECHATPAY2-SHA256-RSA2048`) and verifies the
`Wechatpay-*` signature of every 2xx answer. Two things it cannot be told, and how we tell it:
- its gateway host is the hard-coded `https://api.mch.weixin.qq.com` (no option; `proxy` is an
  HTTP proxy for `requests`, which cannot re-target an https URL), and
- on start-up it downloads the platform certificates from that host unless it finds them in a
  `cert_dir` on disk or runs in "platform public key" mode (a single key with a `PUB_KEY_ID_` id).
`_GatewayCore` subclasses its `Core` and overrides the one start-up step, `_init_certificates`, to
point the gateway at the account's `base_url` (real host or our sandbox) and to load the account's
stored platform certificates; only when none is stored (or an answer names an unknown serial) does
the library download `/v3/certificates` — from that same base URL. The version is pinned in
requirements.txt because this reaches into one method of the library; the tests cover it.

Notifications are read with the library's own primitives (`rsa_verify`, `aes_decrypt`) against the
account's stored platform certificates, plus what the library leaves to the caller: rejecting
`WECHATPAY/SIGNTEST/` probes and timestamps outside ±300 s.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import requests
from cryptography.hazmat.primitives import serialization
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core
from wechatpayv3.utils import aes_decrypt, load_certificate, rsa_verify

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
TIMESTAMP_WINDOW_SECONDS = 300
DEFAULT_TIMEOUT = (5, 10)  # (connect, read) seconds, as `requests` takes them
TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED"})
USE_EVENT = "COUPON.USE"
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")  # openids, stock and coupon ids go into the URL path


class WechatPayError(Exception):
    """A refusal that will not change by retrying (bad parameters, stock exhausted, no such coupon,
    a notification that fails its checks). `code` is WeChat Pay's code (or ours, for local checks)."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


class WechatPayUnavailable(WechatPayError):
    """WeChat Pay could not be reached or gave no trustworthy answer; the same call may succeed later."""


@dataclass(frozen=True)
class SentCoupon:
    coupon_id: str
    raw: dict


# --- the library, pointed at our gateway -----------------------------------------------------------

class _GatewayCore(Core):
    """wechatpayv3's Core with the gateway and the platform certificates given instead of assumed."""

    def __init__(self, *, gateway: str, platform_certs: list[str], **kwargs: Any):
        self._given_gateway = gateway.rstrip("/")
        self._given_certs = platform_certs
        super().__init__(**kwargs)

    def _init_certificates(self) -> None:  # the library's start-up step, run from Core.__init__
        self._gate_way = self._given_gateway
        now = datetime.now(timezone.utc)
        for pem in self._given_certs:
            cert = load_certificate(pem)
            if cert is not None and cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                self._certificates.append(cert)
        if not self._certificates:
            self._update_certificates()  # GET {gateway}/v3/certificates, decrypted with the APIv3 key
        if not self._certificates:
            raise WechatPayUnavailable("NO_PLATFORM_CERT", "no valid WeChat Pay platform certificate is stored "
                                                           "and none could be downloaded")


class _WeChatPay(WeChatPay):
    """WeChatPay around a ready Core (its own __init__ would build one against the real host)."""

    def __init__(self, core: Core, mchid: str, appid: str):  # noqa: super().__init__ deliberately not called
        self._type = WeChatPayType.JSAPI
        self._mchid = mchid
        self._appid = appid
        self._notify_url = None
        self._core = core
        self._partner_mode = False


# --- the client ------------------------------------------------------------------------------------

class WechatCouponClient:
    """One merchant's (mchid) coupon calls to WeChat Pay v3 (or the sandbox at the same paths)."""

    def __init__(self, *, mchid: str, appid: str, serial_no: str, private_key: str, apiv3_key: str,
                 platform_certs: Mapping[str, str], base_url: str, timeout: tuple[float, float] = DEFAULT_TIMEOUT):
        self.mchid = mchid
        self.appid = appid
        self.base_url = base_url.rstrip("/")
        self._serial_no = serial_no
        self._private_key = private_key
        self._apiv3_key = apiv3_key
        self._platform_certs = list(platform_certs.values())
        self._timeout = timeout
        self._library: _WeChatPay | None = None

    @classmethod
    def for_account(cls, account, **options: Any) -> "WechatCouponClient":
        """The client of a TunnelAccount with tunnel 'direct' (member_id = mchid, app_id = appid,
        serial_no = our certificate serial, secrets private_key / apiv3_key). Makes no call yet."""
        if account.tunnel != "direct":
            raise WechatPayError("ACCOUNT_INVALID", f"tunnel account {account.id} is not a WeChat Pay direct account")
        secrets = account.secrets
        private_key, apiv3_key = secrets.get("private_key") or "", secrets.get("apiv3_key") or ""
        if not account.member_id or not private_key or len(apiv3_key.encode()) != 32:
            raise WechatPayError("ACCOUNT_INVALID", "the direct account needs an mchid, a private key and a "
                                                    "32-character APIv3 key")
        return cls(mchid=account.member_id, appid=account.app_id, serial_no=account.serial_no,
                   private_key=private_key, apiv3_key=apiv3_key, platform_certs=account.platform_certs or {},
                   base_url=account.base_url, **options)

    # -- calls --

    def send_coupon(self, *, openid: str, stock_id: str, out_request_no: str,
                    stock_creator_mchid: str | None = None) -> SentCoupon:
        """发放代金券: POST /v3/marketing/favor/users/{openid}/coupons. The same out_request_no
        answers the same coupon_id again."""
        _require_id("openid", openid)
        _require_id("stock_id", stock_id)
        if not out_request_no or len(out_request_no) > 128:
            raise WechatPayError("PARAM_ERROR", "out_request_no must be 1 to 128 characters")
        data = self._call(lambda pay: pay.marketing_favor_stock_send(
            stock_id=stock_id, openid=openid, out_request_no=out_request_no,
            stock_creator_mchid=stock_creator_mchid or self.mchid, appid=self.appid))
        coupon_id = data.get("coupon_id")
        if not coupon_id:
            raise WechatPayUnavailable("BAD_ANSWER", "the answer to a coupon send has no coupon_id")
        return SentCoupon(coupon_id=str(coupon_id), raw=data)

    def query_coupon(self, *, openid: str, coupon_id: str) -> dict:
        """查询代金券详情: GET /v3/marketing/favor/users/{openid}/coupons/{coupon_id}?appid=…;
        the coupon as WeChat Pay describes it (status SENDED / USED / EXPIRED, consume_information…)."""
        _require_id("openid", openid)
        _require_id("coupon_id", coupon_id)
        data = self._call(lambda pay: pay.marketing_favor_coupon_detail(coupon_id=coupon_id, openid=openid))
        if str(data.get("coupon_id") or "") != coupon_id:
            raise WechatPayUnavailable("BAD_ANSWER", "the answer describes another coupon")
        return data

    def set_notify_url(self, notify_url: str, enabled: bool = True) -> dict:
        """设置消息通知地址: POST /v3/marketing/favor/callbacks (where COUPON.USE notifications go)."""
        if not notify_url.startswith(("https://", "http://")):
            raise WechatPayError("PARAM_ERROR", "the notification URL must be an http(s) URL")
        return self._call(lambda pay: pay.marketing_favor_callback_update(notify_url=notify_url, switch=enabled))

    def platform_certificates(self) -> dict[str, str]:
        """Download /v3/certificates now: {serial (upper-case hex): certificate PEM}, to store on the
        account when WeChat Pay rotates its certificates."""
        def download(pay: _WeChatPay) -> tuple[int, str]:
            pay._core._update_certificates()
            return 200, "{}"

        self._call(download)
        certs = {format(cert.serial_number, "X"): cert.public_bytes(serialization.Encoding.PEM).decode()
                 for cert in self._library._core._certificates}
        if not certs:
            raise WechatPayUnavailable("NO_PLATFORM_CERT", "WeChat Pay answered no valid platform certificate")
        return certs

    # -- plumbing --

    def _pay(self) -> _WeChatPay:
        if self._library is None:
            core = _GatewayCore(gateway=self.base_url, platform_certs=self._platform_certs, mchid=self.mchid,
                                cert_serial_no=self._serial_no, private_key=self._private_key,
                                apiv3_key=self._apiv3_key, timeout=self._timeout)
            self._library = _WeChatPay(core, self.mchid, self.appid)
        return self._library

    def _call(self, action: Callable[[_WeChatPay], tuple[int, Any]]) -> dict:
        """Run one library call and turn what happens into a dict or one of our errors."""
        try:
            status, text = action(self._pay())
        except WechatPayError:
            raise
        except requests.Timeout as exc:
            raise WechatPayUnavailable("TIMEOUT", "WeChat Pay did not answer in time") from exc
        except requests.RequestException as exc:
            raise WechatPayUnavailable("CONNECTION_ERROR", f"WeChat Pay could not be reached: {exc}") from exc
        except Exception as exc:  # the library raises bare Exception when an answer's signature fails
            code = "SIGN_ERROR" if "signature" in str(exc) or "algorithm" in str(exc) else "BAD_ANSWER"
            raise WechatPayUnavailable(code, f"WeChat Pay's answer is not trustworthy: {exc}") from exc
        return _answer(status, text)


def _require_id(name: str, value: str) -> None:
    if not value or not _SAFE_ID.match(value):
        raise WechatPayError("PARAM_ERROR", f"{name} must be 1 to 128 letters, digits, '-' or '_'")


def _answer(status: int, text: Any) -> dict:
    """A 2xx answer's JSON object, or the error it carries, mapped to permanent or transient."""
    try:
        data = json.loads(text) if text else {}
    except (TypeError, ValueError):
        data = None
    if 200 <= status < 300:
        if not isinstance(data, dict):
            raise WechatPayUnavailable("BAD_ANSWER", "WeChat Pay answered something that is not a JSON object", status)
        return data
    data = data if isinstance(data, dict) else {}
    code = str(data.get("code") or f"HTTP_{status}")
    message = str(data.get("message") or (text[:200] if isinstance(text, str) else "") or "no message")
    if status >= 500 or status == 429 or code in TRANSIENT_CODES:
        raise WechatPayUnavailable(code, message, status)
    raise WechatPayError(code, message, status)


# --- notifications ---------------------------------------------------------------------------------

def parse_use_notification(account, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> dict:
    """Check and read a COUPON.USE notification sent to our notify URL for a direct account.

    Verifies the `Wechatpay-*` signature against the account's platform certificate of that serial
    (a `WECHATPAY/SIGNTEST/` probe always fails), the timestamp within ±300 s, then decrypts the
    AEAD_AES_256_GCM resource with the APIv3 key. Returns {coupon_id, stock_id, status,
    consume_time (UTC datetime), consume_mchid, transaction_id, event_id, resource (all of it)};
    raises WechatPayError (never Unavailable: a notification is answered, not retried by us).
    """
    fields = {key.lower(): value for key, value in headers.items()}
    text = _verified_text(account, fields, body, time.time() if now is None else now)
    try:
        envelope = json.loads(text)
    except ValueError:
        raise WechatPayError("BAD_NOTIFICATION", "the notification is not JSON") from None
    if not isinstance(envelope, dict) or envelope.get("event_type") != USE_EVENT:
        raise WechatPayError("UNSUPPORTED_EVENT", f"not a {USE_EVENT} notification")
    resource = _decrypted_resource(account, envelope.get("resource"))
    consume = resource.get("consume_information") or {}
    if not resource.get("coupon_id") or not envelope.get("id"):
        raise WechatPayError("BAD_NOTIFICATION", "the notification lacks its id or the coupon_id")
    return {
        "coupon_id": str(resource["coupon_id"]),
        "stock_id": str(resource.get("stock_id") or ""),
        "status": resource.get("status"),
        "consume_time": _utc(consume.get("consume_time")),
        "consume_mchid": consume.get("consume_mchid"),
        "transaction_id": consume.get("transaction_id"),
        "event_id": str(envelope["id"]),
        "resource": resource,
    }


def _verified_text(account, fields: dict[str, str], body: bytes, now: float) -> str:
    names = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial")
    timestamp, nonce, signature, serial = (fields.get(name) or "" for name in names)
    if not (timestamp and nonce and signature and serial):
        raise WechatPayError("SIGN_ERROR", "the notification lacks a Wechatpay-* signature header")
    if fields.get("wechatpay-signature-type", SIGNATURE_TYPE) != SIGNATURE_TYPE:
        raise WechatPayError("SIGN_ERROR", "unsupported Wechatpay-Signature-Type")
    if signature.startswith(SIGNTEST_PREFIX):
        raise WechatPayError("SIGN_ERROR", "a WECHATPAY/SIGNTEST/ probe signature is never genuine")
    try:
        fresh = abs(now - int(timestamp)) <= TIMESTAMP_WINDOW_SECONDS
    except ValueError:
        fresh = False
    if not fresh:
        raise WechatPayError("TIMESTAMP_EXPIRED", "the notification's timestamp is outside ±300 s")
    cert = _platform_cert(account, serial)
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise WechatPayError("BAD_NOTIFICATION", "the notification is not UTF-8") from None
    if not rsa_verify(timestamp, nonce, text, signature, cert.public_key()):
        raise WechatPayError("SIGN_ERROR", "the notification's signature does not verify")
    return text


def same_serial(first: str, second: str) -> bool:
    """Certificate serials are hex, written in either case and with or without leading zeros."""
    try:
        return int(first, 16) == int(second, 16)
    except (TypeError, ValueError):
        return False


def _platform_cert(account, serial: str):
    for stored_serial, pem in (account.platform_certs or {}).items():
        if same_serial(stored_serial, serial):
            cert = load_certificate(pem)
            if cert is not None:
                return cert
    raise WechatPayError("SIGN_ERROR", f"no stored WeChat Pay platform certificate has serial {serial}; "
                                       "refresh the account's platform certificates")


def _decrypted_resource(account, resource: Any) -> dict:
    if not isinstance(resource, dict) or resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise WechatPayError("BAD_NOTIFICATION", "the resource is not AEAD_AES_256_GCM")
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    if not nonce or not ciphertext:
        raise WechatPayError("BAD_NOTIFICATION", "the resource lacks its nonce or ciphertext")
    try:
        plain = aes_decrypt(nonce=nonce, ciphertext=ciphertext, associated_data=resource.get("associated_data") or "",
                            apiv3_key=account.secrets.get("apiv3_key") or "")
    except ValueError:  # malformed Base64, or a key of the wrong length
        plain = None
    if plain is None:
        raise WechatPayError("DECRYPT_ERROR", "the resource does not decrypt with the account's APIv3 key")
    try:
        data = json.loads(plain)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise WechatPayError("BAD_NOTIFICATION", "the decrypted resource is not a JSON object")
    return data


def _utc(value: Any) -> datetime | None:
    """An RFC 3339 time with offset (2019-12-26T20:58:27+08:00) as an aware UTC datetime."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise WechatPayError("BAD_NOTIFICATION", f"consume_time {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise WechatPayError("BAD_NOTIFICATION", "consume_time has no UTC offset")
    return moment.astimezone(timezone.utc)
