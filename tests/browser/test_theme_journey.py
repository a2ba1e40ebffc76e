"""A theme activity end to end in Chromium, as its people use it: a bank's operator designs the wheel in
the console (a colour changed, a linked coupon activity added as a row, the wheel turned on and saved
after the confirmation), takes the H5 link from the activity's "QR code and link" tab; a customer
opens it on a phone, passes 云数汇's OpenID hand-off on the sandbox and spins until the wheel gives a
prize; the operator then finds exactly those visits, spins and the win in the activity's statistics.

Nothing is faked: the draws are the engine's own (secrets.SystemRandom). The stocked prize weighs 100
and the fallback and the coupon 1 each, and the customer spins until a prize comes (at most 10, the
daily limit: all 10 giving the fallback has a chance of 1 in 102¹⁰). The statistics are then checked
against the spins and the prize the page itself showed (and the database), whatever they were.

Uses the fixtures of tests/browser/conftest.py (the console's `page`, the customer's `phone`; both fail
the test on an uncaught JavaScript error) and the customer's steps of tests/browser/h5_steps.py.
Elements are found by data-testid, name or id, never by visible text; the console is in Chinese.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from app.activities.entry import entry_path
from app.activities.models import ThemeActivity
from app.activities.prize_models import Prize, ThemeDraw, ThemeVisit
from app.extensions import db
from tests.activities.test_h5_game import make_bank
from tests.browser.conftest import MARK_SHOWN_DIALOGS, confirm, htmx_settled
from tests.browser.h5_steps import sign_in_through_yunshuhui, slice_under_the_pointer

DAILY_LIMIT = 10
NEW_COLOUR = "#e53935"  # the designer's first preset colour


def test_a_wheel_designed_in_the_console_is_spun_on_a_phone_and_counted(app, page, phone, login, make, shot,
                                                                         live_server, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server)  # where 云数汇 and the phone reach us
    page.add_init_script(MARK_SHOWN_DIALOGS)
    bank = make_bank(make, name="华东示范银行", site=live_server)
    make.operator(org=bank.org, roles=("org_admin",), username="journey_admin")
    theme = make.theme_activity(bank.org, name="国庆幸运大转盘", partner_bank_id=bank.partner.id,
                                participation_limit=DAILY_LIMIT, daily_limit=DAILY_LIMIT,
                                rules="1. 活动期间每位客户每天可抽奖 10 次。\n2. 积分奖品将在 1 个工作日内到账。")
    points = make.prize(theme, kind="points", name="88积分", points=88, stock=100, weight=100, sort_order=1,
                        colour="#ffd666")
    thanks = make.prize(theme, kind="thanks", name="谢谢参与", weight=1, sort_order=2, colour="#c8c8c8")
    coupon = make.coupon_activity(theme=theme, name="满100减20券", promo_amount_fen=2000, issue_total=300)
    assert theme.wheel_enabled is False

    # The operator, in the Chinese console, opens the designer from the activity list.
    login("journey_admin")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.goto("/activities")
    page.get_by_test_id(f"wheel-{theme.theme_no}").click()
    preview = page.get_by_test_id("wheel-preview")
    expect(preview).to_have_attribute("data-segments", "2")
    expect(page.get_by_test_id(f"chance-prize-{points.id}")).to_have_text("99.01 %")  # 100 of 101
    shot("designer")

    # A preset colour for the points prize: the preview is redrawn with it.
    page.get_by_test_id(f"swatch-prize-{points.id}").click()
    page.get_by_test_id(f"preset-prize-{points.id}-1").click()
    expect(page.get_by_test_id(f"colour-prize-{points.id}")).to_have_value(NEW_COLOUR)
    expect(preview.locator(f'g[data-prize-id="{points.id}"] path')).to_have_attribute("fill", NEW_COLOUR)

    # The linked coupon activity as a row ("Add a row"), weighing 1.
    page.get_by_test_id(f"add-coupon-{coupon.id}").click()
    expect(page.get_by_test_id(f"row-coupon-{coupon.id}")).to_be_visible()
    expect(preview).to_have_attribute("data-segments", "3")
    htmx_settled(page)
    page.get_by_test_id(f"weight-coupon-{coupon.id}").fill("1")
    expect(page.get_by_test_id(f"chance-coupon-{coupon.id}")).to_have_text("0.98 %")  # 1 of 102
    expect(page.get_by_test_id(f"chance-prize-{points.id}")).to_have_text("98.04 %")
    shot("designed")

    # On, and saved after the confirmation.
    htmx_settled(page)
    page.get_by_test_id("wheel-on").check()
    expect(page.get_by_test_id("segment-count")).to_contain_text("3")
    page.get_by_test_id("save").click()
    confirm(page)
    expect(page.get_by_test_id("toasts").locator(".toast")).to_have_count(1)
    shot("saved")
    db.session.expire_all()
    assert db.session.get(ThemeActivity, theme.id).wheel_enabled is True
    assert db.session.get(Prize, points.id).colour == NEW_COLOUR
    coupon_prize = db.session.execute(select(Prize).where(Prize.coupon_activity_id == coupon.id)).scalar_one()
    assert (coupon_prize.kind, coupon_prize.weight, coupon_prize.stock_remaining) == ("coupon", 1, 300)
    names = {points.id: "88积分", thanks.id: "谢谢参与", coupon_prize.id: "满100减20券"}

    # The H5 link, as the "QR code and link" tab shows it.
    page.goto(f"/activities/{theme.id}")
    page.get_by_test_id("tab-entry").click()
    expect(page.get_by_test_id("pane-entry")).to_be_visible()
    link = page.get_by_test_id("entry-url").input_value()
    assert link == live_server + entry_path(theme)
    expect(page.get_by_test_id("qr")).to_have_js_property("complete", True)
    assert page.get_by_test_id("qr").evaluate("img => img.naturalWidth") > 0  # the code's PNG came
    expect(page.get_by_test_id("pane-entry")).to_have_css("opacity", "1")  # faded in
    shot("link")

    # The customer opens it on a phone and is identified through 云数汇's sandbox: the wheel as designed.
    sign_in_through_yunshuhui(phone, link, "李小红")
    expect(phone.get_by_test_id("theme-name")).to_have_text("国庆幸运大转盘")
    wheel = phone.locator("#wheel-box svg")
    expect(wheel).to_have_attribute("data-segments", "3")
    expect(wheel.locator(f'g[data-prize-id="{points.id}"] path')).to_have_attribute("fill", NEW_COLOUR)
    expect(phone.get_by_test_id("left-today")).to_have_text(str(DAILY_LIMIT))
    expect(phone.get_by_test_id("spin")).to_be_enabled()
    phone.shot("game")

    # Spins until the wheel gives a prize: each result read from the answer, the wheel and the dialog.
    spins, won = 0, None
    while won is None:
        assert spins < DAILY_LIMIT, "ten spins, ten times the fallback"
        spin = phone.get_by_test_id("spin")
        spin.evaluate("button => button.scrollIntoView({block: 'center'})")
        with phone.expect_response(re.compile(r"/draws$")) as answered:
            spin.tap(force=True)  # the button breathes (scales): never "stable" to Playwright
        assert answered.value.status == 201
        answer = answered.value.json()
        spins += 1
        expect(phone.get_by_test_id("spin")).to_be_disabled()  # while the wheel turns
        result = phone.get_by_test_id("result")
        expect(result).to_be_visible(timeout=10_000)  # once the wheel rests (~4 s)
        prize_id = answer["prize"]["id"]
        assert slice_under_the_pointer(phone) == str(prize_id)
        phone.wait_for_timeout(400)  # the dialog's pop-in, for the screenshot
        if answer["won"]:
            won = prize_id
            expect(result).to_have_class(re.compile(r"\bis-won\b"))
            expect(phone.get_by_test_id("result-prize")).to_contain_text(names[prize_id])
            phone.shot("won", full_page=False)
        else:
            assert prize_id == thanks.id
            expect(result).to_have_class(re.compile(r"\bis-thanks\b"))
            expect(phone.get_by_test_id("result-prize")).to_be_hidden()
            phone.shot(f"thanks-{spins}", full_page=False)
        phone.get_by_test_id("result-ok").tap()
        expect(result).to_be_hidden()
    expect(phone.get_by_test_id(f"prize-{answer['drawNo']}")).to_be_visible()  # under "My prizes"
    expect(phone.get_by_test_id("left-today")).to_have_text(str(DAILY_LIMIT - spins))
    phone.shot("my-prizes")

    # What the database holds is what the customer saw: one visit, these spins, one win.
    db.session.expire_all()
    draws = db.session.execute(select(ThemeDraw).where(ThemeDraw.theme_activity_id == theme.id)).scalars().all()
    assert len(draws) == spins and [d.prize_id for d in draws if d.won] == [won]
    views = db.session.execute(select(func.sum(ThemeVisit.views))
                               .where(ThemeVisit.theme_activity_id == theme.id)).scalar_one()
    assert views == 1  # the page after the hand-off; the hand-off's redirect is no view

    # The operator's statistics count exactly that.
    page.goto(f"/activities/{theme.id}")
    page.get_by_test_id("statistics").click()
    expect(page).to_have_url(re.compile(rf"/activities/{theme.id}/statistics$"))
    expected = {"views": 1, "visitors": 1, "participants": 1, "draws": spins, "winners": 1, "wins": 1}
    for figure, value in expected.items():
        expect(page.get_by_test_id(f"kpi-{figure}")).to_have_text(str(value))
    expect(page.get_by_test_id("no-visits")).to_have_count(0)
    awarded = {points.id: 0, coupon_prize.id: 0, thanks.id: spins - 1, won: 1}
    for prize_id, count in awarded.items():
        expect(page.locator(f'[data-testid=prize-row][data-prize-id="{prize_id}"] [data-testid=awarded]')).to_have_text(
            str(count))
    stock_left = {points.id: 100, coupon_prize.id: 300}
    stock_left[won] -= 1
    for prize_id, left in stock_left.items():
        expect(page.locator(f'[data-testid=prize-row][data-prize-id="{prize_id}"] [data-testid=stock-left]')).to_have_text(
            str(left))
    for chart in ("chart-funnel", "chart-trend", "chart-prizes"):
        expect(page.locator(f"[data-testid={chart}] canvas")).to_have_count(1)
    shot("statistics")
