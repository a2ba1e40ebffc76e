"""The H5 game page on a phone (375 × 812, touch, WeChat's user agent) in Chromium: the customer is
identified through the 云数汇 sandbox's OpenID page, spins, watches the wheel turn to the drawn slice,
sees the result, leaves a gift's delivery address, spins again through a dropped connection (the
same draw, not a second one) and meets today's limit.

Uses the browser fixtures of tests/browser/conftest.py (the machine's Chromium, the app on a live
server, the `phone` context) and the customer's steps of tests/browser/h5_steps.py. Elements are
found by data-testid, never by visible text.
"""
from __future__ import annotations

import json
import re
import time

from playwright.sync_api import expect
from sqlalchemy import func, select

from app.activities import draw as engine
from app.activities.prize_models import Prize, ThemeDraw
from app.core import outbox
from app.extensions import db
from tests.activities.test_h5_game import First, Last, make_bank, wheel_theme
from tests.browser.h5_steps import sign_in_through_yunshuhui, slice_under_the_pointer


def draw_count() -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(ThemeDraw)).scalar_one()


def test_a_customer_spins_the_wheel_on_a_phone(app, phone, live_server, make, monkeypatch):
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server)  # where 云数汇 and the browser reach us
    bank = make_bank(make, name="华东银行", site=live_server)
    theme = wheel_theme(make, bank, name="春节幸运大转盘", participation_limit=5, daily_limit=2,
                        rules="1. 活动期间每位客户每天可抽奖 2 次，共 5 次。\n2. 积分奖品将在 1 个工作日内到账。\n"
                              "3. 实物奖品请在“我的奖品”中填写收货地址，我们将在 7 日内寄出。")
    prizes = {p.kind: p for p in db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)).scalars()}
    prizes["gift"].sort_order, prizes["points"].sort_order = 1, 2  # the gift comes first: First() lands on it
    for extra in range(3):
        make.prize(theme, kind="cash", name=("5元现金", "话费券", "精美礼品")[extra], cash_fen=500, stock=5, weight=10,
                   sort_order=3 + extra, colour=("#fa8c16", "#fff1b8", "#ff4d4f")[extra])
    prizes["gift"].colour, prizes["points"].colour, prizes["thanks"].colour = "#f5222d", "#ffd666", "#fff7e6"
    db.session.commit()

    # Identified through the 云数汇 sandbox's OpenID page, back on the game without the openid in the URL.
    sign_in_through_yunshuhui(phone, f"/h5/activities/{theme.theme_no}", "王小明")
    expect(phone.get_by_test_id("theme-name")).to_have_text("春节幸运大转盘")
    expect(phone.get_by_test_id("spin")).to_be_enabled()
    expect(phone.get_by_test_id("left-today")).to_have_text("2")
    expect(phone.get_by_test_id("no-prizes")).to_be_visible()
    phone.shot("game")

    # The first spin: a double tap draws once; the wheel turns ~4 s and stops on the gift.
    monkeypatch.setattr(engine, "_system_random", First())
    started = time.monotonic()
    with phone.expect_response(re.compile(r"/draws$")) as answered:
        phone.evaluate("() => { const b = document.getElementById('spin'); b.click(); b.click(); }")
    assert answered.value.status == 201
    outbox.relay_due()  # the gift now waits for the address (the job worker, in production)
    expect(phone.get_by_test_id("spin")).to_be_disabled()  # while the wheel turns
    phone.wait_for_timeout(1500)
    phone.shot("spinning", full_page=False)
    expect(phone.get_by_test_id("result")).to_be_visible(timeout=8000)
    assert time.monotonic() - started > 3.5  # the modal waited for the wheel
    assert draw_count() == 1
    assert slice_under_the_pointer(phone) == str(prizes["gift"].id)
    expect(phone.get_by_test_id("result-prize")).to_contain_text("保温杯")
    phone.wait_for_timeout(400)  # the dialog's pop-in
    phone.shot("won-gift", full_page=False)

    # "Leave my address" opens the gift's form in "My prizes"; a wrong number is pointed out.
    phone.get_by_test_id("result-ok").tap()
    expect(phone.get_by_test_id("result")).to_be_hidden()
    draw_no = db.session.execute(select(ThemeDraw.draw_no)).scalar_one()
    mine = phone.get_by_test_id(f"prize-{draw_no}")
    expect(mine).to_have_attribute("data-state", "awaiting_address")
    form = mine.get_by_test_id("address-form")
    expect(form).to_be_visible()
    expect(phone.get_by_test_id("left-today")).to_have_text("1")
    form.locator("input[name=recipient]").fill("王小明")
    form.locator("input[name=phone]").fill("1380013")
    form.locator("textarea[name=address]").fill("上海市浦东新区世纪大道100号 环球金融中心 8 楼")
    form.get_by_test_id("address-submit").tap()
    expect(phone.get_by_test_id("error-phone")).to_be_visible()
    phone.get_by_test_id("error-phone").scroll_into_view_if_needed()
    phone.shot("address-error")
    phone.locator(f"[data-testid=prize-{draw_no}] input[name=phone]").fill("138 0013 8000")
    phone.locator(f"[data-testid=prize-{draw_no}] [data-testid=address-submit]").tap()
    expect(phone.get_by_test_id("notice")).to_be_visible()
    expect(phone.get_by_test_id(f"prize-{draw_no}")).to_have_attribute("data-state", "address_given")

    # The second spin through a dropped connection: the server draws, the answer is lost, the browser
    # retries with the same key and gets the same draw back.
    monkeypatch.setattr(engine, "_system_random", Last())
    keys: list[str] = []

    def drop_first_answer(route):
        keys.append(json.loads(route.request.post_data)["key"])
        if len(keys) == 1:
            route.fetch()  # the server draws…
            route.abort("connectionreset")  # …and the answer never arrives
        else:
            route.continue_()

    phone.route(re.compile(r"/draws$"), drop_first_answer)
    phone.get_by_test_id("spin").evaluate("button => button.scrollIntoView({block: 'center'})")
    phone.get_by_test_id("spin").tap(force=True)  # the button breathes (scales): never "stable" to Playwright
    expect(phone.get_by_test_id("result")).to_be_visible(timeout=12_000)
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) >= 16
    assert draw_count() == 2  # one draw for the two requests
    assert slice_under_the_pointer(phone) == str(prizes["thanks"].id)
    expect(phone.get_by_test_id("result-prize")).to_be_hidden()
    phone.wait_for_timeout(400)
    phone.shot("thanks", full_page=False)
    phone.get_by_test_id("result-ok").tap()

    # Today's draws are used up: the button says so and explains why.
    expect(phone.get_by_test_id("spin")).to_have_attribute("data-state", "DAILY_LIMIT_REACHED")
    expect(phone.get_by_test_id("spin")).to_be_disabled()
    expect(phone.get_by_test_id("spin-reason")).to_be_visible()
    expect(phone.get_by_test_id("left-today")).to_have_text("0")
    expect(phone.get_by_test_id("left-total")).to_have_text("3")
    phone.reload()
    expect(phone.get_by_test_id("spin")).to_be_disabled()
    expect(phone.get_by_test_id(f"prize-{draw_no}")).to_be_visible()
    phone.shot("limit-reached")
