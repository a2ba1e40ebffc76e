"""Meituan sandbox: plays Meituan's side of the 到店团购券 receipt API under /sandbox/meituan/.

Same paths, parameters, signature and answers as the real platform (PROTOCOLS.md, and the
**assumed** items listed in app/providers/meituan.py, which this module makes the same way).
State lives in the sandbox_meituan_* tables; a consume holds a row lock on the receipt
(`SELECT … FOR UPDATE` on PostgreSQL), so concurrent consumes of one code cannot both win, and
the consume log is unique on requestId, so a retried consume never consumes twice.

Sandbox credentials: developerId `SANDBOX_DEVELOPER_ID` (100001) with signKey
`SANDBOX_SIGN_KEY` ("mt-sandbox-sign-key-2026"), always accepted; more pairs can be added as
rows of sandbox_meituan_developers. Any non-empty appAuthToken names a store (a code can be
restricted to one store's token); an empty one answers 1019.

Misbehaviour (for people and tests): `set_misbehaviour(mode, times, latency_ms)` or the form on
the page. Modes: "latency" (sleep latency_ms, then answer normally: the work is done), "5xx"
(answer HTTP 503 without doing anything), "timeout" (sleep latency_ms, then answer 504 without
doing anything: the platform never answered). `times` is how many of the next calls misbehave
(-1: all). Every API call is counted (`call_count()`), so retries are observable.

The by-date lists (querylistbydate) are the calling store's, as on Meituan: the orders of codes
that store's appAuthToken may verify (restricted to it, or to no store) and the verifications
made with its token. Pages keep the protocol's offset/limit; underneath, a listing started at
offset 0 takes its total and highest id once (a snapshot kept in Redis for two minutes), and
each later page that follows one already served is read by keyset (id > the last id served)
instead of OFFSET, so deep pages cost what the first one does and can be asked for in parallel.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from app.core.crypto import mask_phone, normalise_phone
from app.core.permissions import permission_required
from app.core.timeutil import BUSINESS_TZ, local_day_range, utcnow
from app.extensions import csrf, db, get_redis
from app.providers.meituan import MAX_CONSUME_COUNT, MULTI_USE_BIZ_TYPES, SUCCESS, TIME_FORMAT, make_sign
from app.sandbox.meituan_models import (
    SandboxMeituanConsumption,
    SandboxMeituanDeal,
    SandboxMeituanDeveloper,
    SandboxMeituanReceipt,
)

bp = Blueprint("sandbox_meituan", __name__, url_prefix="/sandbox/meituan")

SANDBOX_DEVELOPER_ID = "100001"
SANDBOX_SIGN_KEY = "mt-sandbox-sign-key-2026"
SANDBOX_STORE_TOKEN = "sandbox-store-1"  # a documented appAuthToken for demos; any non-empty token works
TIMESTAMP_WINDOW_SECONDS = 300  # **assumed**
MISBEHAVE_KEY = "sandbox:meituan:misbehave"
CALLS_KEY = "sandbox:meituan:calls"
MISBEHAVE_MODES = ("latency", "5xx", "timeout")
LISTING_KEY = "sandbox:meituan:listing"
LISTING_TTL_SECONDS = 120

SEED_DEALS = (
    # deal_id, deal_group_id, title, price fen, market price fen, bizType, uses, valid days
    (710001, 810001, "健身月卡 30天畅练", 19900, 29900, 0, 1, 90),
    (710002, 810002, "健身年卡 365天畅练", 129900, 239900, 0, 1, 180),
    (710003, 810003, "健身20次卡", 59900, 80000, 205, 20, 365),
    (710004, 810004, "私教课10节", 298000, 380000, 205, 10, 365),
    (710005, 810005, "团课体验 单次", 3990, 6800, 0, 1, 60),
)


class SandboxError(Exception):
    def __init__(self, code: str | int, msg: str, status: int = 200):
        super().__init__(msg)
        self.code = str(code)
        self.msg = msg
        self.status = status


# ---- state helpers (used by the page, the demo seed and tests) ------------------------------

def seed_sandbox_deals() -> list[SandboxMeituanDeal]:
    """The gym deals of the demo (monthly, yearly, 20-visit, 10 coaching lessons, a class); idempotent."""
    deals = []
    for deal_id, group_id, title, price, market, biz_type, uses, days in SEED_DEALS:
        deal = db.session.execute(select(SandboxMeituanDeal).filter_by(deal_id=deal_id)).scalar_one_or_none()
        if deal is None:
            deal = SandboxMeituanDeal(deal_id=deal_id, deal_group_id=group_id, title=title, price_fen=price,
                                      market_price_fen=market, biz_type=biz_type, uses_per_receipt=uses, valid_days=days)
            db.session.add(deal)
        deals.append(deal)
    db.session.commit()
    return deals


def _new_code() -> str:
    while True:
        code = f"{secrets.randbelow(10 ** 12):012d}"
        if not db.session.execute(select(SandboxMeituanReceipt.id).filter_by(code=code)).first():
            return code


def buy_receipt(deal: SandboxMeituanDeal, mobile: str | None = None, store_token: str | None = None,
                valid_from: datetime | None = None, valid_to: datetime | None = None,
                status: str = "unused", bought_at: datetime | None = None) -> SandboxMeituanReceipt:
    """A person buys one code of a deal (committed)."""
    now = utcnow()
    valid_from = valid_from or now - timedelta(minutes=1)
    uses = deal.uses_per_receipt if deal.biz_type in MULTI_USE_BIZ_TYPES else 1
    receipt = SandboxMeituanReceipt(
        code=_new_code(), deal_id=deal.id, deal=deal, order_id=f"{secrets.randbelow(10 ** 16):016d}",
        status=status, uses_total=uses, uses_left=uses, valid_from=valid_from,
        valid_to=valid_to or valid_from + timedelta(days=deal.valid_days),
        store_token=store_token or None, mobile_masked=mask_phone(normalise_phone(mobile)) or None,
        bought_at=bought_at or now)
    db.session.add(receipt)
    db.session.commit()
    return receipt


def set_misbehaviour(mode: str | None, times: int = -1, latency_ms: int = 0) -> None:
    """Make the next `times` API calls (-1: all) misbehave; mode None or "" clears it."""
    redis = get_redis()
    redis.delete(MISBEHAVE_KEY)
    if mode:
        if mode not in MISBEHAVE_MODES:
            raise ValueError(f"mode must be one of {MISBEHAVE_MODES}")
        redis.hset(MISBEHAVE_KEY, mapping={"mode": mode, "remaining": int(times), "latency_ms": int(latency_ms)})


def misbehaviour(stored: dict | None = None) -> dict[str, Any]:
    raw = {k.decode(): v.decode() for k, v in (get_redis().hgetall(MISBEHAVE_KEY) if stored is None
                                               else stored).items()}
    if not raw:
        return {}
    return {"mode": raw["mode"], "remaining": int(raw["remaining"]), "latency_ms": int(raw["latency_ms"])}


def call_count() -> int:
    return int(get_redis().get(CALLS_KEY) or 0)


def _misbehave_now() -> dict[str, Any] | None:
    """Count the call; the misbehaviour it must show, consuming one of its `times` atomically."""
    pipe = get_redis().pipeline(transaction=False)  # one round trip for both
    pipe.incr(CALLS_KEY)
    pipe.hgetall(MISBEHAVE_KEY)
    setting = misbehaviour(pipe.execute()[1])
    if not setting:
        return None
    if setting["remaining"] == -1:
        return setting
    left = get_redis().hincrby(MISBEHAVE_KEY, "remaining", -1)
    return setting if left >= 0 else None


# ---- the API ----------------------------------------------------------------------------------

def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return float(value)  # on the wire only: Meituan answers yuan as JSON numbers
        raise TypeError(type(value).__name__)

    return Response(json.dumps(payload, ensure_ascii=False, default=default), status=status,
                    mimetype="application/json")


def _local(value: datetime | None) -> str | None:
    return value.astimezone(BUSINESS_TZ).strftime(TIME_FORMAT) if value else None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _sign_key(developer_id: str) -> str | None:
    if developer_id == SANDBOX_DEVELOPER_ID:
        return SANDBOX_SIGN_KEY
    row = db.session.execute(select(SandboxMeituanDeveloper).filter_by(developer_id=developer_id)).scalar_one_or_none()
    return row.sign_key if row else None


def _api(handler: Callable[[dict[str, Any], str], Any]) -> Response:
    bad = _misbehave_now()
    if bad:
        if bad["mode"] == "5xx":
            return _json({"code": "OP_SYSTEM_ERROR", "msg": "sandbox: told to fail"}, 503)
        time.sleep(bad["latency_ms"] / 1000)
        if bad["mode"] == "timeout":
            return _json({"code": "OP_SYSTEM_ERROR", "msg": "sandbox: told to time out"}, 504)
    params = request.form.to_dict()
    try:
        for name in ("developerId", "timestamp", "sign", "biz"):
            if not params.get(name):
                raise SandboxError("OP_PARAM_INVALID", f"missing {name}")
        key = _sign_key(params["developerId"])
        if key is None:
            raise SandboxError("OP_DEVELOPER_INVALID", "unknown developerId")
        if not hmac.compare_digest(make_sign(params, key), params["sign"].lower()):
            raise SandboxError("OP_SIGN_INVALID", "签名验证失败")
        try:
            skew = abs(time.time() - int(params["timestamp"]))
        except ValueError:
            raise SandboxError("OP_PARAM_INVALID", "bad timestamp") from None
        if skew > TIMESTAMP_WINDOW_SECONDS:
            raise SandboxError("OP_TIMESTAMP_INVALID", "timestamp out of window")
        token = params.get("appAuthToken") or ""
        if not token:
            raise SandboxError(1019, "无权限操作")
        try:
            biz = json.loads(params["biz"])
        except ValueError:
            raise SandboxError("OP_PARAM_INVALID", "biz is not JSON") from None
        if not isinstance(biz, dict):
            raise SandboxError("OP_PARAM_INVALID", "biz is not an object")
        data = handler(biz, token)
    except SandboxError as exc:
        db.session.rollback()
        return _json({"code": exc.code, "msg": exc.msg, "traceId": secrets.token_hex(8)}, exc.status)
    return _json({"code": SUCCESS, "msg": "成功", "data": data, "traceId": secrets.token_hex(8)})


def _receipt_data(receipt: SandboxMeituanReceipt) -> dict[str, Any]:
    deal = receipt.deal
    return {
        "count": receipt.uses_left,
        "orderId": receipt.order_id,
        "receiptCode": receipt.code,
        "dealId": deal.deal_id,
        "dealGroupId": deal.deal_group_id,
        "dealTitle": deal.title,
        "dealPrice": _yuan(deal.price_fen),
        "dealMarketPrice": _yuan(deal.market_price_fen),
        "mobile": receipt.mobile_masked or "",
        "bizType": deal.biz_type,
        "receiptEndDate": _local(_aware(receipt.valid_to)),
        "paymentDetail": [{"amountType": 1, "amount": _yuan(deal.price_fen)}],
    }


def _find(code: Any, lock: bool = False) -> SandboxMeituanReceipt:
    if not code:
        raise SandboxError("OP_PARAM_INVALID", "missing receiptCode")
    stmt = select(SandboxMeituanReceipt).filter_by(code=str(code).strip())
    if lock:
        stmt = stmt.with_for_update(of=SandboxMeituanReceipt).execution_options(populate_existing=True)
    receipt = db.session.execute(stmt).scalar_one_or_none()
    if receipt is None:
        raise SandboxError(1006, "券码不存在")
    return receipt


def _check_usable(receipt: SandboxMeituanReceipt, token: str) -> None:
    if receipt.status == "refunding":
        raise SandboxError(1010, "券码退款中")
    if receipt.status == "refunded":
        raise SandboxError(1011, "券码已申请退款")
    if receipt.status == "used" or receipt.uses_left <= 0:
        raise SandboxError(1008, "券码已验证")
    now = utcnow()
    if receipt.status == "expired" or _aware(receipt.valid_to) < now:
        raise SandboxError(1009, "券码已过期")
    if _aware(receipt.valid_from) > now:
        raise SandboxError(1015, "券码未到可用时间")
    if receipt.store_token and receipt.store_token != token:
        raise SandboxError(1012, "券码不适用于该门店")


@bp.post("/ddzh/tuangou/receipt/prepare")
@csrf.exempt
def prepare():
    def handle(biz: dict[str, Any], token: str) -> dict[str, Any]:
        receipt = _find(biz.get("receiptCode"))
        _check_usable(receipt, token)
        return _receipt_data(receipt)

    return _api(handle)


@bp.post("/ddzh/tuangou/receipt/consume")
@csrf.exempt
def consume():
    def handle(biz: dict[str, Any], token: str) -> dict[str, Any]:
        request_id = str(biz.get("requestId") or "").strip()
        if not request_id:
            raise SandboxError("OP_PARAM_INVALID", "missing requestId")
        try:
            count = int(biz.get("count"))
        except (TypeError, ValueError):
            raise SandboxError(1018, "核销数量错误") from None
        receipt = _find(biz.get("receiptCode"), lock=True)  # held until commit: one consume of a code at a time
        done = db.session.execute(select(SandboxMeituanConsumption).filter_by(request_id=request_id)).scalar_one_or_none()
        if done is not None:
            if done.receipt_id != receipt.id or done.count != count or done.reversed_at is not None:
                raise SandboxError(1013, "重复请求")
            answer = done.answer
            db.session.rollback()
            return answer
        _check_usable(receipt, token)
        if not 1 <= count <= MAX_CONSUME_COUNT or count > receipt.uses_left:
            raise SandboxError(1018, "核销数量错误")
        receipt.uses_left -= count
        if receipt.uses_left == 0:
            receipt.status = "used"
        flow_id = f"{secrets.randbelow(10 ** 18):018d}"
        answer = {"result": [dict(_receipt_data(receipt), count=count, flowId=flow_id)]}
        answer = json.loads(_json(answer).get_data(as_text=True))  # stored as it went on the wire
        db.session.add(SandboxMeituanConsumption(
            request_id=request_id, flow_id=flow_id, receipt_id=receipt.id, count=count,
            shop_account=str(biz.get("appShopAccount") or "")[:64] or None,
            shop_account_name=str(biz.get("appShopAccountName") or "")[:64] or None,
            app_auth_token=token, answer=answer))
        try:
            db.session.commit()
        except IntegrityError:  # a twin with the same requestId won the race (without the row lock, e.g. SQLite)
            db.session.rollback()
            twin = db.session.execute(select(SandboxMeituanConsumption).filter_by(request_id=request_id)).scalar_one()
            return twin.answer
        return answer

    return _api(handle)


@bp.post("/ddzh/tuangou/receipt/reverseconsume")
@csrf.exempt
def reverse_consume():
    def handle(biz: dict[str, Any], token: str) -> dict[str, Any]:
        receipt = _find(biz.get("receiptCode"), lock=True)
        if str(biz.get("dealId")) != str(receipt.deal.deal_id):
            raise SandboxError(1006, "券码与团购不匹配")
        last = db.session.execute(
            select(SandboxMeituanConsumption).filter_by(receipt_id=receipt.id, reversed_at=None)
            .order_by(SandboxMeituanConsumption.id.desc()).limit(1)).scalar_one_or_none()
        if last is None:
            raise SandboxError(1020, "券码未核销，无法撤销")
        now = utcnow()
        if _aware(last.consumed_at).astimezone(BUSINESS_TZ).date() != now.astimezone(BUSINESS_TZ).date():
            raise SandboxError(1020, "已超过撤销时限")
        if last.app_auth_token != token:
            raise SandboxError(1012, "只能在核销门店撤销")
        last.reversed_at = now
        receipt.uses_left += last.count
        if receipt.status == "used":
            receipt.status = "unused"
        data = dict(_receipt_data(receipt), flowId=last.flow_id, reversedCount=last.count)
        db.session.commit()
        return data

    return _api(handle)


def _record(receipt: SandboxMeituanReceipt, consumption: SandboxMeituanConsumption | None = None) -> dict[str, Any]:
    record = dict(_receipt_data(receipt), status=receipt.status, totalCount=receipt.uses_total,
                  orderTime=_local(_aware(receipt.bought_at)))
    if consumption is not None:
        record.update(consumeTime=_local(_aware(consumption.consumed_at)), consumeCount=consumption.count,
                      flowId=consumption.flow_id, reversed=consumption.reversed_at is not None,
                      appShopAccount=consumption.shop_account)
    return record


def _listing(kind: str, token: str, day) -> tuple[Any, list, Callable]:
    """The model, the WHERE clauses and the record builder of one store's by-date list.

    Scoped to the calling store (the appAuthToken): the orders of codes it may verify (codes
    restricted to it, and codes of any store) and the verifications made with its token.
    """
    start, end = local_day_range(day, day)
    if kind == "order":
        model = SandboxMeituanReceipt
        where = [model.bought_at >= start, model.bought_at < end,
                 or_(model.store_token.is_(None), model.store_token == token)]
        return model, where, _record
    if kind == "consumed":
        model = SandboxMeituanConsumption
        where = [model.consumed_at >= start, model.consumed_at < end, model.app_auth_token == token]
        return model, where, lambda c: _record(c.receipt, c)
    raise SandboxError("OP_PARAM_INVALID", "type is order or consumed")


def _snapshot(key: str, model, where: list, fresh: bool) -> tuple[int, int]:
    """(total, highest id) of a list: taken when a listing starts (offset 0) and kept for
    LISTING_TTL_SECONDS, so its later pages count nothing again and are a stable snapshot (rows
    added meanwhile come in the next listing)."""
    redis = get_redis()
    cached = None if fresh else redis.hmget(key, "total", "top")
    if cached and cached[0] is not None:
        redis.expire(key, LISTING_TTL_SECONDS)
        return int(cached[0]), int(cached[1])
    redis.delete(key)  # the page boundaries of an earlier listing go with it
    total, top = db.session.execute(select(func.count(), func.coalesce(func.max(model.id), 0)).where(*where)).one()
    redis.hset(key, mapping={"total": total, "top": top})
    redis.expire(key, LISTING_TTL_SECONDS)
    return total, top


def _page(key: str, model, where: list, top: int, offset: int, limit: int) -> list:
    """One page in id order. Keyset (id > the last id of the page before) when that page was
    served in this listing, which is every page of a listing read in order; else OFFSET."""
    redis = get_redis()
    after = 0 if offset == 0 else redis.hget(key, f"after:{offset}")
    stmt = select(model).where(*where, model.id <= top).order_by(model.id).limit(limit)
    stmt = stmt.where(model.id > int(after)) if after is not None else stmt.offset(offset)
    rows = db.session.execute(stmt).scalars().all()
    if rows:
        redis.hset(key, f"after:{offset + len(rows)}", rows[-1].id)
    return rows


@bp.post("/ddzh/tuangou/receipt/querylistbydate")
@csrf.exempt
def query_list_by_date():
    def handle(biz: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            day = datetime.strptime(str(biz.get("date")), "%Y-%m-%d").date()
            offset = max(0, int(biz.get("offset") or 0))
            limit = min(100, max(1, int(biz.get("limit") or 100)))
        except ValueError:
            raise SandboxError("OP_PARAM_INVALID", "bad date, offset or limit") from None
        kind = str(biz.get("type") or "consumed")
        model, where, record = _listing(kind, token, day)
        key = f"{LISTING_KEY}:{hashlib.sha1(token.encode()).hexdigest()}:{kind}:{day.isoformat()}"
        total, top = _snapshot(key, model, where, fresh=offset == 0)
        rows = _page(key, model, where, top, offset, limit) if offset < total else []
        return {"total": total, "records": [record(row) for row in rows]}

    return _api(handle)


@bp.post("/ddzh/tuangou/receipt/getconsumed")
@csrf.exempt
def get_consumed():
    def handle(biz: dict[str, Any], token: str) -> dict[str, Any]:
        receipt = _find(biz.get("receiptCode"))
        rows = db.session.execute(select(SandboxMeituanConsumption).filter_by(receipt_id=receipt.id)
                                  .order_by(SandboxMeituanConsumption.id)).scalars().all()
        return {"receiptCode": receipt.code, "records": [
            {"flowId": c.flow_id, "count": c.count, "consumeTime": _local(_aware(c.consumed_at)),
             "reversed": c.reversed_at is not None, "appShopAccount": c.shop_account} for c in rows]}

    return _api(handle)


# ---- the human page ---------------------------------------------------------------------------

@bp.get("/")
@permission_required("platform.manage")
def index():
    deals = db.session.execute(select(SandboxMeituanDeal).order_by(SandboxMeituanDeal.deal_id)).scalars().all()
    receipts = db.session.execute(select(SandboxMeituanReceipt).order_by(SandboxMeituanReceipt.id.desc())
                                  .limit(50)).scalars().all()
    return render_template("sandbox/meituan.html", deals=deals, receipts=receipts, misbehaviour=misbehaviour(),
                           calls=call_count(), developer_id=SANDBOX_DEVELOPER_ID, sign_key=SANDBOX_SIGN_KEY,
                           store_token=SANDBOX_STORE_TOKEN, statuses=("unused", "expired", "refunding", "refunded"),
                           modes=MISBEHAVE_MODES)


@bp.post("/buy")
@permission_required("platform.manage")
def buy():
    deal = db.session.execute(select(SandboxMeituanDeal).filter_by(deal_id=request.form.get("deal_id", type=int))
                              ).scalar_one_or_none()
    if deal is None:
        flash(_("Choose a deal."), "error")
        return redirect(url_for(".index"))
    receipt = buy_receipt(deal, mobile=request.form.get("mobile") or None,
                          store_token=(request.form.get("store_token") or "").strip() or None)
    flash(_("Bought %(title)s: receipt code %(code)s", title=deal.title, code=receipt.code), "success")
    return redirect(url_for(".index"))


@bp.post("/seed")
@permission_required("platform.manage")
def seed():
    seed_sandbox_deals()
    flash(_("Sandbox deals are in place."), "success")
    return redirect(url_for(".index"))


@bp.post("/receipts/<code>/status")
@permission_required("platform.manage")
def set_status(code: str):
    status = request.form.get("status")
    receipt = db.session.execute(select(SandboxMeituanReceipt).filter_by(code=code)).scalar_one_or_none()
    if receipt is None or status not in ("unused", "expired", "refunding", "refunded"):
        flash(_("No such receipt code or status."), "error")
        return redirect(url_for(".index"))
    receipt.status = status
    if status == "unused":
        receipt.uses_left = receipt.uses_total
    db.session.commit()
    flash(_("Receipt %(code)s is now %(status)s.", code=code, status=status), "success")
    return redirect(url_for(".index"))


@bp.post("/misbehave")
@permission_required("platform.manage")
def misbehave():
    mode = request.form.get("mode") or ""
    if mode and mode not in MISBEHAVE_MODES:
        flash(_("Unknown misbehaviour."), "error")
        return redirect(url_for(".index"))
    set_misbehaviour(mode or None, times=request.form.get("times", -1, type=int),
                     latency_ms=request.form.get("latency_ms", 0, type=int))
    flash(_("Misbehaviour set.") if mode else _("The sandbox behaves normally again."), "success")
    return redirect(url_for(".index"))
