"""Gift shipping in Chromium: a gift won on the wheel and its address left by the winner; the operator
opens the theme activity, goes to the gift shipping screen, sees the contact masked and shows it in
full, types a wrong tracking number (told why beside the field), ships with a right one after the
confirmation, and finds the gift in the "shipped" tab; the draw records show it as shipped.

Uses the browser fixtures of tests/browser/conftest.py; draws are made by the real engine and the
address left through `fulfilment.leave_address` (tests/activities/draw_records.py).
"""
from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from app.activities.prize_models import PrizeDelivery, ThemeDraw
from app.extensions import db
from tests.activities.draw_records import THANKS, gift_wheel, gift_with_address, spin
from tests.browser.conftest import MARK_SHOWN_DIALOGS, confirm


def test_an_operator_ships_a_gift_with_its_tracking_number(page, login, make, shot):
    page.add_init_script(MARK_SHOWN_DIALOGS)
    bank = make.org(kind="bank", name="华东示范银行")
    make.operator(org=bank, roles=("operator",), username="gift_shipper")
    wheel = gift_wheel(make, bank, name="中秋大转盘")
    won = gift_with_address(wheel.theme, "oWinner000001", recipient="张三", phone="13800138000",
                            address="上海市浦东新区世纪大道1号")
    spin(wheel.theme, "oOther0000002", THANKS)

    login("gift_shipper")
    page.goto(f"/activities/{wheel.theme.id}")
    page.get_by_test_id("gift-shipping").click()
    page.wait_for_url(f"**/activities/{wheel.theme.id}/deliveries")
    row = page.get_by_test_id(f"gift-{won.draw_no}")
    expect(row.get_by_test_id("phone")).to_have_text("138****8000")
    expect(page.get_by_test_id("count-to_ship")).to_have_text("1")
    shot("to-ship")

    row.get_by_test_id(f"reveal-{won.draw_no}").click()
    expect(row.get_by_test_id("phone")).to_have_text("13800138000")
    expect(row.get_by_test_id("address")).to_have_text("上海市浦东新区世纪大道1号")

    row.get_by_test_id(f"tracking-{won.draw_no}").fill("SF 12")
    row.get_by_test_id(f"ship-{won.draw_no}").click()
    confirm(page)
    expect(row.get_by_test_id("ship-error")).to_be_visible()  # told why, beside the field
    expect(row.get_by_test_id(f"tracking-{won.draw_no}")).to_have_value("SF 12")
    shot("wrong-tracking-number")

    row.get_by_test_id(f"tracking-{won.draw_no}").fill("SF1234567890")
    row.get_by_test_id(f"ship-{won.draw_no}").click()
    confirm(page)
    expect(page.get_by_test_id("toasts")).to_contain_text("SF1234567890")
    expect(page.get_by_test_id("count-shipped")).to_have_text("1")
    expect(page.get_by_test_id("count-to_ship")).to_have_text("0")
    expect(page.get_by_test_id("empty")).to_be_visible()

    page.get_by_test_id("tab-shipped").click()
    expect(page.get_by_test_id(f"gift-{won.draw_no}").get_by_test_id("tracking-no")).to_have_text("SF1234567890")
    shot("shipped")
    db.session.expire_all()
    assert db.session.execute(select(ThemeDraw.fulfilment_status).where(ThemeDraw.id == won.draw_id)).scalar_one() == "shipped"
    assert db.session.execute(select(PrizeDelivery.tracking_no)).scalar_one() == "SF1234567890"

    page.get_by_test_id("link-draws").click()
    page.wait_for_url(f"**/activities/{wheel.theme.id}/draws")
    expect(page.get_by_test_id(f"draw-{won.draw_no}").get_by_test_id("fulfilment")).to_have_attribute("data-status", "shipped")
    shot("draw-records")
