"""The coupon settings screens in Chromium: a bank admin connects the bank to the 云数汇 sandbox,
then registers an API client for the bank's back-end and reads how to sign.

Uses the browser fixtures of tests/browser/conftest.py. Elements are found by data-testid, name or
role, never by visible text.
"""
from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from app.coupons.models import BankApiClient, TunnelAccount
from app.extensions import db
from app.providers.lklapi import new_key_pair


def test_tunnel_and_api_client_settings(page, login, make, shot):
    bank = make.org(kind="bank", name="华东测试银行")
    make.operator(bank, roles=("org_admin",), username="bank_cfg")
    login("bank_cfg")

    page.goto("/coupons/settings/tunnels")
    expect(page.get_by_test_id("empty")).to_be_visible()
    page.get_by_test_id("connect-sandbox").click()
    form = page.locator("#modal").get_by_test_id("modal-form")
    form.locator("select[name=tunnel]").select_option("yunshuhui")
    form.get_by_test_id("submit").click()
    expect(page.locator("#modal")).to_be_hidden()
    card = page.get_by_test_id(f"tunnel-yunshuhui-{bank.id}")
    expect(card).to_be_visible()  # the list refreshed itself
    expect(card.get_by_test_id("private-key-state")).to_contain_text(":")  # a fingerprint, never the key
    db.session.expire_all()
    account = db.session.execute(select(TunnelAccount)).scalar_one()
    assert account.base_url.endswith("/sandbox/yunshuhui")
    shot("tunnels")

    # The edit form says a key is stored, and shows none of it.
    card.get_by_test_id(f"edit-tunnel-{account.id}").click()
    expect(page.locator("#modal").get_by_test_id("stored-key")).to_be_visible()
    expect(page.locator("#modal textarea[name=private_key]")).to_have_value("")
    shot("tunnel-edit")
    # Bootstrap ignores Escape while the modal is still fading in; once open, it focuses the first field.
    expect(page.locator("#modal :focus")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator("#modal")).to_be_hidden()

    page.goto("/coupons/settings/api-clients")
    page.get_by_test_id("new-api-client").click()
    form = page.locator("#modal").get_by_test_id("modal-form")
    form.locator("input[name=name]").fill("H5 券系统")
    form.locator("textarea[name=client_cert]").fill(new_key_pair("bank back-end")[1])
    form.locator("textarea[name=allowed_hosts]").fill("h5.bank.example")
    form.get_by_test_id("submit").click()
    created = page.locator("#modal").get_by_test_id("client-created")
    expect(created).to_be_visible()
    db.session.expire_all()
    client = db.session.execute(select(BankApiClient)).scalar_one()
    expect(created.get_by_test_id("new-app-id")).to_have_text(client.app_id)
    shot("client-created")

    page.goto(f"/coupons/settings/api-clients/{client.id}")
    expect(page.get_by_test_id("signed-text")).to_contain_text(client.client_serial_no)
    old_serial = client.our_serial_no
    page.get_by_test_id("rotate-key").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("our-serial")).not_to_have_text(old_serial)
    shot("client-detail")
