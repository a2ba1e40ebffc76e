"""云数汇 (Lakala's coupon service for WeChat / Alipay / UnionPay) client.

Owns our side of 云数汇: the signed v3 calls (issue a coupon, query an issue), verification of
every answer by the platform certificate its serial names, the OpenID hand-off URL, verification
and parsing of the two callbacks 云数汇 sends us (issuance and redemption), their
acknowledgement bodies, and the mapping of answers to `IssueAnswer` / `QueryAnswer` and of
failures to `YunshuhuiError` (permanent: the platform said no) and `YunshuhuiUnavailable`
(transient: we do not know what happened; retry with the same `mer_order_id`, or query).

The signing scheme itself is `app.providers.lklapi`. Credentials come from a `TunnelAccount`
(tunnel "yunshuhui"): base_url, openid_url, app_id, serial_no, member_id, platform_certs
{serial: PEM}, notify_cert, secrets {"private_key": PEM}.

The client never retries by itself: an issue is idempotent upstream on `mer_order_id`, and the
issuance pipeline owns retries with backoff (and the query that settles an unknown outcome).

Assumptions (PROTOCOLS.md leaves them open; the sandbox, app/sandbox/yunshuhui.py, plays them
the same way):

- **assumed** paths: `POST {base_url}/api/v3/yunshuhui/coupon/issue` and `.../coupon/query`.
- **assumed**: query `req_data` carries `member_id` too (the issue is found by member_id +
  mer_order_id); an unknown order answers `data.resCode` "100001" (`QueryAnswer.not_found`).
- **assumed**: an issue that was accepted but could not be made answers `data.resCode` other
  than "000000" with `trade_status` "FAIL" (a missing trade_status with a non-zero resCode is
  read as FAIL); validation errors answer the envelope code "999999" (`YunshuhuiError`).
- **assumed**: gateway refusals (unknown appid or serial, bad signature, stale timestamp, bad or
  replayed nonce, malformed envelope) answer HTTP 400/401 with a signed gateway body
  `{"code":"BBS4xxxx","msg":…}`; they are permanent (`YunshuhuiError`, code as sent).
- **assumed**: the answer carries the `Lklapi-*` headers on every answer, errors included; an
  answer without them, or whose signature or appid does not match, is `YunshuhuiUnavailable`
  (outcome unknown: it may be forged or mangled, so it decides nothing).
- **assumed**: amounts in query answers are fen like the redemption callback; times
  (`gmt_used`, `tradeCreateTime`, `tradePaymentTime`) are Beijing "yyyy-MM-dd HH:mm:ss"
  ("yyyyMMddHHmmss" is read too).
- **assumed**: the redemption callback may carry `merchant_no`, `merchant_name` and
  `pay_trade_no` (the payment in which the coupon was used); read when present.
- The issuance callback's body `sign` field is ignored: the header signature is authoritative.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from app.core.money import MoneyError, yuan_to_fen
from app.core.timeutil import BUSINESS_TZ
from app.providers import lklapi, tls_context

if TYPE_CHECKING:
    from app.coupons.models import TunnelAccount

TUNNEL = "yunshuhui"
PATH_ISSUE = "/api/v3/yunshuhui/coupon/issue"  # **assumed**
PATH_QUERY = "/api/v3/yunshuhui/coupon/query"  # **assumed**
DEFAULT_TIMEOUT = httpx.Timeout(8.0, connect=3.0)
CALLBACK_WINDOW_SECONDS = 300

CODE_OK = "000000"  # envelope code of the 云数汇 calls, and data.resCode of a good answer
CODE_GATEWAY_OK = "BBS00000"  # envelope code of the Lakala gateway's own answers
CODE_FAILED = "999999"
RES_NOT_FOUND = "100001"  # **assumed** query resCode of an unknown order
TRADE_STATUSES = ("PROCESS", "SUCCESS", "FAIL")
REDEMPTION_STATUSES = ("USED", "EXPIRED")
ACK_SUCCESS = {"code": "SUCCESS", "msg": "处理成功"}
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S")

# Field lengths of the issue call (PROTOCOLS.md): name -> (min, max).
ISSUE_FIELD_LENGTHS = {"member_id": (10, 20), "activity_id": (10, 10), "owner_id": (8, 8),
                       "promotion_id": (1, 32), "channel_openid": (1, 128), "mer_order_id": (1, 64)}


class YunshuhuiError(Exception):
    """云数汇 (or its gateway) said no, for good: asking again the same way gets the same answer."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class YunshuhuiUnavailable(YunshuhuiError):
    """No trustworthy answer (timeout, connection, 5xx, unparsable or badly signed answer): the
    outcome is unknown; retry with the same mer_order_id, or query."""


class CallbackFormatError(ValueError):
    """A callback body that is not the JSON object 云数汇 sends."""


def ack_fail(msg: str) -> dict[str, str]:
    """The body that tells 云数汇 we did not take a callback (it will send it again)."""
    return {"code": "FAIL", "msg": msg}


@dataclass(frozen=True)
class IssueAnswer:
    res_code: str
    fail_msg: str | None
    trade_status: str | None  # PROCESS | SUCCESS | FAIL
    third_coupon_id: str | None
    trade_no: str | None
    batch_code: str | None
    mer_order_id: str | None
    raw: dict

    @property
    def succeeded(self) -> bool:
        return self.trade_status == "SUCCESS"

    @property
    def pending(self) -> bool:
        return self.trade_status == "PROCESS"

    @property
    def failed(self) -> bool:
        return self.trade_status == "FAIL"


@dataclass(frozen=True)
class QueryAnswer:
    res_code: str
    fail_msg: str | None
    trade_status: str | None  # PROCESS | SUCCESS | FAIL; None when not found
    redemption_status: str | None  # USED | EXPIRED | None (from tradeStatus)
    promo_amount_fen: int | None
    total_amount_fen: int | None
    org_amount_fen: int | None
    used_at: datetime | None  # UTC
    raw: dict

    @property
    def not_found(self) -> bool:
        return self.res_code == RES_NOT_FOUND


# ---- value parsing (answers and callbacks) ------------------------------------------------------

def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _fen(value: Any) -> int | None:
    """An integer fen amount as sent (number or digit string); empty is None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"bad amount {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise ValueError(f"bad amount {value!r}")
    return int(text)


def _beijing_time(value: Any) -> datetime | None:
    """A Beijing wall-clock time as an aware UTC datetime; empty is None."""
    if value is None or value == "":
        return None
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(str(value).strip(), fmt).replace(tzinfo=BUSINESS_TZ).astimezone(timezone.utc)
        except ValueError:
            continue
    raise ValueError(f"bad time {value!r}")


def _status(value: Any, allowed: tuple[str, ...]) -> str | None:
    text = _text(value)
    return text.upper() if text and text.upper() in allowed else None


# ---- one HTTP client per process per platform origin -------------------------------------------

_http_clients: dict[tuple[int, str], httpx.Client] = {}
_http_lock = threading.Lock()


def _shared_http(base_url: str) -> httpx.Client:
    """httpx.Client is thread-safe and pools connections; one per process (a forked worker gets
    its own) and per origin, so the TLS context and connections are reused across calls."""
    origin = httpx.URL(base_url)
    key = (os.getpid(), f"{origin.scheme}://{origin.netloc.decode()}")
    client = _http_clients.get(key)
    if client is None:
        with _http_lock:
            client = _http_clients.get(key)
            if client is None:
                client = httpx.Client(timeout=DEFAULT_TIMEOUT, verify=tls_context(),
                                      limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))
                _http_clients[key] = client
    return client


# ---- the client ---------------------------------------------------------------------------------

class YunshuhuiClient:
    """One bank's access to 云数汇: its appid, our certificate serial and key, its member id."""

    def __init__(self, *, base_url: str, app_id: str, serial_no: str, private_key_pem: str, member_id: str,
                 platform_certs: dict[str, str], openid_page: str | None = None,
                 timeout: float | httpx.Timeout | None = None, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.serial_no = serial_no
        self.member_id = member_id
        self.platform_certs = dict(platform_certs or {})
        self.openid_page = openid_page
        self._private_key_pem = private_key_pem
        self._timeout = timeout
        self._own_http = transport is not None
        self._http = (httpx.Client(timeout=timeout or DEFAULT_TIMEOUT, transport=transport, verify=tls_context())
                      if transport is not None else _shared_http(self.base_url))

    @classmethod
    def for_account(cls, account: TunnelAccount, *, transport: httpx.BaseTransport | None = None,
                    timeout: float | httpx.Timeout | None = None) -> YunshuhuiClient:
        """The client configured by a bank's 云数汇 tunnel account (`transport`: tests only)."""
        if account.tunnel != TUNNEL:
            raise YunshuhuiError("CONFIG", f"tunnel account {account.id} is not a 云数汇 account")
        private_key = (account.secrets or {}).get("private_key")
        missing = [name for name, value in (("base_url", account.base_url), ("app_id", account.app_id),
                                            ("serial_no", account.serial_no), ("member_id", account.member_id),
                                            ("private_key", private_key), ("platform_certs", account.platform_certs))
                   if not value]
        if missing:
            raise YunshuhuiError("CONFIG", f"the 云数汇 account lacks {', '.join(missing)}")
        return cls(base_url=account.base_url, app_id=account.app_id, serial_no=account.serial_no,
                   private_key_pem=private_key, member_id=account.member_id, platform_certs=account.platform_certs,
                   openid_page=account.openid_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> YunshuhuiClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- the calls --------------------------------------------------------------------------

    def issue(self, *, activity_id: str, owner_id: str, promotion_id: str, channel_openid: str, mer_order_id: str,
              write_off_notify: str, post_notify: str) -> IssueAnswer:
        """Ask 云数汇 to issue one coupon; idempotent upstream on (member_id, mer_order_id)."""
        req_data = {"member_id": self.member_id, "activity_id": activity_id, "owner_id": owner_id,
                    "promotion_id": promotion_id, "channel_openid": channel_openid, "mer_order_id": mer_order_id,
                    "writeOffNotify": write_off_notify, "postNotify": post_notify}
        _check_lengths(req_data)
        data = self._call(PATH_ISSUE, req_data)
        res_code = _text(data.get("resCode")) or CODE_OK
        trade_status = _text(data.get("trade_status"))
        if trade_status is None and res_code != CODE_OK:
            trade_status = "FAIL"
        if trade_status not in TRADE_STATUSES:
            raise YunshuhuiUnavailable("ANSWER", f"unexpected trade_status {trade_status!r}")
        answered_order = _text(data.get("mer_order_id"))
        if answered_order and answered_order != mer_order_id:
            raise YunshuhuiUnavailable("ANSWER", f"the answer is for order {answered_order}, not {mer_order_id}")
        return IssueAnswer(res_code=res_code, fail_msg=_text(data.get("failMsg")), trade_status=trade_status,
                           third_coupon_id=_text(data.get("third_coupon_id")), trade_no=_text(data.get("trade_no")),
                           batch_code=_text(data.get("batch_code")), mer_order_id=answered_order or mer_order_id,
                           raw=data)

    def query(self, *, owner_id: str, mer_order_id: str, activity_id: str, trade_no: str | None = None) -> QueryAnswer:
        """What 云数汇 knows of one issue: its trade status and, once used or expired, the redemption."""
        req_data = {"member_id": self.member_id, "owner_id": owner_id, "mer_order_id": mer_order_id,
                    "activity_id": activity_id}
        if trade_no:
            req_data["trade_no"] = trade_no
        data = self._call(PATH_QUERY, req_data)
        res_code = _text(data.get("resCode")) or CODE_OK
        trade_status = _text(data.get("trade_status"))
        if trade_status is not None and trade_status not in TRADE_STATUSES:
            raise YunshuhuiUnavailable("ANSWER", f"unexpected trade_status {trade_status!r}")
        try:
            return QueryAnswer(
                res_code=res_code, fail_msg=_text(data.get("failMsg")), trade_status=trade_status,
                redemption_status=_status(data.get("tradeStatus"), REDEMPTION_STATUSES),
                promo_amount_fen=_fen(data.get("promo_amount")), total_amount_fen=_fen(data.get("total_amount")),
                org_amount_fen=_fen(data.get("org_amount")), used_at=_beijing_time(data.get("gmt_used")), raw=data)
        except ValueError as exc:
            raise YunshuhuiUnavailable("ANSWER", str(exc)) from exc

    def openid_url(self, callback_url: str) -> str:
        """Where to send an H5 visitor for its openid; it comes back to `callback_url` with
        `openid=…&from=dshy` appended."""
        if not self.openid_page:
            raise YunshuhuiError("CONFIG", "the 云数汇 account has no OpenID page")
        separator = "&" if "?" in self.openid_page else "?"
        return f"{self.openid_page}{separator}wmcb={quote(callback_url, safe='')}"

    # ---- plumbing ---------------------------------------------------------------------------

    def signed_request(self, path: str, req_data: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
        """URL, exact body bytes and headers of one call (public so tests can inspect the signing)."""
        body = json.dumps(lklapi.envelope(req_data), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Authorization": lklapi.request_authorization(self.app_id, self.serial_no, self._private_key_pem,
                                                                 body),
                   "Content-Type": "application/json; charset=utf-8", "Accept": "application/json"}
        return self.base_url + path, body, headers

    def _call(self, path: str, req_data: dict[str, Any]) -> dict[str, Any]:
        url, body, headers = self.signed_request(path, req_data)
        try:
            kwargs = {"timeout": self._timeout} if self._timeout is not None and not self._own_http else {}
            response = self._http.post(url, content=body, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise YunshuhuiUnavailable("TIMEOUT", f"no answer in time: {exc}") from exc
        except httpx.TransportError as exc:
            raise YunshuhuiUnavailable("CONNECTION", f"could not reach 云数汇: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise YunshuhuiUnavailable(f"HTTP{response.status_code}", "云数汇 is unavailable")
        answer = self._verified_json(response)
        code = _text(answer.get("code")) or ""
        if code in (CODE_OK, CODE_GATEWAY_OK) and response.status_code == 200:
            data = answer.get("data", answer.get("resp_data"))
            if not isinstance(data, dict):
                raise YunshuhuiUnavailable("ANSWER", "the answer has no data")
            return data
        raise YunshuhuiError(code or f"HTTP{response.status_code}", _text(answer.get("msg")) or "refused")

    def _verified_json(self, response: httpx.Response) -> dict[str, Any]:
        body = response.content
        try:
            lklapi.verify_response(response.headers, body, self.platform_certs)
        except lklapi.SignatureError as exc:
            raise YunshuhuiUnavailable("SIGNATURE", f"HTTP {response.status_code}: {exc}") from exc
        if response.headers.get("Lklapi-Appid") != self.app_id:
            raise YunshuhuiUnavailable("SIGNATURE", "the answer was signed for another appid")
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise YunshuhuiUnavailable("ANSWER", "the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise YunshuhuiUnavailable("ANSWER", "the answer is not a JSON object")
        return answer


def _check_lengths(req_data: dict[str, Any]) -> None:
    """Refuse before sending what 云数汇 would refuse (a permanent error either way)."""
    for name, (low, high) in ISSUE_FIELD_LENGTHS.items():
        value = str(req_data.get(name) or "")
        if not low <= len(value) <= high:
            raise YunshuhuiError("VALIDATION", f"{name} must be {low}–{high} characters")


# ---- callbacks ----------------------------------------------------------------------------------

def verify_callback(account: TunnelAccount, authorization: str | None, body: bytes, *,
                    now: float | None = None, window_seconds: int = CALLBACK_WINDOW_SECONDS) -> lklapi.Authorization:
    """Check a callback's `Authorization` (timestamp, nonce_str, signature over the three lines)
    with the account's notification certificate, and that its timestamp is within ±5 minutes.
    Replayed nonces are the caller's to reject (it keeps the nonces it has seen).
    Raises lklapi.SignatureError."""
    if not account.notify_cert:
        raise lklapi.SignatureError("the 云数汇 account has no notification certificate")
    auth = lklapi.verify_callback(authorization, body, account.notify_cert)
    if not lklapi.NONCE_PATTERN.match(auth.nonce_str):
        raise lklapi.SignatureError("nonce_str must be 12 to 32 letters and digits")
    if not lklapi.is_fresh(auth.timestamp, window_seconds, now=now):
        raise lklapi.SignatureError("the callback's timestamp is outside the allowed window")
    return auth


def _callback_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise CallbackFormatError("the callback body is not JSON") from exc
    if not isinstance(data, dict):
        raise CallbackFormatError("the callback body is not a JSON object")
    return data


def parse_issuance_callback(body: bytes) -> dict[str, Any]:
    """The issuance callback (to postNotify): callTradeNo is our mer_order_id, amount yuan -> fen.
    Keys: org_id, mer_order_id, trade_status (SUCCESS|FAIL), fail_msg, amount_fen,
    trade_created_at, trade_paid_at (UTC), event_key, raw."""
    data = _callback_json(body)
    mer_order_id = _text(data.get("callTradeNo"))
    trade_status = _status(data.get("tradeStatus"), ("SUCCESS", "FAIL"))
    if not mer_order_id or trade_status is None:
        raise CallbackFormatError("the issuance callback lacks callTradeNo or a tradeStatus of SUCCESS/FAIL")
    try:
        amount_fen = yuan_to_fen(data.get("amount"))
        created, paid = _beijing_time(data.get("tradeCreateTime")), _beijing_time(data.get("tradePaymentTime"))
    except (MoneyError, ValueError) as exc:
        raise CallbackFormatError(str(exc)) from exc
    return {"org_id": _text(data.get("orgId")), "mer_order_id": mer_order_id, "trade_status": trade_status,
            "fail_msg": _text(data.get("failMsg")), "amount_fen": amount_fen, "trade_created_at": created,
            "trade_paid_at": paid, "event_key": f"ysh:issuance:{mer_order_id}:{trade_status}", "raw": _plain(data)}


def parse_redemption_callback(body: bytes) -> dict[str, Any]:
    """The redemption callback (核销, to writeOffNotify). Keys: member_id, owner_id,
    channel_openid, promotion_id, third_coupon_id, activity_id, mer_order_id, trade_no,
    redemption_status (USED|EXPIRED), promo_amount_fen, total_amount_fen, org_amount_fen,
    used_at (UTC), merchant_no, merchant_name, pay_trade_no, event_key, raw."""
    data = _callback_json(body)
    status = _status(data.get("tradeStatus"), REDEMPTION_STATUSES)
    mer_order_id = _text(data.get("mer_order_id"))
    third_coupon_id = _text(data.get("third_coupon_id"))
    if status is None or not (mer_order_id or third_coupon_id):
        raise CallbackFormatError("the redemption callback lacks mer_order_id/third_coupon_id or a tradeStatus of "
                                  "USED/EXPIRED")
    try:
        amounts = {f"{name}_fen": _fen(data.get(name)) for name in ("promo_amount", "total_amount", "org_amount")}
        used_at = _beijing_time(data.get("gmt_used"))
    except ValueError as exc:
        raise CallbackFormatError(str(exc)) from exc
    fields = {name: _text(data.get(name)) for name in ("member_id", "owner_id", "channel_openid", "promotion_id",
                                                       "activity_id", "trade_no", "merchant_no", "merchant_name",
                                                       "pay_trade_no")}
    return {**fields, "third_coupon_id": third_coupon_id, "mer_order_id": mer_order_id, "redemption_status": status,
            **amounts, "used_at": used_at,
            "event_key": f"ysh:redemption:{mer_order_id or third_coupon_id}:{status}", "raw": _plain(data)}


def callback_body(payload: dict[str, Any]) -> bytes:
    """A callback or acknowledgement body as 云数汇 writes it (compact UTF-8 JSON)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    """Decimals (exact yuan) as strings, so `raw` can be stored as JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Decimal) else value
