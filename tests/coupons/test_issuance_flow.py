"""The whole pipeline over real sockets: a bank's request → the outbox job → the 云数汇 sandbox
(SUCCESS, PROCESS, FAIL) → its callbacks to our live endpoints → the redemption → signed
notifications to the bank's own HTTP server; and the outbox carrying on after 云数汇 or the bank
was down. The WeChat Pay direct tunnel end to end too."""
from __future__ import annotations

import base64
import os
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.core import outbox
from app.core.outbox import OutboxMessage
from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons import issuance
from app.coupons.models import (BankNotification, BankNotificationAttempt, CouponActivity, CouponCallback,
                                CouponIssue, CouponMemberCount, TunnelAccount)
from app.extensions import db
from app.sandbox import wechatpay as wx_sandbox
from app.sandbox import yunshuhui as sandbox
from app.sandbox.yunshuhui_models import SandboxYshCallbackAttempt, SandboxYshCoupon
from tests.coupons.bank_api_helpers import bank_receiver, issue_body, make_bank  # noqa: F401 (fixture)
from tests.coupons.ysh_sandbox import connect_ysh_account, ysh_live_site  # noqa: F401 (fixture)

ISSUE = "/api/v1/coupons/issue"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.fixture
def live(app, ysh_live_site, monkeypatch):
    """The app on a real socket, and known to 云数汇 by that address."""
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", ysh_live_site)
    return ysh_live_site


@pytest.fixture
def bank(make, live):
    bank = make_bank(make)
    connect_ysh_account(bank.org, site=live)
    return bank


@pytest.fixture
def activity(make, bank):
    return make.coupon_activity(org=bank.org, issue_total=10, per_member_limit=1)


def relay() -> list[outbox.DeliveryOutcome]:
    """What the outbox workers would do now: deliver every due message (and those they add)."""
    outcomes = []
    while True:
        batch = outbox.relay_due()
        if not batch:
            return outcomes
        outcomes += batch


def make_due() -> None:
    """Let every backoff pass, as the clock would."""
    db.session.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                       .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def reread(issue_id: int) -> CouponIssue:
    db.session.expire_all()
    return db.session.get(CouponIssue, issue_id)


def accept(http, bank, activity, receiver, **values) -> CouponIssue:
    response = bank.caller.post(http, ISSUE, issue_body(activity, receiver_url=receiver.url, **values))
    assert response.status_code == 202, response.get_json()
    return db.session.execute(select(CouponIssue).filter_by(order_no=response.get_json()["orderNo"])).scalar_one()


def sandbox_coupon(issue: CouponIssue) -> SandboxYshCoupon:
    db.session.expire_all()
    return db.session.execute(select(SandboxYshCoupon).filter_by(mer_order_id=issue.order_no)).scalar_one()


def callbacks(issue_id: int) -> list[CouponCallback]:
    db.session.expire_all()
    return list(db.session.execute(select(CouponCallback).filter_by(issue_id=issue_id).order_by(CouponCallback.id))
                .scalars())


def test_issue_success_callbacks_redemption_and_signed_notifications_end_to_end(client, bank, activity,
                                                                                 bank_receiver, live):
    issue = accept(client, bank, activity, bank_receiver, call_trade_no="E2E-1", open_id=OPENID, memberId="C9")

    assert [o.status for o in relay()] == ["delivered", "delivered"]  # the issue call, then the bank's notification
    row = reread(issue.id)
    coupon = sandbox_coupon(issue)
    assert (row.status, row.trade_status, row.settled_by, row.attempts) == ("succeeded", "SUCCESS", "answer", 1)
    assert (row.third_coupon_id, row.trade_no, row.batch_code) == (coupon.third_coupon_id, coupon.trade_no,
                                                                   coupon.batch_code)
    assert coupon.channel_openid == OPENID and coupon.post_notify == f"{live}/callbacks/yunshuhui/" \
        f"{db.session.execute(select(TunnelAccount.id)).scalar_one()}/issuance"

    [told] = bank_receiver.requests
    assert told["path"] == "/bank/issued"
    assert bank_receiver.signature_verifies(told, bank.client.our_cert)
    assert told["headers"]["Lklapi-Serial"] == bank.client.our_serial_no
    document = bank_receiver.documents()[0]
    assert {k: document[k] for k in ("notifyType", "tradeStatus", "callTradeNo", "orderNo", "openId", "memberId",
                                     "thirdCouponId", "activityCode")} == {
        "notifyType": "ISSUANCE", "tradeStatus": "SUCCESS", "callTradeNo": "E2E-1", "orderNo": row.order_no,
        "openId": OPENID, "memberId": "C9", "thirdCouponId": coupon.third_coupon_id, "activityCode": activity.code}

    # 云数汇's issuance callback reaches our live endpoint; it confirms what the answer said
    assert sandbox.deliver_due_callbacks()["delivered"] == 1
    [issuance_cb] = callbacks(issue.id)
    assert (issuance_cb.kind, issuance_cb.outcome, issuance_cb.event_key) == (
        "issuance", "applied", f"issuance:{row.order_no}:SUCCESS")
    assert issuance_cb.headers["Authorization"].startswith("LKLAPI-SHA256withRSA")
    ack = db.session.execute(select(SandboxYshCallbackAttempt)).scalar_one()
    assert (ack.ok, ack.http_status, ack.response_excerpt) == (True, 200, '{"code":"SUCCESS","msg":"处理成功"}')
    assert relay() == [] and len(bank_receiver.requests) == 1  # nothing new to tell the bank

    # the customer pays with the coupon
    sandbox.use_coupon(coupon.id, 25_000)
    assert sandbox.deliver_due_callbacks()["delivered"] == 1
    row = reread(issue.id)
    used = sandbox_coupon(issue)
    assert (row.redemption_status, row.promo_amount_fen, row.total_amount_fen, row.org_amount_fen) == (
        "used", 1000, 25_000, 1000)
    assert (row.merchant_no, row.merchant_name, row.redemption_trade_no) == (
        used.merchant_no, used.merchant_name, used.pay_trade_no)
    assert row.used_at.replace(microsecond=0) == used.used_at.replace(microsecond=0)

    assert [o.status for o in relay()] == ["delivered"]
    redeemed = bank_receiver.documents()[1]
    assert bank_receiver.requests[1]["path"] == "/bank/redeemed"
    assert bank_receiver.signature_verifies(bank_receiver.requests[1], bank.client.our_cert)
    assert {k: redeemed[k] for k in ("notifyType", "tradeStatus", "callTradeNo", "promoAmount", "totalAmount",
                                     "orgAmount", "merchantNo", "openId")} == {
        "notifyType": "REDEMPTION", "tradeStatus": "USED", "callTradeNo": "E2E-1", "promoAmount": 1000,
        "totalAmount": 25_000, "orgAmount": 1000, "merchantNo": used.merchant_no, "openId": OPENID}
    assert redeemed["usedAt"] == row.used_at.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M:%S")

    state = bank.caller.get(client, "/api/v1/coupons/issues/E2E-1").get_json()
    assert state["status"] == "succeeded" and state["redemption"]["tradeStatus"] == "USED"
    notes = db.session.execute(select(BankNotification).order_by(BankNotification.id)).scalars().all()
    assert [(n.kind, n.status, n.attempts) for n in notes] == [("issuance", "delivered", 1), ("redemption", "delivered", 1)]
    attempts = db.session.execute(select(BankNotificationAttempt)).scalars().all()
    assert [(a.ok, a.http_status) for a in attempts] == [(True, 200), (True, 200)]
    assert all(a.duration_ms is not None and a.response_excerpt.startswith('{"code":"SUCCESS"') for a in attempts)


def test_a_process_answer_is_settled_by_the_issuance_callback(client, bank, activity, bank_receiver):
    sandbox.update_settings(issue_mode="process", process_delay_seconds=0)
    issue = accept(client, bank, activity, bank_receiver)
    relay()
    row = reread(issue.id)
    assert (row.status, row.trade_status) == ("processing", "PROCESS")
    assert bank_receiver.requests == []  # nothing settled yet, nothing to tell

    assert sandbox.settle_due_coupons() == 1
    assert sandbox.deliver_due_callbacks()["delivered"] == 1
    row = reread(issue.id)
    assert (row.status, row.settled_by, row.promo_amount_fen) == ("succeeded", "callback", 1000)  # ¥10.00 → 1000 fen
    assert row.issued_at is not None and row.third_coupon_id == sandbox_coupon(issue).third_coupon_id
    relay()
    assert [d["tradeStatus"] for d in bank_receiver.documents()] == ["SUCCESS"]


def test_a_process_answer_is_settled_by_the_periodic_query(client, bank, activity, bank_receiver):
    sandbox.update_settings(issue_mode="process", process_delay_seconds=3600, process_outcome="fail")
    failing = accept(client, bank, activity, bank_receiver, open_id="oFailsLater")
    relay()
    sandbox.update_settings(process_outcome="success")
    succeeding = accept(client, bank, activity, bank_receiver, open_id="oSucceedsLater")
    relay()
    assert {reread(i.id).status for i in (failing, succeeding)} == {"processing"}

    sandbox.settle_due_coupons(now=utcnow() + timedelta(hours=2))  # 云数汇 settles; its callbacks are not sent
    assert issuance.settle_processing().checked == 0  # too young to ask about
    db.session.execute(update(CouponIssue).values(created_at=utcnow() - timedelta(minutes=10)))
    db.session.commit()

    report = issuance.settle_processing()
    assert (report.checked, report.settled, report.unavailable) == (2, 2, 0)
    ok, failed = reread(succeeding.id), reread(failing.id)
    assert (ok.status, ok.settled_by) == ("succeeded", "query") and ok.last_queried_at is not None
    assert (failed.status, failed.settled_by, failed.fail_msg) == ("failed", "query", "库存不足")
    db.session.expire_all()
    assert db.session.get(CouponActivity, activity.id).issued_count == 1  # the failed one's coupon came back
    assert issuance.settle_processing().checked == 0

    relay()
    sandbox.deliver_due_callbacks()  # the late callbacks change nothing and tell the bank nothing new
    assert {c.outcome for i in (failing, succeeding) for c in callbacks(i.id)} == {"applied"}
    relay()
    assert sorted(d["tradeStatus"] for d in bank_receiver.documents()) == ["FAIL", "SUCCESS"]
    assert reread(failing.id).status == "failed"


def test_a_fail_answer_fails_the_issue_gives_back_the_stock_and_tells_the_bank(client, bank, activity, bank_receiver):
    sandbox.update_settings(issue_mode="fail", fail_msg="活动已结束")
    issue = accept(client, bank, activity, bank_receiver)
    relay()
    row = reread(issue.id)
    assert (row.status, row.res_code, row.fail_msg, row.settled_by) == ("failed", "999999", "活动已结束", "answer")
    assert db.session.get(CouponActivity, activity.id).issued_count == 0
    assert db.session.execute(select(CouponMemberCount.issued)).scalar_one() == 0
    [document] = bank_receiver.documents()
    assert (document["tradeStatus"], document["failMsg"]) == ("FAIL", "活动已结束")


def test_the_outbox_delivers_after_yunshuhui_was_down(client, bank, activity, bank_receiver):
    sandbox.update_settings(api_mode="5xx")
    issue = accept(client, bank, activity, bank_receiver)
    [outcome] = relay()
    assert outcome.status == "pending" and "TunnelUnavailable" in outcome.error
    row = reread(issue.id)
    assert (row.status, row.attempts) == ("queued", 1)  # the failed try is counted despite the rollback
    assert relay() == []  # backing off

    sandbox.update_settings(api_mode="")
    calls_before = sandbox.call_count()
    make_due()
    relay()
    row = reread(issue.id)
    assert (row.status, row.settled_by, row.attempts) == ("succeeded", "answer", 2)
    assert sandbox.call_count() - calls_before == 2  # it asked what became of the order first, then issued
    assert bank_receiver.documents()[0]["tradeStatus"] == "SUCCESS"


def test_an_answer_lost_on_the_way_is_found_by_query_and_not_issued_twice(client, bank, activity, bank_receiver):
    sandbox.update_settings(api_mode="bad_signature", api_times=1)  # 云数汇 does the work; its answer is mangled
    issue = accept(client, bank, activity, bank_receiver)
    [outcome] = relay()
    assert outcome.status == "pending" and "SIGNATURE" in outcome.error
    assert reread(issue.id).status == "queued"

    calls_before = sandbox.call_count()
    make_due()
    relay()
    row = reread(issue.id)
    assert (row.status, row.settled_by) == ("succeeded", "query")
    assert sandbox.call_count() - calls_before == 1  # the query only
    assert db.session.execute(select(func.count()).select_from(SandboxYshCoupon)).scalar_one() == 1


def test_the_outbox_delivers_after_the_bank_was_down_and_keeps_every_attempt(client, bank, activity, bank_receiver):
    issue = accept(client, bank, activity, bank_receiver)
    bank_receiver.status = 503
    outcomes = relay()
    assert [o.status for o in outcomes] == ["delivered", "pending"]
    note = db.session.execute(select(BankNotification)).scalar_one()
    assert (note.status, note.attempts) == ("pending", 1)

    bank_receiver.status, bank_receiver.answer = 200, b'{"code":"FAIL","msg":"busy"}'  # 200, but not taken
    make_due()
    assert [o.status for o in relay()] == ["pending"]
    bank_receiver.answer = b'{"code":"SUCCESS"}'
    make_due()
    assert [o.status for o in relay()] == ["delivered"]

    db.session.expire_all()
    note = db.session.get(BankNotification, note.id)
    assert (note.status, note.attempts) == ("delivered", 3) and note.delivered_at is not None
    attempts = db.session.execute(select(BankNotificationAttempt).filter_by(notification_id=note.id)
                                  .order_by(BankNotificationAttempt.id)).scalars().all()
    assert [(a.ok, a.http_status) for a in attempts] == [(False, 503), (False, 200), (True, 200)]
    assert "SUCCESS" in attempts[1].error and attempts[1].response_excerpt == '{"code":"FAIL","msg":"busy"}'
    documents = bank_receiver.documents()
    assert len(documents) == 3 and all(d == documents[0] for d in documents)  # the same notification each time
    assert all(bank_receiver.signature_verifies(r, bank.client.our_cert) for r in bank_receiver.requests)
    assert reread(issue.id).status == "succeeded"


def test_a_notification_the_bank_never_takes_ends_failed_and_dead(client, bank, activity, bank_receiver):
    accept(client, bank, activity, bank_receiver)
    bank_receiver.status = 500
    relay()
    db.session.execute(update(OutboxMessage).where(OutboxMessage.kind == "coupons.notify_bank").values(max_attempts=2))
    db.session.commit()
    make_due()
    relay()
    db.session.expire_all()
    note = db.session.execute(select(BankNotification)).scalar_one()
    message = db.session.get(OutboxMessage, note.outbox_message_id)
    assert (note.status, note.attempts, message.status) == ("failed", 2, "dead")


# --- the direct tunnel (WeChat Pay 代金券) -----------------------------------------------------------

@pytest.fixture
def direct_bank(make, live):
    from tests.coupons.bank_api_helpers import bank_key_pair

    bank = make_bank(make)
    private_pem, cert_pem = bank_key_pair("wx-merchant")
    from app.providers.lklapi import certificate_serial

    mchid = f"19{bank.org.id:08d}"
    apiv3_key = base64.b32encode(os.urandom(20)).decode()
    platform = wx_sandbox.provision_merchant(mchid, certificate_serial(cert_pem).upper(), cert_pem, apiv3_key)
    account = TunnelAccount(org_id=bank.org.id, tunnel="direct", base_url=f"{live}/sandbox/wechatpay",
                            app_id="wx8888888888888888", serial_no=certificate_serial(cert_pem).upper(),
                            member_id=mchid, platform_certs={platform["platform_serial"]: platform["platform_cert"]},
                            status="active")
    account.secrets = {"private_key": private_pem, "apiv3_key": apiv3_key}
    db.session.add(account)
    db.session.commit()
    wx_sandbox.set_notify_url(mchid, f"{live}/callbacks/wechatpay/{account.id}/coupon-use")
    stock = wx_sandbox.create_stock(mchid, coupon_amount_fen=1000, max_coupons=5)
    return bank, stock


def test_the_direct_tunnel_sends_a_wechat_coupon_and_takes_its_use_notification(client, make, direct_bank,
                                                                                 bank_receiver):
    bank, stock = direct_bank
    activity = make.coupon_activity(org=bank.org, tunnel="direct", promotion_id=stock.stock_id)
    issue = accept(client, bank, activity, bank_receiver, open_id=OPENID)
    relay()
    row = reread(issue.id)
    assert (row.status, row.settled_by) == ("succeeded", "answer") and row.third_coupon_id

    wx_sandbox.use_coupon(row.third_coupon_id)
    assert [status for _, status in wx_sandbox.deliver_due_notifications()] == ["delivered"]
    row = reread(issue.id)
    assert row.redemption_status == "used" and row.used_at is not None and row.redemption_trade_no
    [callback] = callbacks(issue.id)
    assert (callback.kind, callback.outcome) == ("wechat_use", "applied")
    relay()
    assert [d["notifyType"] for d in bank_receiver.documents()] == ["ISSUANCE", "REDEMPTION"]
