"""The Douyin sandbox at the protocol level (raw HTTP through the test client) and its human page."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.core.timeutil import utcnow
from app.extensions import db, get_redis
from app.providers.douyin import ASSUMED_CODES, BAD_PARAMETER, TOKEN_EXPIRED, TOKEN_INVALID
from app.sandbox import douyin as sandbox
from app.sandbox.douyin_models import SandboxDouyinCertificate, SandboxDouyinSku, SandboxDouyinToken
from tests.helpers import csrf_from

CERT = "/sandbox/douyin/goodlife/v1/fulfilment/certificate"


def _token(client) -> str:
    answer = client.post("/sandbox/douyin/oauth/client_token/", json={
        "client_key": sandbox.SANDBOX_CLIENT_KEY, "client_secret": sandbox.SANDBOX_CLIENT_SECRET,
        "grant_type": "client_credential"}).get_json()
    assert answer["data"]["error_code"] == 0, answer
    return answer["data"]["access_token"]


def test_client_token_answers_in_douyin_wrapper(client):
    answer = client.post("/sandbox/douyin/oauth/client_token/", json={
        "client_key": sandbox.SANDBOX_CLIENT_KEY, "client_secret": sandbox.SANDBOX_CLIENT_SECRET,
        "grant_type": "client_credential"})
    body = answer.get_json()
    assert answer.status_code == 200
    assert body["data"]["error_code"] == 0 and body["data"]["expires_in"] == 7200
    assert body["extra"]["error_code"] == 0 and body["extra"]["logid"] and body["extra"]["now"] > 0
    row = db.session.execute(select(SandboxDouyinToken).filter_by(access_token=body["data"]["access_token"])).scalar_one()
    assert timedelta(seconds=7190) < row.expires_at - utcnow() <= timedelta(seconds=7200)


def test_client_token_accepts_a_form_body_and_checks_grant_type(client):
    form = {"client_key": sandbox.SANDBOX_CLIENT_KEY, "client_secret": sandbox.SANDBOX_CLIENT_SECRET}
    bad = client.post("/sandbox/douyin/oauth/client_token/", data={**form, "grant_type": "authorization_code"})
    assert bad.get_json()["data"]["error_code"] == BAD_PARAMETER
    good = client.post("/sandbox/douyin/oauth/client_token/", data={**form, "grant_type": "client_credential"})
    assert good.get_json()["data"]["access_token"].startswith("clt.")


def test_unknown_and_expired_tokens_are_told_apart(client):
    sandbox.seed_sandbox_skus()
    cert = sandbox.buy_certificate(db.session.execute(select(SandboxDouyinSku)).scalars().first())
    none = client.get(f"{CERT}/prepare/", query_string={"code": cert.code})
    assert none.get_json()["data"]["error_code"] == TOKEN_INVALID
    unknown = client.get(f"{CERT}/prepare/", query_string={"code": cert.code}, headers={"access-token": "clt.nope"})
    assert unknown.get_json()["data"]["error_code"] == TOKEN_INVALID

    token = _token(client)
    ok = client.get(f"{CERT}/prepare/", query_string={"code": cert.code}, headers={"access-token": token})
    assert ok.get_json()["data"]["error_code"] == 0
    row = db.session.execute(select(SandboxDouyinToken).filter_by(access_token=token)).scalar_one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    expired = client.get(f"{CERT}/prepare/", query_string={"code": cert.code}, headers={"access-token": token})
    assert expired.get_json()["data"]["error_code"] == TOKEN_EXPIRED


def test_certificate_calls_check_their_parameters(client):
    headers = {"access-token": _token(client)}
    assert client.get(f"{CERT}/prepare/", headers=headers).get_json()["data"]["error_code"] == BAD_PARAMETER
    assert client.get(f"{CERT}/prepare/", query_string={"code": "1", "encrypted_data": "x"},
                      headers=headers).get_json()["data"]["error_code"] == BAD_PARAMETER
    assert client.post(f"{CERT}/verify/", json={"verify_token": "x"},
                       headers=headers).get_json()["data"]["error_code"] == BAD_PARAMETER
    assert client.post(f"{CERT}/cancel/", json={}, headers=headers).get_json()["data"]["error_code"] == BAD_PARAMETER
    assert client.get(f"{CERT}/get/", headers=headers).get_json()["data"]["error_code"] == BAD_PARAMETER


def test_verify_by_typed_codes_and_refusal_results(client):
    skus = {s.sku_id: s for s in sandbox.seed_sandbox_skus()}
    cert = sandbox.buy_certificate(skus["DYSKU1005"], poi_id="POI-9")
    headers = {"access-token": _token(client)}
    prepared = client.get(f"{CERT}/prepare/", query_string={"code": cert.code}, headers=headers).get_json()["data"]
    [item] = prepared["certificates"]
    assert item["sku"] == {"sku_id": "DYSKU1005", "title": "团课体验（单次）", "groupon_type": 1, "market_price": 9900,
                           "account_id": "", "sold_start_time": 0}
    assert (item["amount"]["original_amount"], item["amount"]["pay_amount"]) == (9900, 4900)
    assert "time_card" not in item

    refused = client.post(f"{CERT}/verify/", json={"verify_token": prepared["verify_token"], "poi_id": "POI-1",
                                                   "codes": [cert.code]}, headers=headers).get_json()["data"]
    not_here = ASSUMED_CODES["not_valid_here"]
    assert refused["error_code"] == not_here.error_code
    assert [(r["result"], r["origin_code"]) for r in refused["verify_results"]] == [(not_here.result, cert.code)]

    prepared = client.get(f"{CERT}/prepare/", query_string={"code": cert.code}, headers=headers).get_json()["data"]
    done = client.post(f"{CERT}/verify/", json={"verify_token": prepared["verify_token"], "poi_id": "POI-9",
                                                "codes": [cert.code]}, headers=headers).get_json()["data"]
    assert done["error_code"] == 0
    assert done["verify_results"][0]["result"] == 0 and done["verify_results"][0]["verify_id"]


def test_api_is_csrf_exempt_but_the_page_is_not(client, platform_admin):
    sandbox.seed_sandbox_skus()
    assert client.post("/sandbox/douyin/misbehave", json={}).status_code == 200  # no CSRF token needed
    assert client.post("/sandbox/douyin/buy", data={"sku_id": "DYSKU1001"}).status_code == 400
    assert db.session.scalar(select(func.count()).select_from(SandboxDouyinCertificate)) == 0


def test_misbehave_endpoint_sets_and_clears(client, platform_admin):
    set_ = client.post("/sandbox/douyin/misbehave", json={"status": 503, "only": ["token"], "times": 1})
    assert set_.get_json()["misbehave"]["status"] == 503
    form = {"client_key": sandbox.SANDBOX_CLIENT_KEY, "client_secret": sandbox.SANDBOX_CLIENT_SECRET,
            "grant_type": "client_credential"}
    assert client.post("/sandbox/douyin/oauth/client_token/", json=form).status_code == 503
    assert client.post("/sandbox/douyin/oauth/client_token/", json=form).status_code == 200  # only the next call
    assert "sandbox-misbehave" in client.get("/sandbox/douyin/").get_data(as_text=True)

    assert client.post("/sandbox/douyin/misbehave", json={}).get_json()["misbehave"] is None
    assert "sandbox-misbehave" not in client.get("/sandbox/douyin/").get_data(as_text=True)
    assert client.post("/sandbox/douyin/misbehave", json={"latency_ms": "slow"}).status_code == 400


def test_seed_is_idempotent():
    sandbox.seed_sandbox_skus()
    sandbox.seed_sandbox_skus()
    titles = db.session.execute(select(SandboxDouyinSku.sku_id, SandboxDouyinSku.groupon_type,
                                       SandboxDouyinSku.times_count).order_by(SandboxDouyinSku.sku_id)).all()
    assert titles == [("DYSKU1001", 1, 1), ("DYSKU1002", 1, 1), ("DYSKU1003", 3, 20), ("DYSKU1004", 1, 1),
                      ("DYSKU1005", 1, 1)]


def test_a_person_buys_and_refunds_a_certificate_on_the_page(client, platform_admin):
    page = client.get("/sandbox/douyin/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "20 次健身次卡" in html and sandbox.SANDBOX_CLIENT_KEY in html

    bought = client.post("/sandbox/douyin/buy", data={"csrf_token": csrf_from(page), "sku_id": "DYSKU1003",
                                                      "buyer_phone": "+86 138 1234 8000", "poi_id": "POI-7"},
                         follow_redirects=True)
    assert bought.status_code == 200
    cert = db.session.execute(select(SandboxDouyinCertificate)).unique().scalar_one()
    assert re.fullmatch(r"\d{12}", cert.code)
    assert (cert.sku.sku_id, cert.times_count, cert.poi_id, cert.buyer_phone_masked) == ("DYSKU1003", 20, "POI-7",
                                                                                         "138****8000")
    assert cert.code in bought.get_data(as_text=True)
    link = f"/sandbox/douyin/s/{sandbox.short_link_slug(cert)}/"
    assert f"http://localhost{link}" in bought.get_data(as_text=True)  # the short link its QR code holds
    landed = client.get(link)
    assert landed.status_code == 302
    assert landed.headers["Location"].endswith(f"/sandbox/douyin/voucher/?object_id={cert.encrypted_code}"
                                               "&scene=certificate")
    assert client.get(landed.headers["Location"]).get_json()["data"]["certificate"]["code"] == cert.code
    assert client.get("/sandbox/douyin/s/not-a-slug!/").status_code == 404

    refunded = client.post(f"/sandbox/douyin/certificates/{cert.certificate_id}/refund",
                           data={"csrf_token": csrf_from(bought)}, follow_redirects=True)
    assert refunded.status_code == 200
    db.session.expire_all()
    assert db.session.get(SandboxDouyinCertificate, cert.id).status == "refunded"


def test_codes_are_unique_and_unpredictable():
    sku = sandbox.seed_sandbox_skus()[0]
    certs = [sandbox.buy_certificate(sku) for _ in range(30)]
    assert len({c.code for c in certs}) == 30
    assert len({c.encrypted_code for c in certs}) == 30
    assert len({c.certificate_id for c in certs}) == 30


def test_the_page_renders_inside_the_console_for_a_platform_administrator(client, platform_admin):
    page = client.get("/sandbox/douyin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="sandbox-douyin"' in html and 'data-testid="user-menu"' in html


def test_verify_rejects_malformed_code_lists(client):
    headers = {"access-token": _token(client)}
    for body in ({"verify_token": "t", "poi_id": "P", "encrypted_codes": "not-a-list"},
                 {"verify_token": "t", "poi_id": "P", "codes": [1, 2]},
                 {"verify_token": "t", "poi_id": "P", "encrypted_codes": []}):
        answer = client.post(f"{CERT}/verify/", json=body, headers=headers)
        assert answer.status_code == 200
        assert answer.get_json()["data"]["error_code"] == BAD_PARAMETER



@pytest.mark.parametrize("method, path", [("get", "/sandbox/douyin/"), ("post", "/sandbox/douyin/buy"),
                                          ("post", "/sandbox/douyin/misbehave"),
                                          ("post", "/sandbox/douyin/certificates/1/refund")])
def test_the_page_is_for_platform_administrators_only(client, auth, make, method, path):
    headers = {"X-CSRFToken": csrf_from(client.get("/login"))}
    assert getattr(client, method)(path, json={"status": 503}, headers=headers).status_code == 302  # to log in
    auth.login(make.operator(make.org(kind="bank"), roles=("org_admin",)).username)
    headers = {"X-CSRFToken": csrf_from(client.get("/", follow_redirects=True))}
    assert getattr(client, method)(path, json={"status": 503}, headers=headers).status_code == 403
    assert get_redis().get(sandbox.MISBEHAVE_KEY) is None
    assert db.session.scalar(select(func.count()).select_from(SandboxDouyinSku)) == 0
