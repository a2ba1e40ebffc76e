"""The OpenID hand-off through the 云数汇 sandbox, and the API's OpenAPI description and page."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app.coupons import openid_handoff
from app.coupons.api import bp as api_blueprint
from app.extensions import db
from tests.coupons.bank_api_helpers import bank, make_bank  # noqa: F401 (fixture)
from tests.helpers import csrf_from

BANK_PAGE = "https://h5.bank.example/coupons/claim?campaign=7&openid=stale"


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def test_the_hand_off_goes_through_the_sandbox_and_back_to_the_bank_with_the_openid(app, client, bank):
    start = client.get("/api/v1/openid", query_string={"bankId": bank.partner.code, "redirect": BANK_PAGE})
    assert start.status_code == 302
    to_ysh = urlsplit(start.headers["Location"])
    assert to_ysh.path == f"/sandbox/yunshuhui/openid/{bank.org.id and _member_id(bank)}"
    wmcb = parse_qs(to_ysh.query)["wmcb"][0]
    assert wmcb.startswith(app.config.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000") + "/api/v1/openid/callback?state=")

    page = client.get(_local(start.headers["Location"]))  # the visitor says who they are on 云数汇's page
    assert page.status_code == 200
    chosen = client.post(to_ysh.path, data={"wmcb": wmcb, "nickname": "小王", "csrf_token": csrf_from(page)})
    assert chosen.status_code == 302
    back = urlsplit(chosen.headers["Location"])
    openid = parse_qs(back.query)["openid"][0]
    assert parse_qs(back.query)["from"] == ["dshy"] and back.path == "/api/v1/openid/callback"

    to_bank = client.get(_local(chosen.headers["Location"]))
    assert to_bank.status_code == 302
    final = urlsplit(to_bank.headers["Location"])
    assert (final.scheme, final.netloc, final.path) == ("https", "h5.bank.example", "/coupons/claim")
    assert parse_qs(final.query) == {"campaign": ["7"], "openid": [openid]}  # the stale openid is replaced


def _member_id(bank) -> str:
    from app.coupons.issuance import tunnel_account

    return tunnel_account(bank.org.id, "yunshuhui").member_id


@pytest.mark.parametrize("params, status, words", [
    ({"redirect": BANK_PAGE}, 400, "bankId"),
    ({"bankId": "00000000", "redirect": BANK_PAGE}, 404, "00000000"),
    ({"redirect": "https://evil.example/phish"}, 422, "evil.example"),
    ({"redirect": "javascript:alert(1)"}, 422, "http"),
    ({"redirect": "https://h5.bank.example.evil.example/"}, 422, "not on this client"),
])
def test_the_hand_off_refuses_unknown_banks_and_foreign_redirects(client, bank, params, status, words):
    params = {"bankId": bank.partner.code, **params} if "bankId" not in params and status != 400 else params
    response = client.get("/api/v1/openid", query_string=params)
    assert response.status_code == status
    assert words in response.get_data(as_text=True)
    assert "Location" not in response.headers


def test_a_bank_without_an_openid_page_is_told_so(client, make):
    bank = make_bank(make)  # no 云数汇 account
    response = client.get("/api/v1/openid", query_string={"bankId": bank.partner.code, "redirect": BANK_PAGE})
    assert response.status_code == 409


def test_the_callback_needs_our_fresh_state_and_an_openid(app, client, bank):
    good = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=openid_handoff.STATE_SALT).dumps(
        {"org": bank.org.id, "redirect": BANK_PAGE})
    forged = URLSafeTimedSerializer("not-our-key", salt=openid_handoff.STATE_SALT).dumps(
        {"org": bank.org.id, "redirect": "https://evil.example/"})

    class Earlier(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - openid_handoff.STATE_MAX_AGE_SECONDS - 5

    expired = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=openid_handoff.STATE_SALT, signer=Earlier).dumps(
        {"org": bank.org.id, "redirect": BANK_PAGE})
    callback = "/api/v1/openid/callback"
    assert client.get(callback, query_string={"state": good, "openid": "oX1", "from": "dshy"}).status_code == 302
    for query in ({"state": forged, "openid": "oX1", "from": "dshy"}, {"state": expired, "openid": "oX1", "from": "dshy"},
                  {"state": good, "from": "dshy"}, {"state": good, "openid": "oX1", "from": "other"},
                  {"state": good, "openid": "o X<1>", "from": "dshy"}):
        response = client.get(callback, query_string=query)
        assert response.status_code == 400, query
        assert "Location" not in response.headers

    bank.client.allowed_hosts = ["other.bank.example"]  # the bank took the host off its list meanwhile
    db.session.commit()
    assert client.get(callback, query_string={"state": good, "openid": "oX1", "from": "dshy"}).status_code == 422


def test_allowed_host_patterns():
    from app.coupons.bank_auth import host_matches

    assert host_matches("h5.bank.example", "h5.bank.example", 443)
    assert host_matches("H5.Bank.Example", "h5.bank.example", 8443)
    assert host_matches("h5.bank.example:8443", "h5.bank.example", 8443)
    assert not host_matches("h5.bank.example:8443", "h5.bank.example", 443)
    assert host_matches("*.bank.example", "a.h5.bank.example", 443)
    assert not host_matches("*.bank.example", "bank.example", 443)
    assert not host_matches("*.bank.example", "evilbank.example", 443)
    assert not host_matches("bank.example", "bank.example.evil.example", 443)
    assert not host_matches("", "bank.example", 443)


def test_the_openapi_description_covers_every_route_and_the_signing(client, app):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    renames = {"<call_trade_no>": "{callTradeNo}", "<theme_no>": "{themeNo}", "<draw_no>": "{drawNo}"}
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in (api_blueprint.name, "draw_api"):
            path = rule.rule
            for flask_name, spec_name in renames.items():
                path = path.replace(flask_name, spec_name)
            routes.add(path)
    assert routes == set(spec["paths"])
    draw = spec["paths"]["/api/v1/activities/{themeNo}/draws"]["post"]
    assert {"Idempotency-Key", "themeNo"} == {p["name"] for p in draw["parameters"]}
    issue = spec["paths"]["/api/v1/coupons/issue"]["post"]
    assert issue["security"] == [{"lklapi": []}]
    assert {"Idempotency-Key"} == {p["name"] for p in issue["parameters"]}
    assert {"200", "202", "400", "401", "404", "409", "422", "429"} == set(issue["responses"])
    assert "LKLAPI-SHA256withRSA" in spec["info"]["description"]
    assert set(spec["webhooks"]) == {"issuanceNotification", "redemptionNotification"}
    refs = _refs(spec)
    assert refs and all(ref.split("/")[-1] in spec["components"]["schemas"] for ref in refs)


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_docs_page_reads_the_description(client):
    page = client.get("/api/v1/docs")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert text.count('data-testid="api-operation"') == 8 and text.count('data-testid="api-webhook"') == 2
    for words in ("LKLAPI-SHA256withRSA", "/api/v1/coupons/issue", "callTradeNo", "writeOffNotify", "Idempotency-Key",
                  "STOCK_EXHAUSTED", "REDEMPTION", "/api/v1/activities/{themeNo}/draws"):
        assert words in text
    assert "cdn" not in text.lower()


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/api/v1/no-such-thing", 404, "NOT_FOUND"),
    ("POST", "/api/v1/activities/5000000001/draws/extra/segments", 404, "NOT_FOUND"),
    ("DELETE", "/api/v1/coupons/issue", 405, "METHOD_NOT_ALLOWED"),
])
def test_an_address_or_method_the_api_does_not_have_is_answered_in_json(client, method, path, status, code):
    answer = client.open(path, method=method)

    assert answer.status_code == status and answer.is_json
    assert answer.get_json()["code"] == code and answer.get_json()["message"]


def test_the_console_keeps_its_own_not_found_page(client):
    answer = client.get("/no-such-page")

    assert answer.status_code == 404 and not answer.is_json and "<html" in answer.get_data(as_text=True)
