"""The Meituan client against the Meituan sandbox: signing, every receipt state, retries,
timeouts, the by-date lists and concurrent consumes on PostgreSQL."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.core.timeutil import business_today, utcnow
from app.extensions import db
from app.providers.meituan import MeituanClient, ReceiptRecord
from app.providers.vouchers import (
    PlatformAuthError,
    PlatformProtocolError,
    PlatformUnavailable,
    VoucherAlreadyUsed,
    VoucherCancelNotAllowed,
    VoucherError,
    VoucherExpired,
    VoucherNotFound,
    VoucherNotValidHere,
    VoucherNotYetValid,
    VoucherRefunded,
    VoucherWrongCount,
)
from app.sandbox.meituan import (
    SANDBOX_DEVELOPER_ID,
    SANDBOX_SIGN_KEY,
    SANDBOX_STORE_TOKEN,
    buy_receipt,
    call_count,
    seed_sandbox_deals,
    set_misbehaviour,
)
from app.sandbox.meituan_models import SandboxMeituanConsumption, SandboxMeituanDeveloper, SandboxMeituanReceipt
from tests.helpers import serving

BASE = "http://sandbox.test/sandbox/meituan"


def make_client(app, token: str = SANDBOX_STORE_TOKEN, key: str = SANDBOX_SIGN_KEY,
                developer_id: str = SANDBOX_DEVELOPER_ID, **kwargs) -> MeituanClient:
    kwargs.setdefault("transport", httpx.WSGITransport(app=app))
    kwargs.setdefault("backoff", 0)
    return MeituanClient(kwargs.pop("base_url", BASE), developer_id, key, token, **kwargs)


@pytest.fixture
def deals(app):
    return {deal.deal_id: deal for deal in seed_sandbox_deals()}


@pytest.fixture
def mt(app):
    with make_client(app) as client:
        yield client


def fresh(code: str) -> SandboxMeituanReceipt:
    db.session.expire_all()
    return db.session.execute(select(SandboxMeituanReceipt).filter_by(code=code)).scalar_one()


def consumptions(code: str | None = None) -> int:
    db.session.expire_all()
    stmt = select(func.count()).select_from(SandboxMeituanConsumption)
    if code:
        stmt = stmt.join(SandboxMeituanReceipt).where(SandboxMeituanReceipt.code == code)
    return db.session.scalar(stmt)


# ---- signing -----------------------------------------------------------------------------------

def test_signature_matches_an_independently_built_vector(app):
    client = make_client(app, token="tok-1", clock=lambda: 1700000000)
    params = client.signed_params({"receiptCode": "123456789012"})
    text = ('appAuthTokentok-1'
            'biz{"receiptCode":"123456789012"}'
            'businessId58'
            'charsetUTF-8'
            'developerId100001'
            'timestamp1700000000'
            'version2')
    assert params["sign"] == hashlib.sha1((SANDBOX_SIGN_KEY + text).encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{40}", params["sign"])
    assert params["timestamp"] == "1700000000" and params["charset"] == "UTF-8" and params["version"] == "2"


def test_empty_values_are_left_out_of_the_signature_and_utf8_is_signed(app):
    client = make_client(app, token="", clock=lambda: 1700000001)
    params = client.signed_params({"appShopAccountName": "前台小王"})
    text = ('biz{"appShopAccountName":"前台小王"}businessId58charsetUTF-8developerId100001'
            'timestamp1700000001version2')
    assert params["sign"] == hashlib.sha1((SANDBOX_SIGN_KEY + text).encode("utf-8")).hexdigest()


def test_wrong_key_and_unknown_developer_are_rejected(app, deals):
    receipt = buy_receipt(deals[710001])
    with make_client(app, key="not-the-key") as client, pytest.raises(PlatformAuthError) as caught:
        client.prepare(receipt.code)
    assert caught.value.platform_code == "OP_SIGN_INVALID"
    with make_client(app, developer_id="999999") as client, pytest.raises(PlatformAuthError) as caught:
        client.prepare(receipt.code)
    assert caught.value.platform_code == "OP_DEVELOPER_INVALID"


def test_a_developer_added_to_the_table_signs_with_its_own_key(app, deals):
    db.session.add(SandboxMeituanDeveloper(developer_id="200002", sign_key="second-key"))
    db.session.commit()
    receipt = buy_receipt(deals[710001])
    with make_client(app, developer_id="200002", key="second-key") as client:
        assert client.prepare(receipt.code).code == receipt.code
    with make_client(app, developer_id="200002", key=SANDBOX_SIGN_KEY) as client, pytest.raises(PlatformAuthError):
        client.prepare(receipt.code)


def test_a_stale_timestamp_is_rejected(app, deals):
    receipt = buy_receipt(deals[710001])
    with make_client(app, clock=lambda: time.time() - 3600) as client, pytest.raises(PlatformProtocolError) as caught:
        client.prepare(receipt.code)
    assert caught.value.platform_code == "OP_TIMESTAMP_INVALID"


def test_an_empty_app_auth_token_has_no_permission(app, deals):
    receipt = buy_receipt(deals[710001])
    with make_client(app, token="") as client, pytest.raises(PlatformAuthError) as caught:
        client.prepare(receipt.code)
    assert caught.value.platform_code == "1019"


# ---- the receipt states ------------------------------------------------------------------------

def test_unused_code_prepares_then_consumes(mt, deals):
    receipt = buy_receipt(deals[710001], mobile="13812348000")
    preview = mt.prepare(f" {receipt.code} ")
    assert (preview.platform, preview.code, preview.deal_id) == ("meituan", receipt.code, "710001")
    assert preview.title == "健身月卡 30天畅练"
    assert (preview.paid_price_fen, preview.original_price_fen) == (19900, 29900)
    assert isinstance(preview.paid_price_fen, int)
    assert preview.uses_left == 1 and preview.voucher_kind == "single"
    assert preview.buyer_phone_masked == "138****8000"
    assert preview.order_id == receipt.order_id
    assert preview.expires_at == fresh(receipt.code).valid_to.replace(microsecond=0)

    verified = mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    assert (verified.platform, verified.code, verified.deal_id, verified.order_id) == (
        "meituan", receipt.code, "710001", receipt.order_id)
    assert verified.verify_id.isdigit()
    row = fresh(receipt.code)
    assert (row.status, row.uses_left) == ("used", 0)
    consumption = db.session.execute(select(SandboxMeituanConsumption)).scalar_one()
    assert (consumption.flow_id, consumption.shop_account, consumption.shop_account_name) == (verified.verify_id, "desk01", "前台")


def test_second_consume_is_already_used(mt, deals):
    receipt = buy_receipt(deals[710005])
    mt.consume(receipt.code, 1, "req-a", "desk01", "前台")
    with pytest.raises(VoucherAlreadyUsed) as caught:
        mt.consume(receipt.code, 1, "req-b", "desk01", "前台")
    assert caught.value.platform_code == "1008"
    with pytest.raises(VoucherAlreadyUsed):
        mt.prepare(receipt.code)
    assert consumptions(receipt.code) == 1


def test_same_request_id_retried_gives_the_same_answer_and_consumes_once(mt, deals):
    receipt = buy_receipt(deals[710003])  # 20 visits: a second consumption would show
    first = mt.consume(receipt.code, 2, "req-same", "desk01", "前台")
    again = mt.consume(receipt.code, 2, "req-same", "desk01", "前台")
    assert again.verify_id == first.verify_id and again.raw == first.raw
    assert consumptions(receipt.code) == 1
    assert fresh(receipt.code).uses_left == 18


def test_same_request_id_with_other_parameters_is_a_duplicate(mt, deals):
    receipt = buy_receipt(deals[710003])
    mt.consume(receipt.code, 2, "req-dup", "desk01", "前台")
    with pytest.raises(VoucherError) as caught:
        mt.consume(receipt.code, 3, "req-dup", "desk01", "前台")
    assert caught.value.platform_code == "1013"
    assert fresh(receipt.code).uses_left == 18


def test_unknown_code_is_not_found(mt, deals):
    with pytest.raises(VoucherNotFound) as caught:
        mt.prepare("000000000000")
    assert caught.value.platform_code == "1006"


@pytest.mark.parametrize("how", ["status", "date"])
def test_expired_code(mt, deals, how):
    if how == "status":
        receipt = buy_receipt(deals[710001], status="expired")
    else:
        receipt = buy_receipt(deals[710001], valid_from=utcnow() - timedelta(days=100),
                              valid_to=utcnow() - timedelta(days=1))
    with pytest.raises(VoucherExpired):
        mt.prepare(receipt.code)
    with pytest.raises(VoucherExpired) as caught:
        mt.consume(receipt.code, 1, "req-x", "desk01", "前台")
    assert caught.value.platform_code == "1009"
    assert consumptions() == 0


@pytest.mark.parametrize("status, code", [("refunded", "1011"), ("refunding", "1010")])
def test_refunded_and_refunding_codes(mt, deals, status, code):
    receipt = buy_receipt(deals[710001], status=status)
    with pytest.raises(VoucherRefunded) as caught:
        mt.prepare(receipt.code)
    assert caught.value.platform_code == code
    with pytest.raises(VoucherRefunded):
        mt.consume(receipt.code, 1, "req-r", "desk01", "前台")
    assert fresh(receipt.code).uses_left == 1


def test_code_for_another_store(app, deals):
    receipt = buy_receipt(deals[710001], store_token="store-B")
    with make_client(app, token="store-A") as elsewhere:
        with pytest.raises(VoucherNotValidHere) as caught:
            elsewhere.prepare(receipt.code)
        assert caught.value.platform_code == "1012"
        with pytest.raises(VoucherNotValidHere):
            elsewhere.consume(receipt.code, 1, "req-s", "desk01", "前台")
    with make_client(app, token="store-B") as there:
        assert there.consume(receipt.code, 1, "req-s2", "desk01", "前台").code == receipt.code


def test_code_not_yet_valid(mt, deals):
    receipt = buy_receipt(deals[710001], valid_from=utcnow() + timedelta(days=2))
    with pytest.raises(VoucherNotYetValid) as caught:
        mt.prepare(receipt.code)
    assert caught.value.platform_code == "1015"
    with pytest.raises(VoucherNotYetValid):
        mt.consume(receipt.code, 1, "req-n", "desk01", "前台")


def test_wrong_count(mt, deals):
    receipt = buy_receipt(deals[710001])
    with pytest.raises(VoucherWrongCount) as caught:
        mt.consume(receipt.code, 2, "req-w", "desk01", "前台")
    assert caught.value.platform_code == "1018"
    calls = call_count()
    for count in (0, 101):
        with pytest.raises(VoucherWrongCount):
            mt.consume(receipt.code, count, f"req-w{count}", "desk01", "前台")
    assert call_count() == calls  # refused before any call
    assert fresh(receipt.code).uses_left == 1


def test_multi_use_card_counts_down(mt, deals):
    receipt = buy_receipt(deals[710003])
    preview = mt.prepare(receipt.code)
    assert (preview.voucher_kind, preview.uses_left, preview.paid_price_fen) == ("multi_use", 20, 59900)
    mt.consume(receipt.code, 3, "req-m1", "desk01", "前台")
    assert mt.prepare(receipt.code).uses_left == 17
    with pytest.raises(VoucherWrongCount):
        mt.consume(receipt.code, 18, "req-m2", "desk01", "前台")
    mt.consume(receipt.code, 17, "req-m3", "desk01", "前台")
    assert (fresh(receipt.code).status, fresh(receipt.code).uses_left) == ("used", 0)
    with pytest.raises(VoucherAlreadyUsed):
        mt.consume(receipt.code, 1, "req-m4", "desk01", "前台")


def test_reverse_consume_restores_a_single_code(mt, deals):
    receipt = buy_receipt(deals[710001])
    mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    answer = mt.reverse_consume(receipt.code, 710001, "desk01", "前台")
    assert answer["receiptCode"] == receipt.code
    row = fresh(receipt.code)
    assert (row.status, row.uses_left) == ("unused", 1)
    assert mt.prepare(receipt.code).uses_left == 1
    mt.consume(receipt.code, 1, "req-2", "desk01", "前台")
    assert fresh(receipt.code).status == "used"
    history = mt.getconsumed(receipt.code)
    assert [(r.count, r.reversed) for r in history] == [(1, True), (1, False)]
    assert all(r.consumed_at is not None and r.shop_account == "desk01" for r in history)


def test_reverse_consume_undoes_the_latest_consumption_of_a_multi_use_card(mt, deals):
    receipt = buy_receipt(deals[710004])
    mt.consume(receipt.code, 2, "req-1", "desk01", "前台")
    mt.consume(receipt.code, 3, "req-2", "desk01", "前台")
    assert fresh(receipt.code).uses_left == 5
    mt.reverse_consume(receipt.code, 710004, "desk01", "前台")
    assert fresh(receipt.code).uses_left == 8
    mt.reverse_consume(receipt.code, 710004, "desk01", "前台")
    assert fresh(receipt.code).uses_left == 10
    with pytest.raises(VoucherCancelNotAllowed):
        mt.reverse_consume(receipt.code, 710004, "desk01", "前台")


def test_reverse_consume_rules(app, mt, deals):
    receipt = buy_receipt(deals[710001])
    with pytest.raises(VoucherCancelNotAllowed) as caught:
        mt.reverse_consume(receipt.code, 710001, "desk01", "前台")  # nothing to undo
    assert caught.value.platform_code == "1020"
    mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    with pytest.raises(VoucherNotFound):
        mt.reverse_consume(receipt.code, 710002, "desk01", "前台")  # another deal
    with make_client(app, token="other-store") as elsewhere, pytest.raises(VoucherNotValidHere):
        elsewhere.reverse_consume(receipt.code, 710001, "desk01", "前台")
    consumption = db.session.execute(select(SandboxMeituanConsumption)).scalar_one()
    consumption.consumed_at = utcnow() - timedelta(days=1)  # the platform's window: the same day
    db.session.commit()
    with pytest.raises(VoucherCancelNotAllowed):
        mt.reverse_consume(receipt.code, 710001, "desk01", "前台")
    assert fresh(receipt.code).status == "used"


def test_a_consume_reversed_then_retried_with_its_request_id_is_a_duplicate(mt, deals):
    receipt = buy_receipt(deals[710001])
    mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    mt.reverse_consume(receipt.code, 710001, "desk01", "前台")
    with pytest.raises(VoucherError) as caught:
        mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    assert caught.value.platform_code == "1013"
    assert fresh(receipt.code).uses_left == 1


# ---- unavailability and retries ----------------------------------------------------------------

def test_5xx_is_retried_a_bounded_number_of_times_then_unavailable(mt, deals):
    receipt = buy_receipt(deals[710001])
    set_misbehaviour("5xx", times=-1)
    with pytest.raises(PlatformUnavailable) as caught:
        mt.prepare(receipt.code)
    assert caught.value.retryable
    assert mt.last_attempts == 3 and call_count() == 3


def test_5xx_then_recovery_succeeds_on_a_retry(mt, deals):
    receipt = buy_receipt(deals[710001])
    set_misbehaviour("5xx", times=2)
    assert mt.prepare(receipt.code).uses_left == 1
    assert mt.last_attempts == 3 and call_count() == 3


def test_consume_is_retried_with_the_same_request_id(mt, deals):
    receipt = buy_receipt(deals[710003])
    set_misbehaviour("5xx", times=1)
    mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    assert mt.last_attempts == 2
    assert consumptions(receipt.code) == 1 and fresh(receipt.code).uses_left == 19


def test_reverse_consume_is_never_retried(mt, deals):
    receipt = buy_receipt(deals[710001])
    mt.consume(receipt.code, 1, "req-1", "desk01", "前台")
    set_misbehaviour("5xx", times=1)
    calls = call_count()
    with pytest.raises(PlatformUnavailable):
        mt.reverse_consume(receipt.code, 710001, "desk01", "前台")
    assert mt.last_attempts == 1 and call_count() == calls + 1
    assert fresh(receipt.code).status == "used"


def test_backoff_grows_between_attempts(app, deals):
    receipt = buy_receipt(deals[710001])
    pauses: list[float] = []
    set_misbehaviour("5xx", times=-1)
    with make_client(app, backoff=0.1, retries=3, sleep=pauses.append) as client, pytest.raises(PlatformUnavailable):
        client.prepare(receipt.code)
    assert pauses == [0.1, 0.2, 0.4] and client.last_attempts == 4


def test_connection_refused_is_unavailable(app):
    with make_client(app, base_url="http://127.0.0.1:9", transport=None, retries=1, timeout=1.0) as client:
        with pytest.raises(PlatformUnavailable):
            client.prepare("123456789012")
        assert client.last_attempts == 2


@pytest.fixture(scope="module")
def live_url(app):
    """The app served on a real socket, so client timeouts apply (WSGITransport has none)."""
    with serving(app) as base:
        yield base + "/sandbox/meituan"


def test_latency_beyond_the_timeout_is_unavailable_after_retries(app, deals, live_url):
    receipt = buy_receipt(deals[710001])
    set_misbehaviour("latency", times=-1, latency_ms=700)
    started = time.monotonic()
    with make_client(app, base_url=live_url, transport=None, timeout=0.2, retries=1) as client:
        with pytest.raises(PlatformUnavailable) as caught:
            client.prepare(receipt.code)
        assert "timeout" in caught.value.detail
        assert client.last_attempts == 2
    assert time.monotonic() - started < 1.5  # gave up on time, did not wait for the answers
    assert call_count() == 2
    time.sleep(0.8)  # let the slow answers finish before the tables are cleaned


def test_a_consume_that_timed_out_but_happened_is_not_repeated_by_the_retry(app, deals, live_url):
    receipt = buy_receipt(deals[710003])
    set_misbehaviour("latency", times=1, latency_ms=800)  # the first attempt is slow, but does its work
    with make_client(app, base_url=live_url, transport=None, timeout=0.3, retries=2) as client:
        verified = client.consume(receipt.code, 1, "req-slow", "desk01", "前台")
        assert client.last_attempts == 2
    time.sleep(1.0)  # the slow first attempt finishes and finds requestId already consumed
    assert consumptions(receipt.code) == 1 and fresh(receipt.code).uses_left == 19
    assert db.session.execute(select(SandboxMeituanConsumption.flow_id)).scalar_one() == verified.verify_id


def test_timeout_mode_does_no_work(app, deals, live_url):
    receipt = buy_receipt(deals[710001])
    set_misbehaviour("timeout", times=-1, latency_ms=50)
    with make_client(app, base_url=live_url, transport=None, timeout=2.0, retries=1) as client:
        with pytest.raises(PlatformUnavailable):
            client.consume(receipt.code, 1, "req-t", "desk01", "前台")
        assert client.last_attempts == 2
    assert consumptions() == 0


# ---- the lists ---------------------------------------------------------------------------------

def test_query_by_date_lists_bought_and_verified_codes(mt, deals):
    today = business_today()
    bought = [buy_receipt(deals[710001]), buy_receipt(deals[710003]), buy_receipt(deals[710005])]
    yesterday = buy_receipt(deals[710002], bought_at=utcnow() - timedelta(days=1))
    mt.consume(bought[0].code, 1, "req-1", "desk01", "前台")
    mt.consume(bought[1].code, 4, "req-2", "desk01", "前台")

    orders = mt.query_by_date(today, kind="order", page_size=2)  # two pages
    assert sorted(r.code for r in orders) == sorted(r.code for r in bought)
    by_code = {r.code: r for r in orders}
    card = by_code[bought[1].code]
    assert (card.deal_id, card.paid_price_fen, card.original_price_fen) == ("710003", 59900, 80000)
    assert (card.uses_total, card.uses_left, card.status) == (20, 16, "unused")
    assert card.ordered_at is not None and card.order_id == bought[1].order_id

    verified = mt.query_by_date(today, kind="consumed")
    assert [(r.code, r.count) for r in verified] == [(bought[0].code, 1), (bought[1].code, 4)]
    assert all(r.flow_id and r.consumed_at for r in verified)

    earlier = mt.query_by_date(today - timedelta(days=1), kind="order")
    assert [r.code for r in earlier] == [yesterday.code]
    assert mt.query_by_date(today - timedelta(days=1), kind="consumed") == []


def test_the_by_date_lists_are_the_calling_stores_own(app, deals):
    today = business_today()
    mine = buy_receipt(deals[710001], store_token="store-A")
    theirs = buy_receipt(deals[710001], store_token="store-B")
    anywhere = buy_receipt(deals[710001])  # a code of no one store: every store may verify it
    with make_client(app, token="store-A") as a, make_client(app, token="store-B") as b:
        assert sorted(r.code for r in a.query_by_date(today, kind="order")) == sorted([mine.code, anywhere.code])
        assert sorted(r.code for r in b.query_by_date(today, kind="order")) == sorted([theirs.code, anywhere.code])
        a.consume(mine.code, 1, "req-a1", "desk-a", "前台A")
        a.consume(anywhere.code, 1, "req-a2", "desk-a", "前台A")
        b.consume(theirs.code, 1, "req-b1", "desk-b", "前台B")
        assert [r.code for r in a.query_by_date(today, kind="consumed")] == [mine.code, anywhere.code]
        assert [r.code for r in b.query_by_date(today, kind="consumed")] == [theirs.code]
    with make_client(app, token="store-C") as c:
        assert [r.code for r in c.query_by_date(today, kind="order")] == [anywhere.code]
        assert c.query_by_date(today, kind="consumed") == []


@pytest.mark.parametrize("parallel", [1, 3])
def test_query_by_date_pages_in_order_sequentially_or_in_parallel(app, deals, parallel):
    bought = [buy_receipt(deals[710001]).code for _ in range(11)]
    with make_client(app) as client:
        calls = call_count()
        found = client.query_by_date(business_today(), kind="order", page_size=2, parallel=parallel)
        assert [r.code for r in found] == bought  # every code once, in the platform's order
        assert call_count() - calls == 6  # pages of 2: 0, 2, 4, 6, 8, 10


def test_pages_read_out_of_order_give_the_same_list(app, deals):
    """Keyset pages (after a page already served) and OFFSET pages (a page asked first) agree."""
    bought = [buy_receipt(deals[710001]).code for _ in range(7)]
    today = business_today()
    with make_client(app) as client:
        total, first = client._list_page(today, "order", 0, 2)
        assert total == 7 and [r.code for r in first] == bought[:2]
        for offset in (4, 2, 6, 4):  # 4 before 2: OFFSET; 2 then 4 again: keyset
            assert [r.code for r in client._list_page(today, "order", offset, 2)[1]] == bought[offset:offset + 2]


def test_a_listing_is_a_snapshot_and_the_next_one_sees_new_orders(app, deals):
    today = business_today()
    bought = [buy_receipt(deals[710001]).code for _ in range(3)]
    with make_client(app) as client:
        total, first = client._list_page(today, "order", 0, 2)
        late = buy_receipt(deals[710001]).code  # bought while the list is being read
        total_then, rest = client._list_page(today, "order", 2, 2)
        assert (total, total_then) == (3, 3) and [r.code for r in first + rest] == bought
        assert [r.code for r in client.query_by_date(today, kind="order")] == bought + [late]


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_list_that_grows_while_it_is_read_is_read_to_the_end(app, monkeypatch, parallel):
    codes = [f"10000000000{n}" for n in range(5)]

    def page(day, kind, offset, limit):  # a platform whose total grows: two orders arrive after page one
        rows = [ReceiptRecord(code, "710001", None, "月卡", 19900, 29900, None, "unused", 1, 1, None, None, None,
                              None, None) for code in codes[offset:offset + limit]]
        return (3 if offset == 0 else 5), rows

    with make_client(app) as client:
        monkeypatch.setattr(client, "_list_page", page)
        found = client.query_by_date(business_today(), kind="order", page_size=2, parallel=parallel)
    assert [r.code for r in found] == codes


# ---- concurrency -------------------------------------------------------------------------------

def _race(app, code: str, request_ids: list[str]) -> list[object]:
    barrier = threading.Barrier(len(request_ids))
    results: list[object] = [None] * len(request_ids)

    def run(index: int, request_id: str) -> None:
        with make_client(app) as client:
            barrier.wait()
            try:
                results[index] = client.consume(code, 1, request_id, "desk01", "前台")
            except VoucherError as exc:
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i, rid)) for i, rid in enumerate(request_ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_two_desks_consuming_one_code_at_once_exactly_one_wins(app, deals):
    for round_ in range(5):
        receipt = buy_receipt(deals[710001])
        results = _race(app, receipt.code, [f"a-{round_}", f"b-{round_}"])
        wins = [r for r in results if not isinstance(r, Exception)]
        losses = [r for r in results if isinstance(r, VoucherAlreadyUsed)]
        assert len(wins) == 1 and len(losses) == 1, results
        assert consumptions(receipt.code) == 1


def test_the_same_request_id_at_once_consumes_once(app, deals):
    receipt = buy_receipt(deals[710003])
    results = _race(app, receipt.code, ["same", "same", "same"])
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({r.verify_id for r in results}) == 1
    assert consumptions(receipt.code) == 1 and fresh(receipt.code).uses_left == 19
