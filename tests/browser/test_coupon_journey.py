"""Issue 4 end to end in Chromium: a bank's operator creates a 云数汇 / WeChat coupon activity through
the real form; the bank's customer gets an openid through the OpenID hand-off on a phone; the bank
issues a coupon through the signed API; the operator watches the issuance monitor count it as
succeeded; a platform operator uses the coupon on the 云数汇 sandbox's console; 云数汇's callbacks
(each sent twice) reach us; the operator finds the redemption in the redemption-details report and
the bank's own HTTP server got exactly one notification of each kind.

Nothing is called in-process: the bank, the sandbox and the callbacks talk to the live server over
sockets. The background work runs the way production runs it: the API and the callbacks enqueue
outbox jobs on Redis, and `run_jobs()` is an RQ worker (the embedded worker's class) in burst mode;
`cron_tick()` loads jobs/cron.py into an RQ cron scheduler and enqueues what a first tick enqueues
(the interval entries: the outbox relay and the 云数汇 sandbox's clock, which sends due callbacks).
"""
from __future__ import annotations

import json
import re
import secrets
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons.models import BankNotification, CouponActivity, CouponCallback, CouponIssue
from app.extensions import db, get_redis
from app.sandbox import yunshuhui as sandbox
from app.sandbox.yunshuhui_models import SandboxYshCallback
from jobs import QUEUES
from jobs.embedded import ThreadCronScheduler, ThreadWorker
from tests.browser.conftest import ARTIFACTS
from tests.coupons.bank_api_helpers import bank_receiver, issue_body, make_bank  # noqa: F401 (fixture)
from tests.coupons.ysh_sandbox import connect_ysh_account

UPSTREAM_ACTIVITY = "3000012345"  # the batch as 云数汇's console knows it: ¥10 off from ¥100
BANK_H5 = "http://h5.bank.example/coupons/claim?campaign=spring"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def run_jobs() -> None:
    """An RQ worker on our queues, until they are empty (jobs added meanwhile included)."""
    ThreadWorker(list(QUEUES), connection=get_redis()).work(burst=True, logging_level="WARNING")


def cron_tick() -> list[str]:
    """What the cron process enqueues on its first tick (every interval entry of jobs/cron.py), then run it."""
    scheduler = ThreadCronScheduler(connection=get_redis(), logging_level="WARNING")
    scheduler.load_config_from_file("jobs.cron")
    enqueued = [job.name for job in scheduler.enqueue_jobs()]
    run_jobs()
    return enqueued


def phone_shot(page, step: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"coupon-journey-phone-{step}.png"), full_page=True)


def committed(model, **where):
    db.session.expire_all()
    return db.session.execute(select(model).filter_by(**where)).scalar_one()


@pytest.fixture
def journey(app, live_server, make, monkeypatch):
    """The bank (API client, 云数汇 account on the live sandbox), its operator, a platform operator."""
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server)  # where 云数汇 and browsers reach us
    bank = make_bank(make, org=make.org(kind="bank", name="华东测试银行"))
    bank.account = connect_ysh_account(bank.org, site=live_server)
    sandbox.define_activity(UPSTREAM_ACTIVITY, title="满100减10", face_value_fen=1000, threshold_fen=10_000)
    sandbox.update_settings(cb_duplicates=1)  # every callback arrives twice
    make.operator(bank.org, roles=("org_admin",), username="coupon_operator")
    make.operator(make.platform(), roles=("platform_admin",), username="platform_operator")
    return bank


def create_activity_through_the_form(page, bank, shot) -> CouponActivity:
    page.goto("/coupons/activities")
    expect(page.get_by_test_id("tunnel-yunshuhui")).to_have_class(re.compile(r"\bactive\b"))
    page.get_by_test_id("new-coupon-activity").click()
    form = page.locator("#modal").get_by_test_id("coupon-activity-form")
    expect(form).to_be_visible()
    form.locator("input[name=name]").fill("春季微信满减券")
    form.locator("select[name=org_id]").select_option(str(bank.org.id))
    form.locator("select[name=tunnel]").select_option("yunshuhui")
    form.locator("select[name=channel]").select_option("wechat")
    form.locator("select[name=coupon_type]").select_option("threshold")
    form.locator("input[name=batch_no]").fill("202603001")
    form.locator("input[name=upstream_activity_id]").fill(UPSTREAM_ACTIVITY)
    form.locator("input[name=owner_id]").fill("12345678")
    form.locator("input[name=promotion_id]").fill("PROMO-SPRING")
    form.locator("input[name=promo_amount]").fill("10")
    form.locator("input[name=threshold]").fill("100")
    # A start may lie in the current minute, so the activity runs at once, provided the form is
    # sent before the minute turns: begin early in a minute.
    while utcnow().second > 40:
        time.sleep(0.5)
    local_now = utcnow().astimezone(BUSINESS_TZ)
    form.locator("input[name=start_at]").fill(local_now.replace(second=0).strftime("%Y-%m-%dT%H:%M:%S"))
    form.locator("input[name=end_at]").fill((local_now + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S"))
    form.locator("input[name=issue_total]").fill("100")
    form.locator("input[name=per_member_limit]").fill("1")
    form.locator("textarea[name=description]").fill("每位客户限领一张，满100元可用")
    page.locator("#modal .modal-dialog").screenshot(path=str(shot("form").with_name("coupon-journey-form.png")))
    form.get_by_test_id("submit").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator("#modal [data-testid=form-errors]")).to_have_count(0)
    expect(page.locator("#modal")).to_be_hidden()
    activity = committed(CouponActivity, name="春季微信满减券")
    assert (activity.org_id, activity.tunnel, activity.channel) == (bank.org.id, "yunshuhui", "wechat")
    assert (activity.promo_amount_fen, activity.threshold_fen) == (1000, 10_000)
    expect(page.get_by_test_id(f"activity-row-{activity.code}")).to_be_visible()
    expect(page.get_by_test_id("tunnel-count-yunshuhui")).to_have_text("1")  # the tab counts it too
    expect(page.locator(".modal-backdrop")).to_have_count(0)  # the confirmation has gone too
    shot("activity-created")
    return activity


def hand_off_on_the_phone(browser, live_server, bank) -> str:
    """The customer opens the bank's H5 page on a phone; it sends them through our hand-off and
    云数汇's page, and they come back to the bank's page with their openid."""
    phone = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", **PHONE)
    try:
        customer = phone.new_page()
        customer.route("http://h5.bank.example/**", lambda route: route.fulfill(
            content_type="text/html; charset=utf-8", body="<!doctype html><title>银行H5</title><p>领券页</p>"))
        customer.goto("/api/v1/openid?" + urlencode({"bankId": bank.partner.code, "redirect": BANK_H5}))
        expect(customer.get_by_test_id("sandbox-openid")).to_be_visible()
        phone_shot(customer, "ysh-openid-page")
        customer.locator("input[name=nickname]").fill("王小明")
        customer.get_by_test_id("openid-new").locator("button[type=submit]").click()
        customer.wait_for_url("http://h5.bank.example/**")
        back = parse_qs(urlsplit(customer.url).query)
        assert back["campaign"] == ["spring"]
        return back["openid"][0]
    finally:
        phone.close()


def issue_through_the_api(live_server, bank, activity, openid: str, receiver) -> dict:
    """The bank's back end calls POST /api/v1/coupons/issue, signed with its own key."""
    body = json.dumps(issue_body(activity, call_trade_no="SPRING-0001", open_id=openid, receiver_url=receiver.url,
                                 memberId="C-88"), ensure_ascii=False).encode()
    headers = {"Authorization": bank.caller.authorization(body), "Content-Type": "application/json",
               "Idempotency-Key": secrets.token_hex(8)}
    answer = httpx.post(f"{live_server}/api/v1/coupons/issue", content=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text
    assert bank.caller.answer_verifies(SimpleNamespace(headers=answer.headers, get_data=lambda: answer.content))
    return answer.json()


def log_out(page) -> None:
    page.get_by_test_id("user-menu").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url("**/login**")


def test_a_coupon_from_the_form_to_the_banks_redemption_notice(page, browser, live_server, login, shot, journey,
                                                               bank_receiver):
    bank = journey
    login("coupon_operator")
    activity = create_activity_through_the_form(page, bank, shot)

    openid = hand_off_on_the_phone(browser, live_server, bank)
    accepted = issue_through_the_api(live_server, bank, activity, openid, bank_receiver)
    assert accepted["status"] == "queued" and accepted["callTradeNo"] == "SPRING-0001"
    issue = committed(CouponIssue, order_no=accepted["orderNo"])

    # The operator watches the activity's monitor: queued, then (the worker runs) succeeded.
    page.goto("/coupons/monitor")
    expect(page.get_by_test_id(f"monitor-activity-{activity.id}").locator("[data-count=queued]")).to_have_text("1")
    page.get_by_test_id(f"monitor-activity-{activity.id}").get_by_role("link").first.click()
    page.wait_for_url(f"**/coupons/monitor/{activity.id}")
    expect(page.get_by_test_id("count-queued")).to_have_text("1")
    shot("monitor-queued")
    run_jobs()  # the outbox job calls 云数汇, records SUCCESS, and tells the bank's postNotify
    expect(page.get_by_test_id("count-succeeded")).to_have_text("1", timeout=12_000)  # the next poll
    expect(page.get_by_test_id("count-queued")).to_have_text("0")
    expect(page.get_by_test_id("count-failed")).to_have_text("0")
    shot("monitor-succeeded")
    assert [r["path"] for r in bank_receiver.requests] == ["/bank/issued"]
    assert "relay_outbox" in cron_tick()  # 云数汇's issuance callback (and its copy) confirm; nothing new for the bank
    assert [r["path"] for r in bank_receiver.requests] == ["/bank/issued"]
    log_out(page)

    # A platform operator uses the coupon on the sandbox's console: an order of ¥128.00.
    login("platform_operator")
    page.goto("/sandbox/yunshuhui/")
    row = page.get_by_test_id(f"coupon-{issue.order_no}")
    expect(row).to_contain_text(openid)
    row.locator("input[name=amount]").fill("128.00")
    shot("sandbox-before-use")
    row.get_by_test_id(f"use-{issue.order_no}").locator("button[type=submit]").click()
    expect(page.locator("#toasts .toast")).to_have_count(1)
    expect(page.get_by_test_id(f"coupon-{issue.order_no}")).to_contain_text("128.00")
    shot("sandbox-used")

    # The cron: the sandbox's clock sends the redemption callback (twice); the outbox tells the bank once.
    assert {"relay_outbox", "run_yunshuhui_sandbox"} <= set(cron_tick())
    cron_tick()  # a later tick finds nothing left to send
    db.session.expire_all()
    sent = db.session.execute(select(SandboxYshCallback).order_by(SandboxYshCallback.id)).scalars().all()
    assert [(c.kind, c.status) for c in sent] == [("issuance", "delivered")] * 2 + [("redemption", "delivered")] * 2
    outcomes = sorted((c.kind, c.outcome) for c in db.session.execute(
        select(CouponCallback).filter_by(issue_id=issue.id)).scalars())
    assert outcomes == [("issuance", "applied"), ("issuance", "duplicate"),
                        ("redemption", "applied"), ("redemption", "duplicate")]
    page.reload()
    expect(page.get_by_test_id("callbacks").locator("tr[data-status=delivered]")).to_have_count(4)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]  # no sideways page
    shot("sandbox-callbacks")
    log_out(page)

    assert [r["path"] for r in bank_receiver.requests] == ["/bank/issued", "/bank/redeemed"]
    redeemed = bank_receiver.requests[1]
    assert bank_receiver.signature_verifies(redeemed, bank.client.our_cert)
    notice = json.loads(redeemed["body"])
    assert {k: notice[k] for k in ("notifyType", "tradeStatus", "callTradeNo", "orderNo", "openId", "memberId",
                                   "promoAmount", "totalAmount", "activityCode")} == {
        "notifyType": "REDEMPTION", "tradeStatus": "USED", "callTradeNo": "SPRING-0001", "orderNo": issue.order_no,
        "openId": openid, "memberId": "C-88", "promoAmount": 1000, "totalAmount": 12_800, "activityCode": activity.code}
    assert [(n.kind, n.status, n.attempts) for n in db.session.execute(
        select(BankNotification).filter_by(issue_id=issue.id).order_by(BankNotification.id)).scalars()] == [
        ("issuance", "delivered", 1), ("redemption", "delivered", 1)]

    # The operator finds it in the redemption details, and on the issue's own page.
    login("coupon_operator")
    page.goto("/coupons/reports/redemptions")
    rows = page.get_by_test_id("report-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(issue.order_no)
    expect(rows.first.locator("[data-col=order_fen]")).to_contain_text("128.00")
    expect(rows.first.locator("[data-col=redeemed_fen]")).to_contain_text("10.00")
    expect(rows.first.locator("[data-col=merchant]")).to_contain_text(sandbox.SANDBOX_MERCHANT_NO)
    shot("redemption-report")
    page.goto(f"/coupons/monitor/{activity.id}")
    expect(page.get_by_test_id("count-redeemed")).to_have_text("1")
    page.goto(f"/coupons/monitor/issues/{issue.id}")
    expect(page.get_by_test_id("notifications").locator("tbody tr")).to_have_count(2)
    shot("issue-page")


def test_a_refused_hand_off_shows_the_customer_a_page_for_phones(browser, live_server, journey):
    """The customer's phone, with the hand-off refused: our own small page, no console in sight."""
    phone = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", **PHONE)
    try:
        customer = phone.new_page()
        customer.goto("/api/v1/openid?" + urlencode({"bankId": journey.partner.code,
                                                      "redirect": "https://phish.example/claim"}))
        refusal = customer.get_by_test_id("handoff-error")
        expect(refusal).to_have_attribute("data-code", "URL_NOT_ALLOWED")
        expect(customer.get_by_test_id("back-to-bank")).to_have_count(0)  # a refused address is never linked
        expect(customer.locator("a[href*='dashboard'], nav, script")).to_have_count(0)
        assert customer.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]
        phone_shot(customer, "handoff-refused")
        refusal.locator("summary").click()
        expect(refusal.locator("code")).to_contain_text("phish.example")  # for the bank's support staff
        phone_shot(customer, "handoff-refused-details")
    finally:
        phone.close()
