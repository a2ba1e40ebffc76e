"""The master data screens and the type-ahead picker in Chromium: add an institution in the modal
(the code checked while typing), disable it after confirming, and pick an institution by typing.

Uses the browser fixtures of tests/browser/conftest.py. Elements are found by data-testid, name or
role, never by visible text.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.coupons import masterdata
from app.coupons.masterdata import PartyDetails
from app.coupons.models import Institution
from app.extensions import db


def _institution(code: str):
    db.session.expire_all()
    return db.session.execute(select(Institution).filter_by(code=code)).scalar_one_or_none()


def test_institution_screen(page, login, make, shot):
    make.operator(make.platform(), roles=("platform_admin",), username="md_admin")
    masterdata.create_party(Institution, PartyDetails("10000001", "华东城市商业银行联合会", "commercial",
                                                      "王经理", "021-68881234"))
    login("md_admin")
    page.goto("/masterdata/institutions")
    expect(page.locator("[data-testid^=party-row-]")).to_have_count(1)

    page.get_by_test_id("new-party").click()
    form = page.locator("#modal").get_by_test_id("modal-form")
    form.locator("input[name=name]").fill("西南农商联盟")
    form.locator("select[name=kind]").select_option("local")
    form.locator("input[name=contact_phone]").fill("13812345678")
    code = form.locator("input[name=code]")
    code.press_sequentially("10000001", delay=20)
    expect(form.locator(".field-code .invalid-feedback")).not_to_be_empty()  # taken, said while typing
    expect(code).to_have_class(re.compile(r"\bis-invalid\b"))
    shot("code-taken")
    with page.expect_response(lambda r: r.url.endswith("/masterdata/institutions/new")
                              and r.request.method == "POST") as answer:
        form.get_by_test_id("submit").click()
    assert answer.value.status == 409
    # The form comes back with what was typed (value attributes) and the code's error, in the modal.
    expect(page.locator("#modal input[name=code]")).to_have_attribute("value", "10000001")
    expect(page.locator("#modal .field-code .invalid-feedback")).not_to_be_empty()
    code = page.locator("#modal input[name=code]")
    code.fill("")
    code.press_sequentially("10000002", delay=20)
    expect(page.locator("#modal .field-code .invalid-feedback")).to_be_empty()
    page.locator("#modal").get_by_test_id("submit").click()
    expect(page.locator("#modal")).to_be_hidden()
    expect(page.get_by_test_id("party-row-10000002")).to_be_visible()  # the list refreshed itself
    assert _institution("10000002").kind == "local"
    shot("added")

    page.get_by_test_id("disable-10000002").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("enable-10000002")).to_be_visible()
    assert _institution("10000002").status == "disabled"
    shot("disabled")


def test_institution_picker(page, login, make, shot, app):
    for n, name in enumerate(("华东城市商业银行联合会", "华东农村信用社", "西南农商联盟"), 1):
        masterdata.create_party(Institution, PartyDetails(f"1000000{n}", name, "commercial"))
    make.operator(make.org(kind="bank"), roles=("operator",), username="picker_user")
    login("picker_user")
    page.goto("/dashboard")
    with app.test_request_context():
        html = app.jinja_env.from_string(
            '<form id="picker-form" class="card p-3 mt-3" style="max-width:520px">'
            '{% from "macros/pickers.html" import picker %}'
            '{{ picker("institution", "institution_id", label="报名机构", required=True) }}</form>').render()
    # Put the macro's HTML on a real console page, as a form of another screen would.
    page.evaluate("html => { const main = document.querySelector('main'); main.insertAdjacentHTML('beforeend', html);"
                  " htmx.process(document.getElementById('picker-form')); }", html)
    search = page.get_by_test_id("institution_id-picker")
    search.press_sequentially("华东", delay=30)
    expect(page.locator("[role=option]")).to_have_count(2)
    shot("options")
    page.get_by_test_id("pick-10000002").click()
    value = page.get_by_test_id("institution_id-picker-value")
    expect(value).to_have_value(str(_institution("10000002").id))
    expect(page.get_by_test_id("institution_id-picker")).to_have_value("华东农村信用社")
    expect(page.get_by_test_id("institution_id-picker-code")).to_have_text("10000002")
    expect(page.locator("[role=option]")).to_have_count(0)
    shot("picked")
    # Typing again voids the choice until another one is picked.
    page.get_by_test_id("institution_id-picker").press_sequentially("西", delay=30)
    expect(page.locator("[role=option]")).to_have_count(0)  # "华东农村信用社西" matches nothing
    expect(value).to_have_value("")
    page.get_by_test_id("institution_id-picker").fill("")
    page.get_by_test_id("institution_id-picker").press_sequentially("西南", delay=30)
    page.get_by_test_id("pick-10000003").click()
    expect(value).to_have_value(str(_institution("10000003").id))
