"""The member and product screens in Chromium: active search, the modal forms with inline phone
validation, the kind switch that swaps the attribute fields, and a confirmed status change.

Uses the browser fixtures of tests/browser/conftest.py (the machine's Chromium, the app on a live server).
Elements are found by data-testid, name or role, never by visible text.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.members.models import Member, Product


def _committed(model, **where):
    db.session.expire_all()
    return db.session.execute(select(model).filter_by(**where)).scalar_one_or_none()


def test_member_screens(page, login, make, shot):
    bank = make.org(name="华东测试银行")
    make.operator(bank, roles=("org_admin",), username="bank_admin")
    make.member(bank, name="张三", phone="13812348000", region="上海")
    make.member(bank, name="李四", phone="13912349000", region="杭州")

    login("bank_admin")
    page.goto("/members")
    expect(page.locator("[data-testid^=member-row-]")).to_have_count(2)
    shot("members")

    # Active search: typing narrows the rows without a page load, and the query lands in the URL.
    page.get_by_test_id("member-search").press_sequentially("张", delay=30)
    expect(page.locator("[data-testid^=member-row-]")).to_have_count(1)
    page.wait_for_url(re.compile(r"q=%E5%BC%A0"))
    page.get_by_test_id("member-search").fill("")
    page.get_by_test_id("member-search").press_sequentially("13912349000", delay=10)
    expect(page.locator("[data-testid^=member-row-]")).to_have_count(1)
    expect(page.get_by_test_id("phone")).to_have_text("13912349000")  # org_admin may see phones

    # New member in the modal, with the phone checked beside the field while typing.
    page.get_by_test_id("new-member").click()
    form = page.locator("#modal").get_by_test_id("modal-form")
    expect(form).to_be_visible()
    form.locator("input[name=name]").fill("王五")
    phone = form.locator("input[name=phone]")
    phone.press_sequentially("13812348000", delay=20)
    phone_error = form.locator(".field-phone .invalid-feedback")
    expect(phone_error).not_to_be_empty()
    expect(phone).to_have_class(re.compile(r"\bis-invalid\b"))
    shot("phone-taken")
    phone.fill("")
    phone.press_sequentially("13700001111", delay=20)
    expect(phone_error).to_be_empty()
    form.locator("select[name=level]").select_option("gold")
    form.get_by_test_id("submit").click()
    expect(page.locator("#modal")).to_be_hidden()
    expect(page.locator("#toasts .toast.show")).to_have_count(1)
    created = _committed(Member, name="王五")
    assert created is not None and created.phone == "13700001111" and created.level == "gold"

    # The list refreshes itself (with the current search) after the change.
    page.get_by_test_id("member-search").fill("王")
    expect(page.get_by_test_id(f"member-row-{created.member_no}")).to_be_visible()
    shot("member-created")

    # Disabling asks first, then changes the status.
    page.get_by_test_id(f"disable-{created.member_no}").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id(f"enable-{created.member_no}")).to_be_visible()
    assert _committed(Member, name="王五").status == "disabled"

    page.goto(f"/members/{created.id}")
    expect(page.get_by_test_id("member-history")).to_contain_text("member.disable")
    shot("member-detail")


def test_product_kind_switch(page, login, make, shot):
    bank = make.org(name="华东测试银行")
    make.operator(bank, roles=("org_admin",), username="product_admin")
    login("product_admin")
    page.goto("/products")
    page.get_by_test_id("new-product").click()
    form = page.locator("#modal").get_by_test_id("modal-form")
    expect(form.locator("[name=attr-risk_level]")).to_be_visible()

    # Changing the kind swaps in that kind's attribute fields.
    form.get_by_test_id("product-kind").select_option("group_class")
    expect(form.locator("#kind-fields[data-kind=group_class]")).to_be_visible()
    expect(form.locator("[name=attr-risk_level]")).to_have_count(0)
    shot("group-class-fields")
    form.locator("input[name=name]").fill("动感单车")
    form.locator("input[name=price_fen]").fill("59")
    form.locator("[name=attr-course_name]").fill("动感单车")
    form.locator("[name=attr-capacity]").fill("0")
    form.locator("[name=attr-duration_minutes]").fill("45")
    form.get_by_test_id("submit").click()
    expect(form.locator(".field-attr-capacity .invalid-feedback")).not_to_be_empty()  # 422 kept in the modal
    expect(form.locator("[name=attr-course_name]")).to_have_value("动感单车")
    form = page.locator("#modal").get_by_test_id("modal-form")
    form.locator("[name=attr-capacity]").fill("20")
    form.get_by_test_id("submit").click()
    expect(page.locator("#modal")).to_be_hidden()
    product = _committed(Product, name="动感单车")
    assert product.kind == "group_class" and product.price_fen == 5900
    assert product.attributes == {"course_name": "动感单车", "capacity": 20, "duration_minutes": 45}
    expect(page.get_by_test_id(f"product-row-{product.code}")).to_be_visible()
    shot("product-created")
