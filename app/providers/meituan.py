"""Meituan 到店团购券 (group-buy voucher) verification client.

Owns Meituan's side of the voucher line: request signing, the five receipt calls (prepare,
consume, reverse consume, the by-date list, the consumption history of one code), mapping of
Meituan's answers to `VoucherPreview` / `VerifiedVoucher` and of its error codes to the
`VoucherError` family, timeouts, and the retry of idempotent calls. It talks plain httpx
(Meituan publishes no Python SDK for this API), so the protocol below is written by hand.

Protocol (see PROTOCOLS.md, "Meituan 到店团购券"): form-encoded POST with the system
parameters developerId, businessId (58), timestamp (Unix seconds), charset=UTF-8, version=2,
appAuthToken, biz (a JSON string) and sign; sign = lowercase hex SHA1(signKey + k1v1k2v2…)
over all parameters sorted by name, without `sign` and without empty values. Success is
`{"code":"OP_SUCCESS","data":…}`; business errors carry Meituan's numeric codes.

Assumptions, made the same way by the sandbox (app/sandbox/meituan.py):

- **assumed**: `code` of a business error may arrive as a number or a string ("1008"); both are read.
- **assumed**: a bad signature is answered `OP_SIGN_INVALID`, a timestamp more than 300 s off
  `OP_TIMESTAMP_INVALID`, an unknown developerId `OP_DEVELOPER_INVALID` (HTTP 200 each).
- **assumed**: the store is the one whose authorisation produced `appAuthToken`; a code
  restricted to other stores answers 1012 on prepare and consume. `appShopAccount` /
  `appShopAccountName` name the staff account and are recorded, not checked.
- **assumed**: consume answers `data.result[]` with one entry per consumed code, each carrying
  the prepare fields, the `count` consumed and its `flowId`; a multi-use card (bizType 205)
  consumes `count` uses of one code.
- **assumed**: a consume retried with the same `requestId` and the same code and count
  answers the first answer again without consuming; the same `requestId` with another code or
  count, or after that consumption was reversed, answers 1013 (duplicate).
- **assumed**: reverse consume undoes the latest consumption of the code and is allowed on the
  Shanghai day of that consumption only; otherwise it answers 1020 (not reversible).
- **assumed**: querylistbydate takes biz `{"date":"yyyy-MM-dd","type":"order"|"consumed",
  "offset":n,"limit":n}` (limit at most 100) and answers `data.total` and `data.records[]`,
  in a stable order, of the calling store only (its appAuthToken): type "order" lists the codes
  bought that day that the store may verify, "consumed" the verifications made with its token;
  getconsumed takes
  `{"receiptCode":…}` and answers `data.records[]` (flowId, count, consumeTime, reversed).
- **assumed**: `receiptEndDate`, `orderTime`, `consumeTime` are "yyyy-MM-dd HH:mm:ss" in
  Asia/Shanghai; prices (`dealPrice`, `dealMarketPrice`) are yuan numbers, read as Decimal.

Retries: prepare and the queries are read-only, consume carries requestId (the platform's
idempotency key), so all of them are retried on `PlatformUnavailable` (5xx, timeout,
connection error) a bounded number of times with short backoff. Reverse consume has no
idempotency key and is never retried: a second reverse could undo an earlier consumption.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

import httpx

from app.core.money import MoneyError, yuan_to_fen
from app.core.timeutil import BUSINESS_TZ
from app.providers import tls_context
from app.providers.vouchers import (
    PlatformAuthError,
    PlatformProtocolError,
    PlatformUnavailable,
    VerifiedVoucher,
    VoucherAlreadyUsed,
    VoucherCancelNotAllowed,
    VoucherError,
    VoucherExpired,
    VoucherNotFound,
    VoucherNotValidHere,
    VoucherNotYetValid,
    VoucherPreview,
    VoucherRefunded,
    VoucherWrongCount,
)

PLATFORM = "meituan"
DEFAULT_BASE_URL = "https://api-open-cater.meituan.com"
BUSINESS_ID = 58
MULTI_USE_BIZ_TYPES = frozenset({205})
MAX_CONSUME_COUNT = 100
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

PATH_PREPARE = "/ddzh/tuangou/receipt/prepare"
PATH_CONSUME = "/ddzh/tuangou/receipt/consume"
PATH_REVERSE = "/ddzh/tuangou/receipt/reverseconsume"
PATH_QUERY_BY_DATE = "/ddzh/tuangou/receipt/querylistbydate"
PATH_GET_CONSUMED = "/ddzh/tuangou/receipt/getconsumed"

SUCCESS = "OP_SUCCESS"
# Meituan's business error codes -> our exceptions.
ERRORS: dict[str, type[VoucherError]] = {
    "1006": VoucherNotFound,
    "1008": VoucherAlreadyUsed,
    "1009": VoucherExpired,
    "1010": VoucherRefunded,  # refund in progress
    "1011": VoucherRefunded,  # refund requested
    "1012": VoucherNotValidHere,
    "1013": VoucherError,  # duplicate request
    "1015": VoucherNotYetValid,
    "1018": VoucherWrongCount,
    "1019": PlatformAuthError,
    "1020": VoucherCancelNotAllowed,  # **assumed** code
    "1003": VoucherError,  # not enough stock
    "1002": VoucherError,  # verification failed
    "OP_SIGN_INVALID": PlatformAuthError,  # **assumed** code
    "OP_DEVELOPER_INVALID": PlatformAuthError,  # **assumed** code
    "OP_TIMESTAMP_INVALID": PlatformProtocolError,  # **assumed** code
}


def sign_string(params: dict[str, Any]) -> str:
    """k1v1k2v2… over the parameters sorted by name, without `sign` and without empty values."""
    return "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None and str(v) != "")


def make_sign(params: dict[str, Any], sign_key: str) -> str:
    return hashlib.sha1((sign_key + sign_string(params)).encode("utf-8")).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """A Meituan "yyyy-MM-dd HH:mm:ss" (Shanghai) as an aware UTC datetime."""
    if not value:
        return None
    try:
        return _parse_local(str(value))
    except ValueError as exc:
        raise PlatformProtocolError(f"bad time {value!r}") from exc


@lru_cache(maxsize=4096)
def _parse_local(value: str) -> datetime:
    """strptime is slow and a day's list repeats the same few times (expiry dates above all)."""
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=BUSINESS_TZ).astimezone(timezone.utc)


def _fen(value: Any) -> int | None:
    try:
        return yuan_to_fen(value)
    except MoneyError as exc:
        raise PlatformProtocolError(f"bad amount {value!r}") from exc


@dataclass
class ReceiptRecord:
    """One line of the by-date list: a code bought (type "order") or verified (type "consumed")."""

    code: str
    deal_id: str
    deal_group_id: str | None
    title: str
    paid_price_fen: int | None
    original_price_fen: int | None
    order_id: str | None
    status: str | None
    uses_total: int | None
    uses_left: int | None
    ordered_at: datetime | None
    consumed_at: datetime | None
    count: int | None
    flow_id: str | None
    mobile_masked: str | None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConsumeRecord:
    """One consumption of a code, from getconsumed."""

    flow_id: str
    count: int
    consumed_at: datetime | None
    reversed: bool
    shop_account: str | None
    raw: dict[str, Any] = field(default_factory=dict)


class MeituanClient:
    """One developer's access to one store (appAuthToken) on Meituan's open platform."""

    def __init__(
        self,
        base_url: str,
        developer_id: str | int,
        sign_key: str,
        app_auth_token: str,
        business_id: int = BUSINESS_ID,
        timeout: float | httpx.Timeout = 5.0,
        *,
        transport: httpx.BaseTransport | None = None,
        retries: int = 2,
        backoff: float = 0.2,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        http: httpx.Client | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.developer_id = str(developer_id)
        self.sign_key = sign_key
        self.app_auth_token = app_auth_token
        self.business_id = business_id
        self.retries = max(0, retries)
        self.backoff = backoff
        self._clock = clock
        self._sleep = sleep
        self.last_attempts = 0  # HTTP attempts made by the most recent call (observable by tests and logs)
        # A shared pool (`http`, see app.vouchers.platforms.client_for) keeps its connections open
        # between requests and is not closed here; without one the client owns its own.
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport, verify=tls_context())

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> MeituanClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ---- the calls -------------------------------------------------------------------------

    def prepare(self, receipt_code: str) -> VoucherPreview:
        """What the code is (deal, price, uses left, expiry) before verifying it. Retried."""
        code = receipt_code.strip()
        data = self._call(PATH_PREPARE, {"receiptCode": code}, retry=True)
        if not isinstance(data, dict):
            raise PlatformProtocolError("prepare answered no data")
        return self._preview(code, data)

    def consume(self, receipt_code: str, count: int, request_id: str, shop_account: str,
                shop_account_name: str) -> VerifiedVoucher:
        """Verify `count` uses of a code.

        Retried on PlatformUnavailable with the same `request_id`: Meituan treats requestId as the
        idempotency key, so a retry after a lost answer returns the first answer and consumes
        nothing more. The caller must keep `request_id` and reuse it for any later retry of the
        same verification (a new id means a new consumption).
        """
        if not 1 <= count <= MAX_CONSUME_COUNT:
            raise VoucherWrongCount(f"count must be 1..{MAX_CONSUME_COUNT}")
        if not request_id:
            raise ValueError("request_id is required: it is the idempotency key of the consumption")
        code = receipt_code.strip()
        biz = {"receiptCode": code, "count": count, "requestId": request_id,
               "appShopAccount": shop_account, "appShopAccountName": shop_account_name}
        data = self._call(PATH_CONSUME, biz, retry=True)
        results = data.get("result") if isinstance(data, dict) else data
        if not isinstance(results, list) or not results:
            raise PlatformProtocolError("consume answered no result")
        first = results[0]
        flow_ids = [str(item.get("flowId") or "") for item in results]
        if not all(flow_ids):
            raise PlatformProtocolError("consume answered a result without flowId")
        return VerifiedVoucher(platform=PLATFORM, code=str(first.get("receiptCode") or code),
                               deal_id=str(first.get("dealId") or ""), verify_id=",".join(flow_ids),
                               order_id=_str_or_none(first.get("orderId")), raw=_plain(data))

    def reverse_consume(self, receipt_code: str, deal_id: str | int, shop_account: str,
                        shop_account_name: str) -> dict[str, Any]:
        """Undo the latest verification of a code. Never retried (no idempotency key)."""
        biz = {"receiptCode": receipt_code.strip(), "dealId": int(deal_id), "appShopAccount": shop_account,
               "appShopAccountName": shop_account_name}
        data = self._call(PATH_REVERSE, biz, retry=False)
        return data if isinstance(data, dict) else {"data": data}

    def query_by_date(self, day: date, kind: str = "consumed", page_size: int = 100,
                      parallel: int = 1) -> list[ReceiptRecord]:
        """Every code bought (kind "order") or verified (kind "consumed") on a Shanghai date. Retried.

        The first page tells the total; with `parallel` > 1 the remaining pages are then fetched
        by that many threads, each reading a contiguous run of pages in order (what the platform
        pages fastest), and put back in order. Pages that appeared meanwhile are read after.
        """
        if kind not in ("order", "consumed"):
            raise ValueError("kind is 'order' or 'consumed'")
        total, first = self._list_page(day, kind, 0, page_size)
        records = list(first)
        if not first:
            return records
        step = len(first)  # the platform may serve fewer per page than asked
        offsets = list(range(step, total, step))
        lanes = max(1, min(parallel, len(offsets)))
        if lanes == 1:
            pages = [self._list_page(day, kind, offset, page_size) for offset in offsets]
        else:
            runs = [offsets[n * len(offsets) // lanes:(n + 1) * len(offsets) // lanes] for n in range(lanes)]
            with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="meituan-pages") as pool:
                done = list(pool.map(lambda run: [self._list_page(day, kind, o, page_size) for o in run], runs))
            pages = [page for run in done for page in run]
        for page_total, page in pages:
            records.extend(page)
            total = page_total
        while len(records) < total:  # the list grew while it was read
            total, page = self._list_page(day, kind, len(records), page_size)
            if not page:
                break
            records.extend(page)
        return records

    def _list_page(self, day: date, kind: str, offset: int, limit: int) -> tuple[int, list[ReceiptRecord]]:
        data = self._call(PATH_QUERY_BY_DATE, {"date": day.isoformat(), "type": kind, "offset": offset,
                                               "limit": limit}, retry=True)
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise PlatformProtocolError("querylistbydate answered no records")
        try:
            total = int(data.get("total") or 0)
        except (TypeError, ValueError) as exc:
            raise PlatformProtocolError("querylistbydate answered a bad total") from exc
        return total, [self._record(item) for item in data["records"]]

    def check_credentials(self) -> None:
        """The cheapest signed call (today's verified list): raises PlatformAuthError when Meituan refuses us."""
        from app.core.timeutil import business_today

        self._call(PATH_QUERY_BY_DATE, {"date": business_today().isoformat(), "type": "consumed", "offset": 0,
                                        "limit": 1}, retry=True)

    def getconsumed(self, receipt_code: str) -> list[ConsumeRecord]:
        """The consumptions of one code (to learn whether a verification whose answer was lost happened)."""
        data = self._call(PATH_GET_CONSUMED, {"receiptCode": receipt_code.strip()}, retry=True)
        items = data.get("records") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise PlatformProtocolError("getconsumed answered no records")
        return [ConsumeRecord(flow_id=str(item.get("flowId")), count=int(item.get("count") or 0),
                              consumed_at=parse_time(item.get("consumeTime")), reversed=bool(item.get("reversed")),
                              shop_account=_str_or_none(item.get("appShopAccount")), raw=item) for item in items]

    # ---- plumbing --------------------------------------------------------------------------

    def signed_params(self, biz: dict[str, Any]) -> dict[str, str]:
        params = {
            "developerId": self.developer_id,
            "businessId": str(self.business_id),
            "timestamp": str(int(self._clock())),
            "charset": "UTF-8",
            "version": "2",
            "appAuthToken": self.app_auth_token,
            "biz": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = make_sign(params, self.sign_key)
        return params

    def _call(self, path: str, biz: dict[str, Any], retry: bool) -> Any:
        attempts = 1 + (self.retries if retry else 0)
        self.last_attempts = 0
        for attempt in range(attempts):
            self.last_attempts = attempt + 1
            try:
                return self._once(path, biz)
            except PlatformUnavailable:
                if attempt + 1 >= attempts:
                    raise
                self._sleep(self.backoff * (2 ** attempt))
        raise AssertionError("unreachable")

    def _once(self, path: str, biz: dict[str, Any]) -> Any:
        try:
            response = self._http.post(self.base_url + path, data=self.signed_params(biz))
        except httpx.TimeoutException as exc:
            raise PlatformUnavailable(f"timeout: {exc}") from exc
        except httpx.TransportError as exc:
            raise PlatformUnavailable(f"connection: {exc}") from exc
        if response.status_code >= 500:
            raise PlatformUnavailable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise PlatformProtocolError(f"HTTP {response.status_code}")
        try:
            answer = json.loads(response.text, parse_float=Decimal)
        except ValueError as exc:
            raise PlatformProtocolError("answer is not JSON") from exc
        if not isinstance(answer, dict) or "code" not in answer:
            raise PlatformProtocolError("answer has no code")
        code = str(answer["code"])
        if code == SUCCESS:
            return answer.get("data")
        error = ERRORS.get(code, VoucherError)
        raise error(str(answer.get("msg") or code), platform_code=code)

    def _preview(self, code: str, data: dict[str, Any]) -> VoucherPreview:
        try:
            biz_type = int(data.get("bizType") or 0)
            uses_left = int(data.get("count") or 0)
        except (TypeError, ValueError) as exc:
            raise PlatformProtocolError("bad bizType or count") from exc
        return VoucherPreview(
            platform=PLATFORM,
            code=code,
            deal_id=str(data.get("dealId") or ""),
            title=str(data.get("dealTitle") or ""),
            original_price_fen=_fen(data.get("dealMarketPrice")),
            paid_price_fen=_fen(data.get("dealPrice")),
            uses_left=uses_left,
            expires_at=parse_time(data.get("receiptEndDate")),
            buyer_phone_masked=_str_or_none(data.get("mobile")),
            order_id=_str_or_none(data.get("orderId")),
            voucher_kind="multi_use" if biz_type in MULTI_USE_BIZ_TYPES else "single",
            raw=_plain(data),
        )

    def _record(self, item: dict[str, Any]) -> ReceiptRecord:
        return ReceiptRecord(
            code=str(item.get("receiptCode") or ""),
            deal_id=str(item.get("dealId") or ""),
            deal_group_id=_str_or_none(item.get("dealGroupId")),
            title=str(item.get("dealTitle") or ""),
            paid_price_fen=_fen(item.get("dealPrice")),
            original_price_fen=_fen(item.get("dealMarketPrice")),
            order_id=_str_or_none(item.get("orderId")),
            status=_str_or_none(item.get("status")),
            uses_total=_int_or_none(item.get("totalCount")),
            uses_left=_int_or_none(item.get("count")),
            ordered_at=parse_time(item.get("orderTime")),
            consumed_at=parse_time(item.get("consumeTime")),
            count=_int_or_none(item.get("consumeCount")),
            flow_id=_str_or_none(item.get("flowId")),
            mobile_masked=_str_or_none(item.get("mobile")),
            raw=_plain(item),
        )


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _plain(value: Any) -> Any:
    """The answer with Decimals as strings, so `raw` can be stored as JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value
