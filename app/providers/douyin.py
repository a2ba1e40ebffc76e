"""Douyin 生活服务 certificate (voucher) verification: the client.

Protocol (see PROTOCOLS.md): a client token from `POST /oauth/client_token/`
(`client_key`, `client_secret`, `grant_type=client_credential`), sent as the `access-token`
header of every call; JSON bodies; the certificate calls under
`/goodlife/v1/fulfilment/certificate/`: `prepare/` (GET, `code=` or `encrypted_data=`),
`verify/` (POST, `verify_token`, `poi_id`, `encrypted_codes[]`), `cancel/` (POST, `verify_id`,
`certificate_id`, within one hour of verifying) and `get/` (GET, `encrypted_code=`). Every answer
is wrapped: `{"data": {"error_code": 0, "description": "", ...}, "extra": {"error_code": 0,
"logid": ..., "now": ...}}`. Known codes: 2190002 token invalid, 2190008 token expired,
2100005 bad parameter, 2100004 busy.

Written by hand over httpx: there is no maintained Python SDK for the goodlife API.

The client token is cached in Redis (one key per `client_key`, a TTL a little shorter than
`expires_in`) so that every process shares it; a call answered 2190002 / 2190008 drops the
cached token (only if it is still the one that failed), fetches a new one once and repeats the
call once. Transport failures (connection errors, timeouts, 5xx) and 2100004 become
`PlatformUnavailable`. Only idempotent calls (token, prepare, get) are retried, a bounded
number of times with a short backoff. `verify` and `cancel` are never repeated blindly: when
the request may have reached the platform (timeout after sending, 5xx) they raise
`OutcomeUnknown`, and the caller must look the certificate up with `get` before doing anything
else. A `verify_token` is single-use: one prepare is followed by exactly one verify.

**Assumptions** (the public record is silent; the sandbox in `app/sandbox/douyin.py` makes them
the same way, from the same table `ASSUMED_CODES` below; check them with Douyin):

- A refused certificate is answered with a non-zero `data.error_code` and, in `verify`, a
  non-zero per-certificate `verify_results[].result`; the codes are ours:

  | data.error_code | result | meaning | our error |
  |---|---|---|---|
  | 2191001 | 1 | no such certificate (or verify record) | VoucherNotFound |
  | 2191002 | 2 | already verified (no uses left) | VoucherAlreadyUsed |
  | 2191003 | 3 | expired | VoucherExpired |
  | 2191004 | 4 | refunded or refund in progress | VoucherRefunded |
  | 2191005 | 5 | not valid at this poi (store) | VoucherNotValidHere |
  | 2191006 | 6 | not valid yet | VoucherNotYetValid |
  | 2191007 | 7 | cancel window (1 hour) passed | VoucherCancelNotAllowed |
  | 2191008 | 8 | verification already cancelled | VoucherCancelNotAllowed |
  | 2191009 | 9 | verify_token unknown, used or expired | VerifyTokenInvalid |

- `verify` answers `data.error_code` 0 when at least one certificate was verified; when every
  certificate was refused it carries the first refusal's code.
- A wrong `client_key` / `client_secret` is answered with `data.error_code` 10013.
- `prepare` certificates carry `certificate_id`, `order_id`, `code` (the typed code) and
  `buyer_phone_masked` beside the documented fields; `verify_results[]` carry `order_id` and
  `sku_id`; `expire_time` is in Unix seconds; `groupon_type` 1 is a voucher for one visit,
  3 a time card (次卡) with `time_card{times_count, times_used}`.
- `get` answers `certificate{certificate_id, encrypted_code, status, sku, time_card,
  verify_records[]}` with `status` 1 unused, 2 used, 3 expired, 4 refunded.
- `prepare(encrypted_data=...)` is answered like `prepare(code=...)` for the certificate the
  scanned short link names.
- A scanned short link (`https://v.douyin.com/…`) that does not carry `encrypted_data` itself
  answers an HTTP redirect (301/302/303/307/308) whose target URL carries the certificate's
  `object_id` (or `encrypted_data`) as a query parameter; that value is the `encrypted_data` of
  `prepare`. `resolve_short_link` follows the redirects by hand, at most `MAX_LINK_HOPS`, and
  only on Douyin's own hosts (`SHORT_LINK_DOMAINS`) or the account's own platform address (the
  sandbox): a QR code is input from anyone, so it must not make us fetch arbitrary addresses.
  The target itself is never fetched: the parameter is read off the Location header.
- The order query and the verify-record query used by the order sync and the reconciliation
  (`query_orders`, `query_verify_records`) are wholly **assumed**: Douyin's real order-query
  API is not in our protocol notes. Their paths and shapes are in the methods' docstrings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from flask_babel import lazy_gettext as _l

from app.providers import tls_context
from app.providers.vouchers import (PlatformAuthError, PlatformProtocolError, PlatformUnavailable, VerifiedVoucher,
                                    VoucherAlreadyUsed, VoucherCancelNotAllowed, VoucherError, VoucherExpired,
                                    VoucherNotFound, VoucherNotValidHere, VoucherNotYetValid, VoucherPreview,
                                    VoucherRefunded)

PLATFORM = "douyin"
CERT_PATH = "/goodlife/v1/fulfilment/certificate/"
TOKEN_PATH = "/oauth/client_token/"

# Documented codes.
OK = 0
TOKEN_INVALID = 2190002
TOKEN_EXPIRED = 2190008
BAD_PARAMETER = 2100005
BUSY = 2100004
CREDENTIALS_INVALID = 10013  # assumed


class VerifyTokenInvalid(VoucherError):
    message = _l("The voucher check has expired. Scan the voucher again.")


class ShortLinkError(VoucherError):
    message = _l("This Douyin link leads to no voucher. Scan the voucher's QR code in the Douyin app again, or "
                 "type its code.")


SHORT_LINK_DOMAINS = ("douyin.com", "iesdouyin.com")  # and their subdomains (v.douyin.com, ...)
LINK_PARAMETERS = ("encrypted_data", "object_id")
MAX_LINK_HOPS = 5
REDIRECTS = (301, 302, 303, 307, 308)


def encrypted_data_in(link: str) -> str | None:
    """The `encrypted_data` a scanned link carries in its query (`encrypted_data=` or `object_id=`), if any."""
    query = parse_qs(urlsplit(link).query if "://" in link else link.split("?", 1)[-1])
    for name in LINK_PARAMETERS:
        value = (query.get(name) or [""])[0].strip()
        if value:
            return value
    return None


class OutcomeUnknown(PlatformUnavailable):
    """A verify or cancel may or may not have happened: look the certificate up before anything else."""

    message = _l("The platform did not confirm the result. Check the voucher's status before trying again.")
    retryable = False


@dataclass(frozen=True)
class AssumedCode:
    name: str
    error_code: int  # data.error_code
    result: int  # verify_results[].result
    description: str
    error: type[VoucherError]


# The one table of assumed verification codes: the client maps them, the sandbox produces them.
ASSUMED_CODES: dict[str, AssumedCode] = {c.name: c for c in (
    AssumedCode("not_found", 2191001, 1, "certificate not found", VoucherNotFound),
    AssumedCode("already_used", 2191002, 2, "certificate already verified", VoucherAlreadyUsed),
    AssumedCode("expired", 2191003, 3, "certificate expired", VoucherExpired),
    AssumedCode("refunded", 2191004, 4, "certificate refunded", VoucherRefunded),
    AssumedCode("not_valid_here", 2191005, 5, "certificate not valid at this poi", VoucherNotValidHere),
    AssumedCode("not_yet_valid", 2191006, 6, "certificate not valid yet", VoucherNotYetValid),
    AssumedCode("cancel_window_passed", 2191007, 7, "verification older than one hour", VoucherCancelNotAllowed),
    AssumedCode("already_cancelled", 2191008, 8, "verification already cancelled", VoucherCancelNotAllowed),
    AssumedCode("verify_token_invalid", 2191009, 9, "verify_token unknown, used or expired", VerifyTokenInvalid),
)}
BY_ERROR_CODE = {c.error_code: c for c in ASSUMED_CODES.values()}
BY_RESULT = {c.result: c for c in ASSUMED_CODES.values()}

# `get` status numbers (assumed).
STATUS_NAMES = {1: "unused", 2: "used", 3: "expired", 4: "refunded"}
STATUS_NUMBERS = {name: number for number, name in STATUS_NAMES.items()}
GROUPON_TIME_CARD = 3


@dataclass
class CertificateStatus:
    encrypted_code: str
    certificate_id: str
    status: str  # unused | used | expired | refunded
    times_count: int
    times_used: int
    verify_records: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def error_for(code: int, description: str = "") -> VoucherError:
    """Our exception for a non-zero `data.error_code` (documented or assumed)."""
    if code in (TOKEN_INVALID, TOKEN_EXPIRED, CREDENTIALS_INVALID):
        return PlatformAuthError(description, platform_code=code)
    if code == BUSY:
        return PlatformUnavailable(description, platform_code=code)
    known = BY_ERROR_CODE.get(code)
    if known:
        return known.error(description or known.description, platform_code=code)
    if code == BAD_PARAMETER:
        return VoucherError(description or "bad parameter", platform_code=code)
    return VoucherError(description or f"error {code}", platform_code=code)


class _TokenRejected(Exception):
    def __init__(self, token: str):
        self.token = token


def _datetime(seconds: Any) -> datetime | None:
    if seconds in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc)


class DouyinClient:
    """One Douyin app's client (a `client_key`); stateless apart from the shared token cache."""

    def __init__(self, base_url: str, client_key: str, client_secret: str, timeout: float = 5.0,
                 transport: httpx.BaseTransport | None = None, retries: int = 2, backoff: float = 0.2,
                 redis: Any = None, sleep: Callable[[float], None] = time.sleep, http: httpx.Client | None = None):
        self.base_url = base_url.rstrip("/")
        self.client_key = client_key
        self.client_secret = client_secret
        self.timeout = timeout
        self.retries = retries  # extra attempts of an idempotent call
        self.backoff = backoff  # seconds before the first retry, doubled each time
        self._redis = redis
        self._sleep = sleep
        # A shared pool (`http`, see app.vouchers.platforms.client_for) keeps its connections open
        # between requests and is not closed here; without one the client owns its own.
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport, verify=tls_context())

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> "DouyinClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- token -----------------------------------------------------------------------------

    @property
    def redis(self):
        if self._redis is None:
            from app.extensions import get_redis

            self._redis = get_redis()
        return self._redis

    @property
    def token_key(self) -> str:
        return f"douyin:client_token:{self.client_key}"

    def access_token(self) -> str:
        """The cached client token, fetched when there is none."""
        cached = self.redis.get(self.token_key)
        if cached:
            return cached.decode() if isinstance(cached, bytes) else cached
        return self._fetch_token()

    def check_credentials(self) -> None:
        """Fetch a fresh client token (not the cached one): raises PlatformAuthError when Douyin refuses us."""
        self._fetch_token()

    def _fetch_token(self) -> str:
        body = {"client_key": self.client_key, "client_secret": self.client_secret,
                "grant_type": "client_credential"}
        data = self._with_retries(lambda: self._send("POST", TOKEN_PATH, json=body))
        if data.get("error_code", 0) != OK:
            raise error_for(int(data["error_code"]), str(data.get("description", "")))
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not token or not isinstance(expires_in, int) or expires_in <= 0:
            raise PlatformProtocolError("client_token answer without access_token / expires_in")
        ttl = expires_in - min(300, max(1, expires_in // 10))  # a little before Douyin expires it
        if ttl > 0:
            self.redis.set(self.token_key, token, ex=ttl)
        return token

    def _drop_token(self, token: str) -> None:
        """Forget a rejected token, unless another process has already replaced it."""
        cached = self.redis.get(self.token_key)
        if cached is not None and (cached.decode() if isinstance(cached, bytes) else cached) == token:
            self.redis.delete(self.token_key)

    # --- transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, params: dict | None = None, json: dict | None = None,
              token: str | None = None, idempotent: bool = True) -> dict[str, Any]:
        """One HTTP exchange: the `data` of the wrapper, or an exception."""
        headers = {"Accept": "application/json", **({"access-token": token} if token else {})}
        try:
            response = self._http.request(method, self.base_url + path, params=params, json=json, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise PlatformUnavailable(f"cannot reach Douyin: {exc.__class__.__name__}") from exc
        except httpx.TransportError as exc:  # read/write timeouts, dropped connections: the call may have arrived
            if idempotent:
                raise PlatformUnavailable(f"Douyin did not answer: {exc.__class__.__name__}") from exc
            raise OutcomeUnknown(f"Douyin did not answer: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            if idempotent:
                raise PlatformUnavailable(f"Douyin answered HTTP {response.status_code}")
            raise OutcomeUnknown(f"Douyin answered HTTP {response.status_code}")
        try:
            body = response.json()
            data = body.get("data")
            extra = body.get("extra") or {}
        except (ValueError, AttributeError) as exc:
            raise PlatformProtocolError(f"unreadable answer (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise PlatformProtocolError(f"answer without data (HTTP {response.status_code})")
        code = int(data.get("error_code") or extra.get("error_code") or 0)
        if code in (TOKEN_INVALID, TOKEN_EXPIRED) and token:
            raise _TokenRejected(token)
        if code == BUSY:
            raise PlatformUnavailable(str(data.get("description", "busy")), platform_code=code)
        if response.status_code >= 400 and code == OK:
            raise PlatformProtocolError(f"HTTP {response.status_code}")
        data["error_code"] = code
        data.setdefault("description", data.get("description") or extra.get("description", ""))
        return data

    def _with_retries(self, attempt: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        delay = self.backoff
        for n in range(self.retries + 1):
            try:
                return attempt()
            except PlatformUnavailable as exc:
                if n == self.retries or getattr(exc, "exhausted", False):  # a nested call (the token) already retried
                    exc.exhausted = True  # type: ignore[attr-defined]
                    raise
                self._sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _call(self, method: str, name: str, *, params: dict | None = None, json: dict | None = None,
              idempotent: bool) -> dict[str, Any]:
        """A certificate call with the token; a rejected token is replaced once and the call repeated once."""
        path = CERT_PATH + name + "/"

        def once() -> dict[str, Any]:
            for renewed in (False, True):
                token = self.access_token()
                try:
                    return self._send(method, path, params=params, json=json, token=token, idempotent=idempotent)
                except _TokenRejected as rejected:
                    self._drop_token(rejected.token)
                    if renewed:
                        raise PlatformAuthError("Douyin rejected a freshly issued token", platform_code=TOKEN_INVALID)
            raise AssertionError("unreachable")

        return self._with_retries(once) if idempotent else once()

    # --- certificate calls -----------------------------------------------------------------

    def prepare(self, code: str | None = None, encrypted_data: str | None = None) -> VoucherPreview:
        """What a typed code (or a scanned short link's `encrypted_data`) is; issues a single-use verify_token."""
        if bool(code) == bool(encrypted_data):
            raise ValueError("give exactly one of code and encrypted_data")
        params = {"code": code.strip()} if code else {"encrypted_data": encrypted_data}
        data = self._call("GET", "prepare", params=params, idempotent=True)
        if data["error_code"] != OK:
            raise error_for(data["error_code"], data.get("description", ""))
        certificates = data.get("certificates") or []
        verify_token = data.get("verify_token")
        if not certificates or not verify_token:
            raise PlatformProtocolError("prepare answer without certificates or verify_token")
        first = certificates[0]
        try:
            sku = first.get("sku") or {}
            amount = first.get("amount") or {}
            time_card = first.get("time_card") or {}
            groupon_type = int(sku.get("groupon_type") or 0)
            if time_card and groupon_type == GROUPON_TIME_CARD:
                uses_left = int(time_card.get("times_count", 0)) - int(time_card.get("times_used", 0))
                kind = "multi_use"
            else:
                uses_left, kind = 1, "single"
            return VoucherPreview(
                platform=PLATFORM,
                code=code or first.get("code") or "",
                deal_id=str(sku.get("sku_id", "")),
                title=str(sku.get("title", "")),
                original_price_fen=_int_or_none(amount.get("original_amount", sku.get("market_price"))),
                paid_price_fen=_int_or_none(amount.get("pay_amount")),
                uses_left=uses_left,
                expires_at=_datetime(first.get("expire_time")),
                buyer_phone_masked=first.get("buyer_phone_masked"),
                order_id=first.get("order_id"),
                voucher_kind=kind,
                verify_token=str(verify_token),
                encrypted_code=str(first["encrypted_code"]),
                raw=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PlatformProtocolError(f"prepare answer not understood: {exc}") from exc

    def resolve_short_link(self, link: str) -> str:
        """The `encrypted_data` of a scanned short link: read off the link, else off the redirects it
        answers (see the module's assumptions). Idempotent GETs, retried like prepare."""
        url = link.strip()
        for _ in range(MAX_LINK_HOPS + 1):
            found = encrypted_data_in(url)
            if found:
                return found
            if not self._may_follow(url):
                raise ShortLinkError(f"not a Douyin link: {urlsplit(url).hostname or url[:60]}")
            response = self._with_retries(lambda target=url: self._hop(target))
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or not location:
                raise ShortLinkError(f"the link answered HTTP {response.status_code} without a redirect")
            url = urljoin(url, location)
        raise ShortLinkError("too many redirects")

    def _may_follow(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return False
        own = urlsplit(self.base_url)
        if (parts.scheme, host, parts.port) == (own.scheme, (own.hostname or "").lower(), own.port):
            return True  # the platform's own address (the sandbox serves its short links there)
        return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in SHORT_LINK_DOMAINS)

    def _hop(self, url: str) -> httpx.Response:
        try:
            response = self._http.get(url, follow_redirects=False)
        except httpx.TransportError as exc:
            raise PlatformUnavailable(f"the short link did not answer: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise PlatformUnavailable(f"the short link answered HTTP {response.status_code}")
        return response

    def verify(self, verify_token: str, poi_id: str, encrypted_codes: str | Sequence[str]) -> VerifiedVoucher:
        """Verify the prepared certificate(s) at a store (poi). Never repeated: see `OutcomeUnknown`.

        With several codes the first verified one is returned and `raw` holds every result; if any
        certificate was refused its error is raised, carrying the verified ones in `.verified`.
        """
        codes = [encrypted_codes] if isinstance(encrypted_codes, str) else list(encrypted_codes)
        body = {"verify_token": verify_token, "poi_id": poi_id, "encrypted_codes": codes}
        data = self._call("POST", "verify", json=body, idempotent=False)
        results = data.get("verify_results") or []
        if data["error_code"] != OK and not results:
            raise error_for(data["error_code"], data.get("description", ""))
        verified: list[VerifiedVoucher] = []
        refused: VoucherError | None = None
        for item in results:
            result = int(item.get("result", -1))
            if result == 0:
                verified.append(VerifiedVoucher(
                    platform=PLATFORM, code=str(item.get("origin_code") or item.get("code") or ""),
                    deal_id=str(item.get("sku_id", "")), verify_id=str(item["verify_id"]),
                    certificate_id=str(item["certificate_id"]), order_id=item.get("order_id"), raw=data))
            elif refused is None:
                known = BY_RESULT.get(result)
                refused = (known.error(str(item.get("msg") or known.description), platform_code=known.error_code)
                           if known else VoucherError(str(item.get("msg", "")), platform_code=result))
        if refused is not None:
            refused.verified = verified  # type: ignore[attr-defined]
            raise refused
        if not verified:
            raise PlatformProtocolError("verify answer without results")
        return verified[0]

    def cancel(self, verify_id: str, certificate_id: str) -> dict[str, Any]:
        """Undo a verification (Douyin allows it within one hour). Never repeated: see `OutcomeUnknown`."""
        data = self._call("POST", "cancel", json={"verify_id": verify_id, "certificate_id": certificate_id},
                          idempotent=False)
        if data["error_code"] != OK:
            raise error_for(data["error_code"], data.get("description", ""))
        return data

    def get(self, encrypted_code: str) -> CertificateStatus:
        """A certificate's status and its verify records."""
        data = self._call("GET", "get", params={"encrypted_code": encrypted_code}, idempotent=True)
        if data["error_code"] != OK:
            raise error_for(data["error_code"], data.get("description", ""))
        try:
            cert = data["certificate"]
            time_card = cert.get("time_card") or {}
            return CertificateStatus(
                encrypted_code=str(cert["encrypted_code"]), certificate_id=str(cert["certificate_id"]),
                status=STATUS_NAMES[int(cert["status"])],
                times_count=int(time_card.get("times_count", 1)), times_used=int(time_card.get("times_used", 0)),
                verify_records=list(cert.get("verify_records") or []), raw=data)
        except (KeyError, TypeError, ValueError) as exc:
            raise PlatformProtocolError(f"get answer not understood: {exc}") from exc


    # --- order and verify-record lists (**assumed**: not in our protocol notes) -------------------

    def query_orders(self, start: datetime, end: datetime, poi_id: str | None = None,
                     page_size: int = 100) -> list[CertificateOrder]:
        """Every certificate bought in [start, end) (valid at `poi_id`, when given). Retried.

        **Assumed** (Douyin's real order-query API is not in our protocol notes; the sandbox makes
        the same assumption): `GET /goodlife/v1/trade/order/query/` with `start_time`, `end_time`
        (Unix seconds, order creation), optional `poi_id`, `page_num` (from 1), `page_size` (max
        100); answers `data.orders[]`, each `{order_id, create_time, certificates[]}` where a
        certificate is shaped like `get`'s (with `status` and `time_card`), and `data.page.total`.
        """
        orders: list[CertificateOrder] = []
        page_num = 1
        while True:
            params = {"start_time": int(start.timestamp()), "end_time": int(end.timestamp()),
                      "page_num": page_num, "page_size": page_size}
            if poi_id:
                params["poi_id"] = poi_id
            data = self._call_path("GET", ORDER_QUERY_PATH, params=params)
            page = data.get("orders")
            if not isinstance(page, list):
                raise PlatformProtocolError("order query answer without orders")
            try:
                for order in page:
                    for cert in order.get("certificates") or []:
                        orders.append(_certificate_order(order, cert))
                total = int((data.get("page") or {}).get("total") or 0)
            except (KeyError, TypeError, ValueError) as exc:
                raise PlatformProtocolError(f"order query answer not understood: {exc}") from exc
            if not page or page_num * page_size >= total:
                return orders
            page_num += 1

    def query_verify_records(self, start: datetime, end: datetime, poi_id: str | None = None,
                             page_size: int = 100) -> list[VerifyRecord]:
        """Every verification made in [start, end) (at `poi_id`, when given), cancelled ones flagged. Retried.

        **Assumed**: `GET /goodlife/v1/fulfilment/certificate/verify_record/query/` with
        `start_time`, `end_time` (Unix seconds, verify time), optional `poi_id`, `page_num`,
        `page_size`; answers `data.records[]` `{verify_id, certificate_id, encrypted_code, code,
        poi_id, verify_time, cancelled}` and `data.page.total`.
        """
        records: list[VerifyRecord] = []
        page_num = 1
        while True:
            params = {"start_time": int(start.timestamp()), "end_time": int(end.timestamp()),
                      "page_num": page_num, "page_size": page_size}
            if poi_id:
                params["poi_id"] = poi_id
            data = self._call_path("GET", CERT_PATH + "verify_record/query/", params=params)
            page = data.get("records")
            if not isinstance(page, list):
                raise PlatformProtocolError("verify record answer without records")
            try:
                records.extend(VerifyRecord(
                    verify_id=str(item["verify_id"]), certificate_id=str(item["certificate_id"]),
                    encrypted_code=str(item["encrypted_code"]), code=str(item.get("code") or ""),
                    poi_id=item.get("poi_id"), verified_at=_datetime(item.get("verify_time")),
                    cancelled=bool(item.get("cancelled"))) for item in page)
                total = int((data.get("page") or {}).get("total") or 0)
            except (KeyError, TypeError, ValueError) as exc:
                raise PlatformProtocolError(f"verify record answer not understood: {exc}") from exc
            if not page or page_num * page_size >= total:
                return records
            page_num += 1

    def _call_path(self, method: str, path: str, *, params: dict) -> dict[str, Any]:
        """An idempotent call on any path, with the token renewal and retries of `_call`."""

        def once() -> dict[str, Any]:
            for renewed in (False, True):
                token = self.access_token()
                try:
                    return self._send(method, path, params=params, token=token, idempotent=True)
                except _TokenRejected as rejected:
                    self._drop_token(rejected.token)
                    if renewed:
                        raise PlatformAuthError("Douyin rejected a freshly issued token", platform_code=TOKEN_INVALID)
            raise AssertionError("unreachable")

        data = self._with_retries(once)
        if data["error_code"] != OK:
            raise error_for(data["error_code"], data.get("description", ""))
        return data


ORDER_QUERY_PATH = "/goodlife/v1/trade/order/query/"  # **assumed**


@dataclass
class CertificateOrder:
    """One certificate of a bought order, from the (**assumed**) order query."""

    order_id: str
    ordered_at: datetime | None
    code: str
    encrypted_code: str
    certificate_id: str
    sku_id: str
    title: str
    groupon_type: int
    original_price_fen: int | None
    paid_price_fen: int | None
    buyer_phone_masked: str | None
    expires_at: datetime | None
    status: str  # unused | used | expired | refunded
    times_count: int
    times_used: int


@dataclass
class VerifyRecord:
    """One verification, from the (**assumed**) verify-record query."""

    verify_id: str
    certificate_id: str
    encrypted_code: str
    code: str
    poi_id: str | None
    verified_at: datetime | None
    cancelled: bool


def _certificate_order(order: dict[str, Any], cert: dict[str, Any]) -> CertificateOrder:
    sku = cert.get("sku") or {}
    amount = cert.get("amount") or {}
    time_card = cert.get("time_card") or {}
    return CertificateOrder(
        order_id=str(order.get("order_id") or cert.get("order_id") or ""),
        ordered_at=_datetime(order.get("create_time")),
        code=str(cert.get("code") or ""), encrypted_code=str(cert["encrypted_code"]),
        certificate_id=str(cert["certificate_id"]), sku_id=str(sku.get("sku_id", "")),
        title=str(sku.get("title", "")), groupon_type=int(sku.get("groupon_type") or 0),
        original_price_fen=_int_or_none(amount.get("original_amount", sku.get("market_price"))),
        paid_price_fen=_int_or_none(amount.get("pay_amount")),
        buyer_phone_masked=cert.get("buyer_phone_masked"), expires_at=_datetime(cert.get("expire_time")),
        status=STATUS_NAMES[int(cert["status"])],
        times_count=int(time_card.get("times_count", 1)), times_used=int(time_card.get("times_used", 0)))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
