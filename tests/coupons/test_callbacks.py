"""Callbacks from 云数汇 on PostgreSQL and Redis: the exact acknowledgement, every callback kept,
refusals (signature, stale, replay, unknown), duplicates and out-of-order callbacks changing
nothing twice (also when sent at once from many threads), and a failed apply that is retried.

Callbacks are signed here with `cryptography` and the sandbox's notification key, independently of
the code under test."""
from __future__ import annotations

import json
import secrets
import threading
import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from app.coupons import issuance
from app.coupons.models import BankNotification, CouponActivity, CouponCallback, CouponIssue, CouponMemberCount
from app.extensions import db
from app.sandbox import yunshuhui as sandbox
from tests.coupons.bank_api_helpers import bank, bank_key_pair, issue_body, make_bank, rsa_sign  # noqa: F401
from tests.coupons.ysh_sandbox import connect_ysh_account

ACK = '{"code":"SUCCESS","msg":"处理成功"}'.encode()


@pytest.fixture
def activity(make, bank):
    return make.coupon_activity(org=bank.org, issue_total=10, per_member_limit=1)


def accepted(client, bank, activity, status: str = "processing") -> CouponIssue:
    response = bank.caller.post(client, "/api/v1/coupons/issue", issue_body(activity))
    issue = db.session.execute(select(CouponIssue).filter_by(order_no=response.get_json()["orderNo"])).scalar_one()
    if status == "processing":
        issuance.settle(issue.id, issuance.Word("PROCESS", third_coupon_id="CP1", trade_no="YT1"), "answer")
        db.session.commit()
    return issue


def issuance_body(issue: CouponIssue, status: str = "SUCCESS", **values) -> bytes:
    return json.dumps({"orgId": "800000000001", "callTradeNo": issue.order_no, "amount": 10.5, "tradeStatus": status,
                       "failMsg": "" if status == "SUCCESS" else "库存不足", "tradeCreateTime": "2026-11-23 10:00:00",
                       "tradePaymentTime": "2026-11-23 10:00:05", "sign": "ignored", **values},
                      ensure_ascii=False).encode()


def redemption_body(issue: CouponIssue, status: str = "USED", **values) -> bytes:
    return json.dumps({"member_id": "800000000001", "owner_id": "12345678", "channel_openid": "oX",
                       "promotion_id": "P1", "third_coupon_id": "CP1", "activity_id": "1000000001",
                       "promo_amount": 1000, "total_amount": 20000, "org_amount": "", "trade_no": "YT1",
                       "mer_order_id": issue.order_no, "gmt_used": "2026-11-23 12:30:00", "tradeStatus": status,
                       "merchant_no": "822290059430001", "merchant_name": "测试商户", "pay_trade_no": "PT9", **values},
                      ensure_ascii=False).encode()


def signed(body: bytes, *, key: str | None = None, timestamp: int | None = None, nonce: str | None = None) -> dict:
    timestamp_text = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or secrets.token_hex(12)
    signature = rsa_sign(key or sandbox.ensure_keys()["notify"].private_key,
                         timestamp_text.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n")
    # 云数汇 sometimes omits the space after the scheme
    return {"Authorization": f'LKLAPI-SHA256withRSA timestamp="{timestamp_text}",nonce_str="{nonce}",'
                             f'signature="{signature}"', "Content-Type": "application/json"}


def send(http, bank, kind: str, body: bytes, headers: dict | None = None, account_id: int | None = None):
    url = f"/callbacks/yunshuhui/{account_id or bank.account.id}/{kind}"
    return http.post(url, data=body, headers=signed(body) if headers is None else headers)


def reread(issue: CouponIssue) -> CouponIssue:
    db.session.expire_all()
    return db.session.get(CouponIssue, issue.id)


def stored() -> list[CouponCallback]:
    db.session.expire_all()
    return list(db.session.execute(select(CouponCallback).order_by(CouponCallback.id)).scalars())


def notifications() -> list[tuple[str, str]]:
    db.session.expire_all()
    return [(n.kind, n.event_key) for n in db.session.execute(select(BankNotification).order_by(BankNotification.id))
            .scalars()]


def test_an_issuance_callback_is_kept_applied_and_acknowledged_exactly(client, bank, activity):
    issue = accepted(client, bank, activity)
    body = issuance_body(issue)
    response = send(client, bank, "issuance", body)

    assert response.status_code == 200 and response.get_data() == ACK
    assert response.headers["Content-Type"].startswith("application/json")
    [callback] = stored()
    assert (callback.kind, callback.outcome, callback.event_key, callback.issue_id, callback.issue_org_id,
            callback.tunnel_account_id) == ("issuance", "applied", f"issuance:{issue.order_no}:SUCCESS", issue.id,
                                            bank.org.id, bank.account.id)
    assert callback.body == body.decode() and callback.headers["Authorization"].startswith("LKLAPI-SHA256withRSA")
    row = reread(issue)
    assert (row.status, row.trade_status, row.settled_by, row.promo_amount_fen) == (
        "succeeded", "SUCCESS", "callback", 1050)
    assert row.issued_at == datetime(2026, 11, 23, 2, 0, 5, tzinfo=timezone.utc)  # Beijing 10:00:05
    assert notifications() == [("issuance", f"issuance:{issue.order_no}")]


def test_a_redemption_callback_records_the_use(client, bank, activity):
    issue = accepted(client, bank, activity)
    issuance.settle(issue.id, issuance.Word("SUCCESS"), "answer")
    db.session.commit()
    assert send(client, bank, "redemption", redemption_body(issue)).get_data() == ACK
    row = reread(issue)
    assert (row.redemption_status, row.promo_amount_fen, row.total_amount_fen, row.org_amount_fen) == (
        "used", 1000, 20000, None)
    assert (row.merchant_no, row.merchant_name, row.redemption_trade_no, row.trade_no) == (
        "822290059430001", "测试商户", "PT9", "YT1")
    assert row.used_at == datetime(2026, 11, 23, 4, 30, tzinfo=timezone.utc)
    assert notifications()[-1] == ("redemption", f"redemption:{issue.order_no}:USED")


def _refusal(bank, issue, case: str) -> tuple[str, bytes, dict, int | None]:
    body = redemption_body(issue)
    if case == "tampered body":
        return "redemption", body.replace(b"20000", b"99999"), signed(body), None
    if case == "wrong key":
        return "redemption", body, signed(body, key=bank_key_pair("forger")[0]), None
    if case == "no signature":
        return "redemption", body, {"Content-Type": "application/json"}, None
    if case == "our bank's key":
        return "redemption", body, signed(body, key=bank.caller.private_pem), None
    if case == "stale timestamp":
        return "redemption", body, signed(body, timestamp=int(time.time()) - 301), None
    if case == "future timestamp":
        # 330, not 301: a second may pass before the server looks, and 300 s ahead would be accepted.
        return "redemption", body, signed(body, timestamp=int(time.time()) + 330), None
    if case == "unknown account":
        return "redemption", body, signed(body), 987654
    if case == "not json":
        return "redemption", b"tradeStatus=USED", signed(b"tradeStatus=USED"), None
    if case == "no status":
        raw = redemption_body(issue, tradeStatus="")
        return "redemption", raw, signed(raw), None
    if case == "bad amount":
        raw = issuance_body(issue, amount="ten")
        return "issuance", raw, signed(raw), None
    raise AssertionError(case)


@pytest.mark.parametrize("case, status, outcome", [
    ("tampered body", 401, "rejected"), ("wrong key", 401, "rejected"), ("no signature", 401, "rejected"),
    ("our bank's key", 401, "rejected"), ("stale timestamp", 401, "stale"), ("future timestamp", 401, "stale"),
    ("unknown account", 404, "rejected"), ("not json", 400, "rejected"), ("no status", 400, "rejected"),
    ("bad amount", 400, "rejected"),
])
def test_callbacks_that_cannot_be_trusted_or_read_are_kept_refused_and_change_nothing(client, bank, activity, case,
                                                                                      status, outcome):
    issue = accepted(client, bank, activity)
    kind, body, headers, account_id = _refusal(bank, issue, case)
    response = send(client, bank, kind, body, headers, account_id)

    assert response.status_code == status
    answer = json.loads(response.get_data())
    assert answer["code"] == "FAIL" and answer["msg"]  # 云数汇 will send it again
    [callback] = stored()
    assert (callback.outcome, callback.event_key, callback.issue_id) == (outcome, None, None)
    assert callback.body == body.decode(errors="replace") and callback.reason
    row = reread(issue)
    assert (row.status, row.redemption_status) == ("processing", None)
    assert notifications() == []


def test_a_replayed_nonce_is_refused(client, bank, activity):
    issue = accepted(client, bank, activity)
    body = issuance_body(issue)
    headers = signed(body)
    assert send(client, bank, "issuance", body, headers).get_data() == ACK
    replay = send(client, bank, "issuance", body, headers)
    assert replay.status_code == 401 and json.loads(replay.get_data())["code"] == "FAIL"
    assert [(c.outcome, c.reason) for c in stored()][1] == ("rejected", "replayed nonce_str")


def test_a_callback_for_an_order_not_ours_is_kept_and_acknowledged(client, make, bank, activity):
    other = make_bank(make)
    other.account = connect_ysh_account(other.org)
    theirs = accepted(client, other, make.coupon_activity(org=other.org))
    ghost = CouponIssue(order_no="CP-NOT-OURS")

    assert send(client, bank, "redemption", redemption_body(ghost)).get_data() == ACK
    assert send(client, bank, "redemption", redemption_body(theirs)).get_data() == ACK  # to bank A's account
    assert [(c.outcome, c.issue_id) for c in stored()] == [("unknown", None), ("unknown", None)]
    assert reread(theirs).redemption_status is None and notifications() == []


def test_duplicates_change_nothing_twice(client, bank, activity):
    issue = accepted(client, bank, activity)
    for _ in range(3):  # 云数汇 sends the same event again, signed afresh each time
        assert send(client, bank, "issuance", issuance_body(issue)).get_data() == ACK
        assert send(client, bank, "redemption", redemption_body(issue)).get_data() == ACK

    outcomes = [(c.kind, c.outcome) for c in stored()]
    assert outcomes.count(("issuance", "applied")) == outcomes.count(("redemption", "applied")) == 1
    assert outcomes.count(("issuance", "duplicate")) == outcomes.count(("redemption", "duplicate")) == 2
    assert sorted(notifications()) == [("issuance", f"issuance:{issue.order_no}"),
                                       ("redemption", f"redemption:{issue.order_no}:USED")]
    db.session.expire_all()
    assert db.session.get(CouponActivity, activity.id).issued_count == 1


def test_a_redemption_before_the_issuance_callback_settles_the_issue_and_a_later_fail_cannot_undo_it(
        client, bank, activity):
    issue = accepted(client, bank, activity)
    assert send(client, bank, "redemption", redemption_body(issue)).get_data() == ACK
    row = reread(issue)
    assert (row.status, row.settled_by, row.redemption_status) == ("succeeded", "callback", "used")

    assert send(client, bank, "issuance", issuance_body(issue)).get_data() == ACK
    assert send(client, bank, "issuance", issuance_body(issue, status="FAIL")).get_data() == ACK
    row = reread(issue)
    assert (row.status, row.redemption_status, row.fail_msg) == ("succeeded", "used", None)
    assert [c.outcome for c in stored()] == ["applied", "applied", "applied"]
    db.session.expire_all()
    assert db.session.get(CouponActivity, activity.id).issued_count == 1  # a late FAIL gives nothing back
    assert db.session.execute(select(CouponMemberCount.issued)).scalar_one() == 1
    assert notifications() == [("issuance", f"issuance:{issue.order_no}"),
                               ("redemption", f"redemption:{issue.order_no}:USED")]


def test_used_wins_over_expired_whatever_the_order(client, make, bank, activity):
    first = accepted(client, bank, activity)
    send(client, bank, "redemption", redemption_body(first, status="EXPIRED"))
    send(client, bank, "redemption", redemption_body(first, status="USED"))
    assert reread(first).redemption_status == "used"

    second = accepted(client, bank, activity)
    send(client, bank, "redemption", redemption_body(second, status="USED"))
    send(client, bank, "redemption", redemption_body(second, status="EXPIRED"))
    assert reread(second).redemption_status == "used"
    kinds = [key for kind, key in notifications() if kind == "redemption"]
    assert kinds == [f"redemption:{first.order_no}:EXPIRED", f"redemption:{first.order_no}:USED",
                     f"redemption:{second.order_no}:USED"]


def test_a_fail_callback_fails_a_processing_issue_and_gives_the_stock_back(client, bank, activity):
    issue = accepted(client, bank, activity)
    assert send(client, bank, "issuance", issuance_body(issue, status="FAIL")).get_data() == ACK
    row = reread(issue)
    assert (row.status, row.fail_msg, row.settled_by) == ("failed", "库存不足", "callback")
    db.session.expire_all()
    assert db.session.get(CouponActivity, activity.id).issued_count == 0


def test_the_same_callback_sent_at_once_from_20_threads_is_applied_once(app, client, bank, activity):
    issue = accepted(client, bank, activity)
    body = redemption_body(issue)
    prepared = [signed(body) for _ in range(20)]
    url = f"/callbacks/yunshuhui/{bank.account.id}/redemption"
    start = threading.Barrier(len(prepared))
    answers: list[bytes] = []

    def fire(headers: dict) -> None:
        http = app.test_client()
        start.wait(10)
        answers.append(http.post(url, data=body, headers=headers).get_data())

    threads = [threading.Thread(target=fire, args=(headers,)) for headers in prepared]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert answers == [ACK] * 20
    outcomes = [c.outcome for c in stored()]
    assert (outcomes.count("applied"), outcomes.count("duplicate")) == (1, 19)
    assert notifications() == [("issuance", f"issuance:{issue.order_no}"),
                               ("redemption", f"redemption:{issue.order_no}:USED")]


def test_a_callback_that_fails_to_apply_is_kept_and_applied_when_sent_again(client, bank, activity, monkeypatch):
    issue = accepted(client, bank, activity)
    real = issuance.record_redemption
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(issuance, "record_redemption", broken_once)
    failed = send(client, bank, "redemption", redemption_body(issue))
    assert failed.status_code == 500 and json.loads(failed.get_data())["code"] == "FAIL"
    [kept] = stored()
    assert (kept.outcome, kept.event_key) == ("rejected", None) and "database hiccup" in kept.reason
    assert reread(issue).redemption_status is None and notifications() == []

    assert send(client, bank, "redemption", redemption_body(issue)).get_data() == ACK  # 云数汇's retry
    assert [c.outcome for c in stored()] == ["rejected", "applied"]
    assert reread(issue).redemption_status == "used"
    assert db.session.execute(select(func.count()).select_from(BankNotification)).scalar_one() == 2


def test_wechat_use_notifications_that_do_not_verify_are_kept_and_refused(client, make, bank):
    from app.coupons.models import TunnelAccount

    account = TunnelAccount(org_id=bank.org.id, tunnel="direct", base_url="http://127.0.0.1:9", app_id="wx1",
                            serial_no="ABC", member_id="1900000109", platform_certs={}, status="active")
    account.secrets = {"private_key": "", "apiv3_key": "k" * 32}
    db.session.add(account)
    db.session.commit()
    body = b'{"id":"EV1","event_type":"COUPON.USE","resource":{}}'
    unsigned = client.post(f"/callbacks/wechatpay/{account.id}/coupon-use", data=body)
    signtest = client.post(f"/callbacks/wechatpay/{account.id}/coupon-use", data=body, headers={
        "Wechatpay-Timestamp": str(int(time.time())), "Wechatpay-Nonce": "n" * 32, "Wechatpay-Serial": "ABC",
        "Wechatpay-Signature": "WECHATPAY/SIGNTEST/abc"})
    elsewhere = client.post(f"/callbacks/wechatpay/{bank.account.id}/coupon-use", data=body)  # a 云数汇 account

    assert [r.status_code for r in (unsigned, signtest, elsewhere)] == [401, 401, 404]
    assert {json.loads(r.get_data())["code"] for r in (unsigned, signtest, elsewhere)} == {"FAIL"}
    assert [(c.kind, c.outcome) for c in stored()] == [("wechat_use", "rejected")] * 3
