"""Browser tests: the real app served over HTTP in a background thread, driven by Chromium.

The server is the session `app` (TestConfig: the same PostgreSQL test database and Redis as the
other tests), served by werkzeug on 127.0.0.1 with a free port. The browser is the machine's
Chromium (`CHROMIUM`, default /usr/bin/chromium) through Playwright; Playwright never downloads
a browser of its own. A missing Chromium fails the tests: they are never skipped.

Screenshots of the main steps go to test-artifacts/ (ignored by git), numbered in one sequence per
test across its browser contexts (the console's `page` and the customer's `phone`).

Shared here as well: `phone`, the customer's WeChat browser on a phone, and `confirm`, which answers
the console's confirmation dialog (with `MARK_SHOWN_DIALOGS` added to the page first).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import serving

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Mobile/15E148 MicroMessenger/8.0.49(0x18003137) NetType/WIFI Language/zh_CN")
# Marks a Bootstrap modal once its opening animation is over (a click during it is lost).
MARK_SHOWN_DIALOGS = ("document.addEventListener('shown.bs.modal', function (e) { e.target.setAttribute('data-test-shown', ''); });"
                      "document.addEventListener('hide.bs.modal', function (e) { e.target.removeAttribute('data-test-shown'); });")


@pytest.fixture(scope="session")
def live_server(app):
    """The app on http://127.0.0.1:<free port>, in a daemon thread, for the whole session."""
    if not (REPO / "static" / "vendor" / "htmx.min.js").exists():
        pytest.fail("static/vendor/ is not built: run `make test` (it runs npm ci and the asset build)")
    with serving(app) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from the machine (never a downloaded one)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        pytest.fail(f"Chromium not found at {CHROMIUM} (CHROMIUM=...; `which chromium`: {found}). "
                    "Install it with `apt-get install chromium fonts-noto-cjk`; .ci/run does.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _browser_page(browser, live_server, **options):
    """A fresh context (no cookies) and its page, with the errors list its uncaught JavaScript errors fill."""
    context = browser.new_context(base_url=live_server, locale="zh-CN", timezone_id="Asia/Shanghai", **options)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) and page, with the live server as base URL."""
    context, page, errors = _browser_page(browser, live_server, viewport={"width": 1366, "height": 860})
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshot_path(request):
    """screenshot_path("step") is test-artifacts/<test name>-<n>-<step>.png, n counting this test's screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    counter = iter(range(1, 100))
    test_name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)
    return lambda step: ARTIFACTS / f"{test_name}-{next(counter):02d}-{step}.png"


@pytest.fixture
def shot(page, screenshot_path):
    """shot("step") saves test-artifacts/<test name>-<n>-<step>.png."""

    def take(step: str) -> Path:
        path = screenshot_path(step)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def phone(browser, live_server, screenshot_path):
    """A customer's phone: its own context (375 × 812, touch, WeChat's user agent) and page.

    `phone.shot(step)` saves test-artifacts/<test name>-<n>-phone-<step>.png; an uncaught JavaScript
    error on it fails the test, as on `page`.
    """
    context, page, errors = _browser_page(browser, live_server, viewport={"width": 375, "height": 812},
                                          device_scale_factor=2, is_mobile=True, has_touch=True,
                                          user_agent=WECHAT_UA)

    def shot(step: str, full_page: bool = True) -> Path:
        path = screenshot_path(f"phone-{step}")
        page.screenshot(path=str(path), full_page=full_page)
        return path

    page.shot = shot
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught JavaScript errors on the phone: {errors}"


def htmx_settled(page) -> None:
    """Wait until htmx has no request in flight and has settled its last swap.

    htmx attaches the triggers of swapped-in content only when it settles (20 ms after the swap):
    typing into a field that is visible but not yet settled would send nothing."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')")


def confirm(page) -> None:
    """Answer the confirmation dialog once it is fully shown (the page needs `MARK_SHOWN_DIALOGS`)."""
    from playwright.sync_api import expect

    expect(page.locator("#confirm-modal[data-test-shown]")).to_be_visible()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator("#confirm-modal")).to_be_hidden()


@pytest.fixture
def login(page):
    """Log in through the real login form and land on the dashboard."""
    from tests.factories import PASSWORD

    def do_login(username: str, password: str = PASSWORD) -> None:
        page.goto("/login")
        page.locator("input[name=username]").fill(username)
        page.locator("input[name=password]").fill(password)
        page.get_by_test_id("login-submit").click()
        page.wait_for_url("**/dashboard")

    return do_login
