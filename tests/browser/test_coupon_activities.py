"""The coupon activity screens in Chromium: the add form in its modal (theme type-ahead, fields that
appear with the choices made, validation while typing, confirmation before saving), the new row in
the list, and a confirmed batch disable.

Uses the browser fixtures of tests/browser/conftest.py (the machine's Chromium, the app on a live
server). Elements are found by data-testid, name or id, never by visible text.
"""
from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons.models import CouponActivity
from app.extensions import db


def _committed(**where) -> CouponActivity | None:
    db.session.expire_all()
    return db.session.execute(select(CouponActivity).filter_by(**where)).scalar_one_or_none()


def test_add_a_coupon_activity_and_disable_in_a_batch(page, login, make, shot):
    bank = make.org(kind="bank", name="华东测试银行")
    make.operator(bank, roles=("org_admin",), username="coupon_admin")
    theme = make.theme_activity(bank, theme_no="5000000321", name="春节主题活动")

    login("coupon_admin")
    page.goto("/coupons/activities")
    expect(page.get_by_test_id("tunnel-yunshuhui")).to_have_class(re.compile(r"\bactive\b"))
    expect(page.get_by_test_id("empty")).to_be_visible()

    page.get_by_test_id("new-coupon-activity").click()
    form = page.locator("#modal").get_by_test_id("coupon-activity-form")
    expect(form).to_be_visible()
    bank_field = form.locator(".field-org_id")
    expect(bank_field).to_be_visible()  # no theme yet: the bank is asked for

    # The theme type-ahead offers the bank's theme; once chosen, the bank comes from it.
    theme_input = form.get_by_test_id("theme-input")
    theme_input.press_sequentially("春节", delay=30)
    expect(form.locator("#theme-options option")).to_have_count(1)
    theme_input.fill(f"{theme.theme_no} · {theme.name}")
    theme_input.dispatch_event("input")
    expect(form.get_by_test_id("theme-info")).to_contain_text("华东测试银行")
    expect(bank_field).to_be_hidden()

    form.locator("input[name=name]").fill("春节满减券")
    # Validation while typing: a short batch no., then a threshold not above the face value.
    batch = form.locator("input[name=batch_no]")
    batch.press_sequentially("12345", delay=20)
    expect(form.locator(".field-batch_no .invalid-feedback")).not_to_be_empty()
    batch.press_sequentially("6789", delay=20)
    expect(form.locator(".field-batch_no .invalid-feedback")).to_be_empty()
    form.locator("input[name=promo_amount]").fill("10")
    threshold = form.locator("input[name=threshold]")
    threshold.press_sequentially("5", delay=20)
    expect(form.locator(".field-threshold .invalid-feedback")).not_to_be_empty()
    expect(threshold).to_have_class(re.compile(r"\bis-invalid\b"))
    threshold.press_sequentially("00", delay=20)  # 500 yuan
    expect(form.locator(".field-threshold .invalid-feedback")).to_be_empty()

    # Fields appear with the choices that need them.
    expect(form.locator(".field-discount_rate")).to_be_hidden()
    form.locator("select[name=coupon_type]").select_option("discount")
    expect(form.locator(".field-discount_rate")).to_be_visible()
    form.locator("input[name=discount_rate]").fill("8.5")
    expect(form.locator(".field-settle_type")).to_be_hidden()
    form.locator("input[name=settled]").check()
    expect(form.locator(".field-settle_type")).to_be_visible()
    form.locator("select[name=settle_type]").select_option("proportional")
    form.locator("input[name=settle_rate]").fill("40")

    form.locator("input[name=upstream_activity_id]").fill("1234567890")
    form.locator("input[name=owner_id]").fill("12345678")
    form.locator("input[name=promotion_id]").fill("PROMO2026")
    # The window must lie within the theme activity's (which ends in 30 days).
    end = form.locator("input[name=end_at]")
    end.fill((utcnow() + timedelta(days=20)).astimezone(BUSINESS_TZ).strftime("%Y-%m-%dT%H:%M:%S"))
    form.locator("input[name=issue_total]").fill("500")
    form.locator("textarea[name=description]").fill("每位客户限领一张")
    expect(form.locator('[data-count-for="description"]')).to_have_text("8")
    dialog = page.locator("#modal .modal-dialog")
    form.locator(".modal-body").evaluate("body => body.scrollTop = 0")
    dialog.screenshot(path=str(shot("form").with_name("coupon-activity-form-top.png")))
    form.locator(".modal-body").evaluate("body => body.scrollTop = body.scrollHeight")
    dialog.screenshot(path=str(shot("form").with_name("coupon-activity-form-bottom.png")))

    # Saving asks first; then the modal closes and the list shows the new row.
    form.get_by_test_id("submit").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator("#modal")).to_be_hidden()
    created = _committed(name="春节满减券")
    assert created is not None and created.code.startswith("WX5000000321_")
    assert (created.discount_bp, created.threshold_fen, created.settle_rate_bp) == (8500, 50000, 4000)
    expect(page.get_by_test_id(f"activity-row-{created.code}")).to_be_visible()

    # Tick two rows and disable them, after confirming.
    other = make.coupon_activity(org=bank, name="另一张券")
    page.goto("/coupons/activities")
    for activity in (created, other):
        page.locator(f"input[name=ids][value='{activity.id}']").check()
    shot("list")
    page.get_by_test_id("batch-disable").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("disabled-badge")).to_have_count(2)
    expect(page.locator(".modal-backdrop")).to_have_count(0)
    # The wide table scrolls inside its card; the page itself never scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert _committed(id=created.id).enabled is False and _committed(id=other.id).enabled is False
    shot("disabled")

    # Its page: the details, with the history of the change just made; the edit form locks the code.
    page.get_by_test_id(f"view-{created.code}").click()
    expect(page.get_by_test_id("details")).to_be_visible()
    expect(page.get_by_test_id("history").locator("tbody tr")).to_have_count(2)  # created, disabled
    shot("detail")
    if page.get_by_test_id("tab-issues").count():  # the reports' lazily loaded tab, where it is built
        page.get_by_test_id("tab-issues").click()
        expect(page.locator("#tab-issues [data-testid=activity-issues]")).to_be_visible()
    page.get_by_test_id("edit").click()
    expect(page.locator("#modal").get_by_test_id("locked-code")).to_have_text(created.code)
    page.locator("#modal .modal-dialog").screenshot(path=str(shot("edit").with_name("coupon-activity-edit.png")))
