"""What a customer does on a theme activity's H5 game page in the phone browser (the `phone` fixture of
tests/browser/conftest.py), shared by the browser tests that go there: pass 云数汇's OpenID hand-off
on the sandbox, and read which slice of the wheel came to rest under the pointer.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect


def sign_in_through_yunshuhui(phone, link: str, nickname: str) -> None:
    """Open the activity's link and say who you are on the 云数汇 sandbox's OpenID page: back on the
    game page, identified, with no openid left in the URL."""
    phone.goto(link)
    expect(phone.get_by_test_id("sandbox-openid")).to_be_visible()
    phone.locator("input[name=nickname]").fill(nickname)
    phone.get_by_test_id("openid-continue").click()
    phone.wait_for_url(re.compile(re.escape(urlsplit(link).path) + "$"))
    assert "openid" not in phone.url


def slice_under_the_pointer(phone) -> str | None:
    """The prize id of the slice just under the pointer at twelve o'clock, as drawn on the screen (the
    result dialog is set aside for the look, then put back)."""
    return phone.evaluate("""() => {
        const dialog = document.getElementById('result');
        const shown = dialog.style.display;
        dialog.style.display = 'none';
        const svg = document.querySelector('#wheel-box svg');
        svg.scrollIntoView();
        const point = svg.createSVGPoint();
        point.x = 0; point.y = -80;  // inside the rim, under the pointer's tip (0, -94)
        const here = point.matrixTransform(svg.getScreenCTM());
        const hit = document.elementFromPoint(here.x, here.y);
        dialog.style.display = shown;
        const slice = hit && hit.closest('g[data-prize-id]');
        return slice ? slice.getAttribute('data-prize-id') : null;
    }""")
