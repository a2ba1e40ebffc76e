"""The theme activity screens in Chromium: the add form in its modal (pickers, the background shown
as soon as it is chosen, validation while typing, confirmation before saving), the new row in the
list, a selection kept across pages and paused in one batch, and the page's lazy tabs.

Uses the browser fixtures of tests/browser/conftest.py (the machine's Chromium, the app on a live
server). Elements are found by data-testid, name or id, never by visible text.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.activities.models import ThemeActivity
from app.extensions import db
from tests.activities.conftest import PNG, english, uploads, world  # noqa: F401 (the activities' fixtures)
from tests.browser.conftest import MARK_SHOWN_DIALOGS, confirm


def _status_of(theme_no: str) -> str:
    db.session.expire_all()
    return db.session.execute(select(ThemeActivity.status).where(ThemeActivity.theme_no == theme_no)).scalar_one()


def test_add_a_theme_activity_then_pause_a_selection_across_pages(page, login, make, world, shot, tmp_path):
    page.add_init_script(MARK_SHOWN_DIALOGS)
    themes = [make.theme_activity(world.bank, name=f"已有活动{n:02d}", partner_bank_id=world.partner.id,
                                  institution_id=world.institution.id, position_no=f"{n:023d}" if n % 2 else None,
                                  created_by=world.admin.id, updated_by=world.admin.id) for n in range(12)]
    login("bank_admin")
    page.goto("/activities?per_page=10")
    expect(page.get_by_test_id("total")).to_contain_text("12")
    shot("list")

    page.get_by_test_id("new-theme").click()
    form = page.locator("#modal").get_by_test_id("theme-form")
    expect(form).to_be_visible()
    expect(form.get_by_test_id("bank-value")).to_have_value(str(world.partner.id))  # a bank operator's own bank

    name = form.locator("input[name=name]")
    name.press_sequentially("ab", delay=20)
    name.press("Control+A")
    name.press("Backspace")
    expect(form.locator(".field-name .invalid-feedback")).not_to_be_empty()  # validation while typing
    name.fill("春节红包雨")
    name.press("End")
    expect(form.locator(".field-name .invalid-feedback")).to_be_empty()

    form.locator("#institution").press_sequentially("华东", delay=30)
    form.get_by_test_id("pick-10000001").click()
    expect(form.get_by_test_id("institution-value")).to_have_value(str(world.institution.id))
    form.locator("#position").press_sequentially("1111", delay=30)
    form.get_by_test_id(f"pick-{world.position.number}").click()
    expect(form.get_by_test_id("position-value")).to_have_value(world.position.number)
    shot("add-form-top")

    image = tmp_path / "background.png"
    image.write_bytes(PNG)
    form.get_by_test_id("background-input").set_input_files(str(image))
    expect(form.get_by_test_id("background-preview")).to_be_visible()  # uploaded and shown at once
    expect(form.get_by_test_id("background-ref")).to_have_value(re.compile(r"^pending/[0-9a-f]{32}\.png$"))

    form.locator("textarea[name=rules]").fill("1. 每人每天可抽奖一次\n2. 奖品以实际到账为准")
    form.locator("input[name=participation_limit]").fill("10")
    form.locator("input[name=daily_limit]").fill("1")
    shot("add-form")
    form.get_by_test_id("submit").click()
    confirm(page)
    expect(page.locator("#modal")).to_be_hidden()
    expect(page.get_by_test_id("toasts")).to_contain_text("春节红包雨")
    new = db.session.execute(select(ThemeActivity).where(ThemeActivity.name == "春节红包雨")).scalar_one()
    expect(page.get_by_test_id(f"theme-row-{new.theme_no}")).to_be_visible()  # the list refreshed itself

    # Tick one row on page 1 and one on page 2; the selection survives paging and one batch pauses both.
    first_page_row = page.get_by_test_id(f"theme-row-{new.theme_no}")
    first_page_row.locator("input[name=ids]").check()
    expect(page.get_by_test_id("selection")).to_be_visible()
    page.locator(".pagination .page-link", has_text="2").first.click()
    expect(page).to_have_url(re.compile(r"page=2"))
    second = page.locator("tr[data-testid^=theme-row-]").first
    second_no = second.get_attribute("data-testid").removeprefix("theme-row-")
    second.locator("input[name=ids]").check()
    expect(page.get_by_test_id("selection")).to_contain_text("2")
    shot("selection")
    page.get_by_test_id("batch-pause").click()
    confirm(page)
    expect(page.get_by_test_id("toasts")).to_contain_text("2")
    expect(page.get_by_test_id(f"enable-{second_no}")).to_be_visible()  # the rows refreshed: now "enable"
    assert _status_of(new.theme_no) == "paused" and _status_of(second_no) == "paused"
    assert sum(_status_of(t.theme_no) == "paused" for t in themes) == 1
    expect(page.get_by_test_id("selection")).to_be_hidden()  # cleared after the batch

    # The page and its lazy tabs.
    page.goto(f"/activities/{new.id}")
    expect(page.get_by_test_id("rules")).to_contain_text("每人每天可抽奖一次")
    shot("details-tab")
    page.get_by_test_id("tab-institutions").click()
    expect(page.get_by_test_id("link-10000001")).to_be_visible()
    expect(page.get_by_test_id("locked-10000001")).to_be_visible()  # its own institution: has linked data
    page.locator("#add-institution").press_sequentially("华南", delay=30)
    page.get_by_test_id("pick-10000002").click()
    expect(page.get_by_test_id("add-institution-value")).to_have_value(str(world.other_institution.id))
    page.get_by_test_id("add-institutions-submit").click()
    expect(page.get_by_test_id("link-10000002")).to_be_visible()
    shot("institutions-tab")
    page.get_by_test_id("delete-10000002").click()
    confirm(page)
    expect(page.get_by_test_id("link-10000002")).to_have_count(0)
    page.get_by_test_id("tab-entry").click()
    expect(page.get_by_test_id("entry-url")).to_have_value(re.compile(rf"/h5/activities/{new.theme_no}$"))
    expect(page.get_by_test_id("qr")).to_be_visible()
    expect(page.get_by_test_id("pane-entry")).to_have_class(re.compile(r"\bshow\b"))
    page.wait_for_timeout(300)  # the tab's fade-in, for the screenshot
    shot("entry-tab")
