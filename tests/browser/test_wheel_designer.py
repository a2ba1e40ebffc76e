"""The roulette designer in Chromium: from the theme list's row action to the designer; a preset
colour redraws the preview; a row of a linked coupon activity is added from the picker; a row dragged
by its handle renumbers the orders (and the preview follows); the wheel is switched on and saved after
the confirmation dialog.

Uses the browser fixtures of tests/browser/conftest.py (the machine's Chromium, the app on a live
server). Elements are found by data-testid, name or id, never by visible text.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.activities.models import ThemeActivity
from app.activities.prize_models import Prize
from app.extensions import db
from tests.browser.conftest import MARK_SHOWN_DIALOGS, confirm, htmx_settled


def drag(page, handle, onto) -> None:
    """Drag a row by its handle and drop it on the top edge of another row (SortableJS's mouse mode)."""
    start, target = handle.bounding_box(), onto.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    x = target["x"] + 20
    for step in range(1, 11):
        y = start["y"] + (target["y"] + 4 - start["y"]) * step / 10
        page.mouse.move(x, y)
        page.wait_for_timeout(30)
    page.mouse.up()


def slice_colour(page, prize_id: int) -> str:
    return page.get_by_test_id("wheel-preview").locator(f'g[data-prize-id="{prize_id}"] path').get_attribute("fill")


def test_design_a_wheel_reorder_it_and_turn_it_on(page, login, make, shot):
    page.add_init_script(MARK_SHOWN_DIALOGS)
    bank = make.org(kind="bank", name="华东示范银行")
    make.operator(org=bank, roles=("org_admin",), username="wheel_admin")
    theme = make.theme_activity(bank, name="春节幸运转盘")
    thanks = make.prize(theme, kind="thanks", name="谢谢参与", weight=40, sort_order=50, colour="#c8c8c8")
    cash = make.prize(theme, name="五元现金", kind="cash", cash_fen=500, weight=20, sort_order=1, stock=50)
    points = make.prize(theme, name="88积分", kind="points", points=88, weight=30, sort_order=2, stock=100,
                        colour="#43a047")
    coupon = make.coupon_activity(theme=theme, name="满100减20券", issue_total=300, per_member_limit=1)

    login("wheel_admin")
    page.goto("/activities")
    page.get_by_test_id(f"wheel-{theme.theme_no}").click()
    expect(page.get_by_test_id("wheel-preview")).to_have_attribute("data-segments", "3")
    expect(page.get_by_test_id(f"chance-prize-{thanks.id}")).to_have_text("44.44 %")
    shot("designer")

    # A preset colour: the preview is redrawn by the server.
    page.get_by_test_id(f"swatch-prize-{cash.id}").click()
    expect(page.get_by_test_id(f"presets-prize-{cash.id}")).to_be_visible()
    shot("presets")
    page.get_by_test_id(f"preset-prize-{cash.id}-12").click()  # #1e88e5
    expect(page.get_by_test_id(f"colour-prize-{cash.id}")).to_have_value("#1e88e5")
    expect(page.get_by_test_id("wheel-preview").locator(f'g[data-prize-id="{cash.id}"] path')).to_have_attribute(
        "fill", "#1e88e5")

    # A wrong hex is named under its field, and the field is marked.
    page.get_by_test_id(f"colour-prize-{points.id}").fill("#43a04")
    expect(page.locator(f"#err-prize-{points.id}-colour")).not_to_be_empty()
    expect(page.get_by_test_id(f"colour-prize-{points.id}")).to_have_class(re.compile(r"is-invalid"))
    expect(page.get_by_test_id("problems")).to_contain_text("#RRGGBB")
    page.get_by_test_id(f"colour-prize-{points.id}").fill("#8e24aa")
    expect(page.get_by_test_id("wheel-preview").locator(f'g[data-prize-id="{points.id}"] path')).to_have_attribute(
        "fill", "#8e24aa")
    expect(page.locator(f"#err-prize-{points.id}-colour")).to_be_empty()

    # A row of the linked coupon activity, from the picker.
    expect(page.get_by_test_id(f"choice-coupon-{coupon.id}")).to_contain_text(coupon.code)
    page.get_by_test_id(f"add-coupon-{coupon.id}").click()
    expect(page.get_by_test_id(f"row-coupon-{coupon.id}")).to_be_visible()
    expect(page.get_by_test_id("wheel-preview")).to_have_attribute("data-segments", "4")
    expect(page.get_by_test_id(f"order-coupon-{coupon.id}")).to_have_value("4")
    htmx_settled(page)
    page.get_by_test_id(f"weight-coupon-{coupon.id}").fill("25")
    expect(page.get_by_test_id(f"chance-coupon-{coupon.id}")).to_have_text("21.74 %")  # 25 of 115
    shot("coupon-row")

    # Drag the fallback (row 3) to the top: the orders read 1..4 again and the wheel follows.
    htmx_settled(page)
    drag(page, page.get_by_test_id(f"drag-prize-{thanks.id}"), page.get_by_test_id(f"row-prize-{cash.id}"))
    expect(page.get_by_test_id(f"order-prize-{thanks.id}")).to_have_value("1")
    expect(page.get_by_test_id(f"order-prize-{cash.id}")).to_have_value("2")
    expect(page.get_by_test_id(f"order-prize-{points.id}")).to_have_value("3")
    expect(page.get_by_test_id(f"order-coupon-{coupon.id}")).to_have_value("4")
    expect(page.get_by_test_id("wheel-preview").locator(".wheel-disc > g").first).to_have_attribute(
        "data-prize-id", str(thanks.id))
    shot("dragged")

    # On, then saved after the confirmation.
    htmx_settled(page)
    page.get_by_test_id("wheel-on").check()
    expect(page.get_by_test_id("segment-count")).to_contain_text("4")
    page.get_by_test_id("save").click()
    confirm(page)
    expect(page.get_by_test_id("toasts").locator(".toast")).to_have_count(1)
    expect(page.get_by_test_id(f"choice-coupon-{coupon.id}")).to_have_count(0)  # on the wheel now
    shot("saved")

    db.session.expire_all()
    assert db.session.get(ThemeActivity, theme.id).wheel_enabled is True
    stored = {p.name: p for p in db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)).scalars()}
    assert [stored[n].sort_order for n in ("谢谢参与", "五元现金", "88积分", "满100减20券")] == [1, 2, 3, 4]
    assert (stored["五元现金"].colour, stored["88积分"].colour) == ("#1e88e5", "#8e24aa")
    assert (stored["满100减20券"].kind, stored["满100减20券"].stock_total, stored["满100减20券"].weight) == ("coupon", 300, 25)
