"""The console as a person uses it, in Chromium: log in, navigate, manage operators, log out.

Elements are found by data-testid, name or role, never by visible text: the console speaks
Chinese by default and English on request, and the labels change with the catalogue.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.auth.models import Operator
from app.extensions import db

NEW_PASSWORD = "Welcome2026pass"


def _operator(username: str) -> Operator | None:
    """The operator as committed by the server (not a stale copy from this thread's session)."""
    db.session.expire_all()
    return db.session.execute(select(Operator).where(Operator.username == username)).scalar_one_or_none()


def _zh(app, message: str, **values) -> str:
    """A message as the console shows it in its default language."""
    from flask_babel import force_locale, gettext

    with app.test_request_context(), force_locale("zh_CN"):
        return gettext(message, **values)


def _toast(page, text: str):
    return page.locator("#toasts .toast.show", has_text=text)


def test_operator_lifecycle(app, page, login, make, shot):
    platform = make.platform()
    bank = make.org(kind="bank", name="华东测试银行", code="BANK-T")
    make.operator(org=platform, roles=("platform_admin",), username="boss")
    make.operator(org=bank, roles=("viewer",), username="taken_name")

    # Log in and see the dashboard.
    login("boss")
    expect(page.get_by_test_id("kpi-members")).to_be_visible()
    expect(page.get_by_test_id("user-menu")).to_be_visible()
    shot("dashboard")

    # The left menu navigates by hx-boost: the document survives, only the body is swapped.
    page.evaluate("window.__sameDocument = true")
    page.locator("aside.sidebar a[href='/operators']").click()
    page.wait_for_url("**/operators")
    expect(page.get_by_test_id("new-operator")).to_be_visible()
    expect(page.get_by_test_id("operator-row-boss")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true"), "the menu link reloaded the page instead of boosting"
    expect(page.locator("aside.sidebar a.nav-link.active[href='/operators']")).to_have_count(1)
    shot("operators")

    # "New operator" opens the form in the modal.
    page.get_by_test_id("new-operator").click()
    modal = page.locator("#modal")
    expect(modal).to_be_visible()
    form = modal.get_by_test_id("modal-form")
    username = form.locator("input[name=username]")
    expect(username).to_be_focused()

    # A taken username is reported beside the field while typing, before submitting.
    username.press_sequentially("taken_name", delay=20)
    username_error = form.locator(".field-username .invalid-feedback")
    expect(username_error).not_to_be_empty()
    expect(username_error).to_be_visible()
    expect(username).to_have_class(re.compile(r"\bis-invalid\b"))
    shot("username-taken")

    username.fill("")
    username.press_sequentially("alice_ops", delay=20)
    expect(username_error).to_be_empty()
    expect(username).not_to_have_class(re.compile(r"\bis-invalid\b"))

    form.locator("input[name=display_name]").fill("爱丽丝")
    form.locator("select[name=org_id]").select_option(str(bank.id))
    form.locator("input[name=roles][value=operator]").check()
    form.locator("input[name=password]").fill(NEW_PASSWORD)
    shot("new-operator-filled")
    form.get_by_test_id("submit").click()

    # Saved: the modal closes, a toast says so, and the list refreshes with the new row.
    expect(_toast(page, _zh(app, "Operator %(name)s created.", name="alice_ops"))).to_be_visible()
    expect(modal).to_be_hidden()
    row = page.get_by_test_id("operator-row-alice_ops")
    expect(row).to_be_visible()
    expect(row).to_contain_text("爱丽丝")
    expect(row).to_contain_text("华东测试银行")
    shot("operator-created")
    created = _operator("alice_ops")
    assert created is not None
    assert (created.display_name, created.org_id, created.roles, created.status) == ("爱丽丝", bank.id, ["operator"], "active")
    assert created.check_password(NEW_PASSWORD)

    # Edit: the form comes back filled in; the change shows in the row.
    page.get_by_test_id("edit-alice_ops").click()
    expect(modal).to_be_visible()
    form = modal.get_by_test_id("modal-form")
    expect(form.locator("input[name=username]")).to_have_value("alice_ops")
    expect(form.locator("input[name=roles][value=operator]")).to_be_checked()
    form.locator("input[name=display_name]").fill("爱丽丝·改")
    form.get_by_test_id("submit").click()
    expect(modal).to_be_hidden()
    expect(_toast(page, _zh(app, "Operator %(name)s saved.", name="alice_ops"))).to_be_visible()
    expect(page.get_by_test_id("operator-row-alice_ops")).to_contain_text("爱丽丝·改")
    shot("operator-edited")
    assert _operator("alice_ops").display_name == "爱丽丝·改"

    # Disable, through the confirmation dialog that says what will happen.
    page.get_by_test_id("disable-alice_ops").click()
    confirm = page.locator("#confirm-modal")
    expect(confirm).to_be_visible()
    expect(confirm.locator("[data-message]")).to_contain_text("alice_ops")
    expect(confirm).to_have_css("opacity", "1")  # the fade has ended
    shot("confirm-disable")
    assert _operator("alice_ops").status == "active", "nothing may change before the confirmation"
    confirm.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("enable-alice_ops")).to_be_visible()
    expect(page.get_by_test_id("disable-alice_ops")).to_have_count(0)
    expect(page.get_by_test_id("operator-row-alice_ops").locator(".badge.text-bg-danger")).to_be_visible()
    expect(_toast(page, _zh(app, "Operator %(name)s is now %(status)s.", name="alice_ops",
                            status=_zh(app, "disabled")))).to_be_visible()
    shot("operator-disabled")
    assert _operator("alice_ops").status == "disabled"

    # Log out from the user menu.
    page.get_by_test_id("user-menu").click()
    page.get_by_test_id("logout").click()
    page.wait_for_url("**/login")
    expect(page.get_by_test_id("login-submit")).to_be_visible()
    expect(_toast(page, _zh(app, "You have logged out."))).to_have_css("opacity", "1")
    shot("logged-out")
    page.goto("/operators")
    page.wait_for_url(re.compile(r"/login\?next="))


def test_disabled_operator_cannot_log_in(page, make):
    bank = make.org(kind="bank")
    make.operator(org=bank, username="gone", status="disabled")
    page.goto("/login")
    page.locator("input[name=username]").fill("gone")
    page.locator("input[name=password]").fill("secret-pass-123")
    page.get_by_test_id("login-submit").click()
    expect(page.locator(".field-password .invalid-feedback")).not_to_be_empty()
    assert page.url.endswith("/login")


def test_missing_page_shows_the_404_screen(page, login, make, shot):
    response = page.goto("/no-such-page")
    assert response.status == 404
    expect(page.get_by_test_id("error-404")).to_be_visible()
    shot("404-anonymous")

    make.operator(org=make.platform(), roles=("platform_admin",), username="boss")
    login("boss")
    response = page.goto("/operators/999999/edit")
    assert response.status == 404
    expect(page.get_by_test_id("error-404")).to_be_visible()
    expect(page.locator("aside.sidebar")).to_be_visible()  # inside the console frame when logged in
    shot("404-console")


def test_language_switch_to_english(app, page, login, make, shot):
    from flask_babel import force_locale, gettext

    with app.test_request_context():
        with force_locale("zh_CN"):
            zh_label = gettext("Operators")
        with force_locale("en"):
            en_label = gettext("Operators")
    assert en_label == "Operators"

    make.operator(org=make.platform(), roles=("platform_admin",), username="boss")
    login("boss")
    menu_link = page.locator("aside.sidebar a[href='/operators']")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(menu_link).to_have_text(zh_label)
    shot("chinese")

    page.get_by_test_id("language-en").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(menu_link).to_have_text(en_label)
    expect(page.get_by_test_id("language-zh_CN")).to_be_visible()  # and the way back
    shot("english")

    # The choice is kept for the session: the next page is English too.
    page.locator("aside.sidebar a[href='/operators']").click()
    page.wait_for_url("**/operators")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("new-operator")).to_contain_text("New operator")
