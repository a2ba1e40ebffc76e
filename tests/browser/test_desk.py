"""The front desk in Chromium: a keyboard-wedge scan (keystrokes + Enter), confirm, the success
card, a second scan of the same code showing "already verified", and an undo from today's list.

The sandbox accounts and deal mappings come from the desk fixtures of tests/vouchers/conftest.py.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.vouchers.models import VoucherVerification
from tests.vouchers.conftest import desk_env, desk_live_sandbox  # noqa: F401  (fixtures)


def test_scan_confirm_rescan_and_undo(page, login, live_server, shot, desk_env):  # noqa: F811
    receipt = desk_env.mt_buy(710001)
    login(desk_env.manager.username)
    page.goto("/desk")
    code = page.get_by_test_id("desk-code")
    expect(code).to_be_focused()

    # A scanner types the code and presses Enter.
    page.keyboard.type(receipt.code, delay=5)
    page.keyboard.press("Enter")
    preview = page.get_by_test_id("desk-preview")
    expect(preview).to_be_visible()
    expect(page.get_by_test_id("desk-platform")).to_be_visible()
    expect(page.get_by_test_id("desk-product")).to_contain_text("月卡")
    expect(code).to_be_focused()  # refocused after the swap
    shot("preview")
    page.get_by_test_id("desk-phone").fill("13900003333")
    page.get_by_test_id("desk-confirm").click()
    success = page.get_by_test_id("desk-success")
    expect(success).to_be_visible()
    expect(page.get_by_test_id("desk-granted")).not_to_be_empty()
    expect(page.get_by_test_id("desk-print")).to_have_attribute("href", re.compile(r"/desk/receipts/\d+"))
    expect(code).to_be_focused()
    shot("verified")

    # Clicking on the page (not on a field) gives the focus back to the code field.
    page.locator("h1").first.click()
    expect(code).to_be_focused()

    # The same code scanned again.
    page.keyboard.press("Control+A")
    page.keyboard.type(receipt.code, delay=5)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("desk-failure")).to_be_visible()
    expect(page.get_by_test_id("desk-earlier-receipt")).to_be_visible()
    shot("already-verified")

    db.session.expire_all()
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    assert verification.status == "verified"

    # Undo from today's verifications, with the reason and the confirmation dialog.
    page.get_by_test_id("desk-recent").click()
    page.get_by_test_id(f"recent-reason-{verification.id}").fill("顾客改约")
    page.get_by_test_id(f"recent-undo-{verification.id}").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.get_by_test_id("desk-undone")).to_be_visible()
    shot("undone")
    db.session.expire_all()
    assert db.session.get(VoucherVerification, verification.id).status == "undone"
    assert desk_env.mt_receipt(receipt.code).status == "unused"


def test_camera_button_only_where_the_browser_can_read_codes(page, login, live_server, desk_env):  # noqa: F811
    """Headless Chromium on Linux has no BarcodeDetector: the desk offers only the scanner and keyboard."""
    login(desk_env.clerk.username)
    page.goto("/desk")
    has_detector = page.evaluate("'BarcodeDetector' in window")
    expect(page.get_by_test_id("desk-camera")).to_be_visible() if has_detector else \
        expect(page.get_by_test_id("desk-camera")).to_be_hidden()


def test_camera_scan_looks_the_code_up(page, login, live_server, desk_env):  # noqa: F811
    """With a camera and a detector (stood in for here: this machine has neither), a read code is looked up.

    The stand-in detector reads the code from a real MediaStream drawn on a canvas; everything
    after it (the desk's camera script, the form, htmx, the platform) is the real thing.
    """
    receipt = desk_env.mt_buy(710001)
    page.add_init_script("""
        window.BarcodeDetector = class { constructor() {} detect() { return Promise.resolve(
            window.__cameraCode ? [{ rawValue: window.__cameraCode }] : []); } };
        navigator.mediaDevices.getUserMedia = () => {
            const canvas = document.createElement('canvas'); canvas.width = 64; canvas.height = 64;
            canvas.getContext('2d').fillRect(0, 0, 64, 64);
            return Promise.resolve(canvas.captureStream(5));
        };
    """)
    login(desk_env.clerk.username)
    page.goto("/desk")
    camera = page.get_by_test_id("desk-camera")
    expect(camera).to_be_visible()
    camera.click()
    page.evaluate(f"window.__cameraCode = '{receipt.code}'")
    expect(page.get_by_test_id("desk-preview")).to_be_visible()
    expect(page.get_by_test_id("desk-code")).to_have_value(receipt.code)
    assert page.locator("[data-camera-view]").is_hidden()  # the camera stops once it has read a code
