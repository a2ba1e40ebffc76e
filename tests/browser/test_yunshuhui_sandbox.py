"""The 云数汇 sandbox in a browser: a visitor gets an openid through the hand-off page, and a
platform admin uses an issued coupon on the console and sees the redemption callback go out."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.providers.yunshuhui import YunshuhuiClient
from app.sandbox.yunshuhui_models import SandboxYshCallback, SandboxYshCoupon
from tests.coupons.ysh_sandbox import connect_ysh_account


def test_openid_hand_off_and_using_a_coupon_on_the_console(page, live_server, login, make, shot):
    bank = make.org(kind="bank")
    account = connect_ysh_account(bank, site=live_server)
    client = YunshuhuiClient.for_account(account)

    other_site = live_server.replace("127.0.0.1", "localhost")  # the bank's H5 is on another origin
    page.goto(client.openid_url(f"{other_site}/healthz?state=s1"))
    shot("openid-page")
    csp = page.request.get(page.url).headers["content-security-policy"]
    assert "form-action 'self' http: https:" in csp  # the answer may leave for the bank's own site
    page.locator("input[name=nickname]").fill("王小明")
    page.get_by_test_id("openid-continue").click()
    page.wait_for_url(f"{other_site}/healthz**")
    returned = parse_qs(urlsplit(page.url).query)
    assert returned["state"] == ["s1"] and returned["from"] == ["dshy"]
    openid = returned["openid"][0]

    answer = client.issue(activity_id="A000000001", owner_id="OWNER001", promotion_id="PROMO1",
                          channel_openid=openid, mer_order_id="BROWSER-1",
                          write_off_notify=f"{live_server}/no-such-endpoint", post_notify=f"{live_server}/nowhere")
    assert answer.succeeded

    admin = make.operator(make.platform(), roles=("platform_admin",))
    login(admin.username)
    page.goto("/sandbox/yunshuhui/")
    row = page.get_by_test_id("coupon-BROWSER-1")
    assert openid in row.inner_text()
    row.locator("input[name=amount]").fill("88.00")
    row.locator("form[data-testid=use-BROWSER-1] button[type=submit]").click()
    expect(page.get_by_test_id("use-BROWSER-1")).to_have_count(0)  # the console came back with the coupon used
    db.session.expire_all()
    coupon = db.session.execute(select(SandboxYshCoupon).filter_by(mer_order_id="BROWSER-1")).scalar_one()
    assert (coupon.redemption_status, coupon.total_amount_fen) == ("USED", 8800)

    page.get_by_test_id("deliver-now").click()
    page.get_by_test_id("callbacks").get_by_text("404").first.wait_for()
    shot("console-after-use")
    db.session.expire_all()
    sent = list(db.session.execute(select(SandboxYshCallback).order_by(SandboxYshCallback.id)).scalars())
    assert [c.kind for c in sent] == ["issuance", "redemption"] and all(c.attempts == 1 for c in sent)
    assert "404" in page.get_by_test_id("callbacks").inner_text()  # the attempt history shows what was answered
