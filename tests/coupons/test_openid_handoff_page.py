"""A refused OpenID hand-off, as the bank's customer sees it on a phone: our own small page
(templates/h5/), not the console's error page; plain words chosen by the refusal's code; the way
back to the bank's page only when that page comes from our own signed state and is still allowed;
the technical reason folded away for the bank's support staff."""
from __future__ import annotations

import re
import time
from html import unescape

import pytest
from flask_babel import gettext
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.coupons import openid_handoff
from app.extensions import db
from tests.coupons.bank_api_helpers import bank, make_bank  # noqa: F401 (fixture)

BANK_PAGE = "https://h5.bank.example/coupons/claim?campaign=7&from=app"
CALLBACK = "/api/v1/openid/callback"


def state(app, org_id: int, redirect: str = BANK_PAGE, *, age_seconds: int = 0, key: str | None = None) -> str:
    class Signed(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(key or app.config["SECRET_KEY"], salt=openid_handoff.STATE_SALT,
                                  signer=Signed).dumps({"org": org_id, "redirect": redirect})


def expired(app, org_id: int, redirect: str = BANK_PAGE) -> str:
    return state(app, org_id, redirect, age_seconds=openid_handoff.STATE_MAX_AGE_SECONDS + 5)


class Shown:
    """What the customer's page holds."""

    def __init__(self, response):
        self.status = response.status_code
        self.html = response.get_data(as_text=True)
        found = re.search(r'data-testid="handoff-error" data-code="([A-Z_]+)"', self.html)
        self.code = found.group(1) if found else None
        self.heading = unescape(re.search(r"<h1>(.*?)</h1>", self.html, re.S).group(1).strip())
        link = re.search(r'<a class="h5-button" href="([^"]*)" data-testid="back-to-bank">', self.html)
        self.back_url = unescape(link.group(1)) if link else None
        self.details = unescape(re.search(r"<details.*?<code>(.*?)</code>", self.html, re.S).group(1))


def said(app, english: str) -> str:
    """The words as the customer's page says them (in its language, once translated)."""
    with app.test_request_context("/api/v1/openid"):
        return gettext(english)


def test_the_page_is_the_customers_own_not_the_consoles(client, bank):
    shown = Shown(client.get("/api/v1/openid", query_string={"bankId": "00000000", "redirect": BANK_PAGE}))
    assert (shown.status, shown.code) == (404, "BANK_NOT_FOUND")
    assert 'name="viewport" content="width=device-width, initial-scale=1' in shown.html
    assert '<html lang="zh-CN">' in shown.html  # Chinese first
    for console_only in ("/dashboard", "<nav", "<script", "bootstrap", "csrf"):
        assert console_only not in shown.html, console_only
    assert shown.back_url is None and "h5.bank.example" not in shown.html.split("<details")[0]
    assert "404 BANK_NOT_FOUND" in shown.details and "00000000" in shown.details  # for the bank's support staff


@pytest.mark.parametrize("redirect", ["https://phish.example/claim", "javascript:alert(1)"])
def test_a_refused_address_is_never_offered_as_a_link(client, bank, redirect):
    shown = Shown(client.get("/api/v1/openid", query_string={"bankId": bank.partner.code, "redirect": redirect}))
    assert (shown.status, shown.code) == (422, "URL_NOT_ALLOWED")
    assert shown.back_url is None and "<a " not in shown.html
    assert shown.heading == said(client.application, "This coupon link is not valid")


def test_an_expired_hand_off_leads_back_to_the_banks_page(app, client, bank):
    shown = Shown(client.get(CALLBACK, query_string={"state": expired(app, bank.org.id), "openid": "oX1",
                                                     "from": "dshy"}))
    assert (shown.status, shown.code) == (400, "STATE_EXPIRED")
    assert shown.heading == said(app, "This link has expired")
    assert shown.back_url == BANK_PAGE


def test_no_way_back_to_a_page_the_bank_no_longer_allows(app, client, bank):
    bank.client.allowed_hosts = ["other.bank.example"]
    db.session.commit()
    shown = Shown(client.get(CALLBACK, query_string={"state": expired(app, bank.org.id), "openid": "oX1",
                                                     "from": "dshy"}))
    assert (shown.code, shown.back_url) == ("STATE_EXPIRED", None)


def test_a_missing_openid_leads_back_to_the_banks_page(app, client, bank):
    shown = Shown(client.get(CALLBACK, query_string={"state": state(app, bank.org.id), "from": "dshy"}))
    assert (shown.status, shown.code, shown.back_url) == (400, "OPENID_MISSING", BANK_PAGE)
    assert shown.heading == said(app, "We could not confirm your WeChat account")


def test_a_forged_state_gives_no_link_at_all(app, client, bank):
    forged = state(app, bank.org.id, "https://phish.example/", key="not-our-key")
    shown = Shown(client.get(CALLBACK, query_string={"state": forged, "openid": "oX1", "from": "dshy"}))
    assert (shown.status, shown.code, shown.back_url) == (400, "STATE_INVALID", None)
    assert "phish.example" not in shown.html


def test_a_bank_without_a_tunnel_says_coupons_are_not_available(client, make):
    without_tunnel = make_bank(make)
    shown = Shown(client.get("/api/v1/openid", query_string={"bankId": without_tunnel.partner.code,
                                                             "redirect": BANK_PAGE}))
    assert (shown.status, shown.code) == (409, "TUNNEL_NOT_CONFIGURED")
    assert shown.heading == said(client.application, "Coupons are not available right now")
