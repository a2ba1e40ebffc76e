"""The Meituan sandbox itself: raw signed requests, rejections, the human page and its forms."""
from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.sandbox.meituan import (
    SANDBOX_DEVELOPER_ID,
    SANDBOX_SIGN_KEY,
    buy_receipt,
    misbehaviour,
    seed_sandbox_deals,
    set_misbehaviour,
)
from app.sandbox.meituan_models import SandboxMeituanDeal, SandboxMeituanReceipt
from tests.helpers import csrf_from

PREPARE = "/sandbox/meituan/ddzh/tuangou/receipt/prepare"


def hand_signed(code: str, key: str = SANDBOX_SIGN_KEY, timestamp: int | None = None) -> dict[str, str]:
    """A prepare request signed by hand: the parameters written out in name order."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    biz = json.dumps({"receiptCode": code})
    params = {"developerId": SANDBOX_DEVELOPER_ID, "businessId": "58", "timestamp": ts, "charset": "UTF-8",
              "version": "2", "appAuthToken": "store-1", "biz": biz}
    text = ("appAuthToken" + "store-1" + "biz" + biz + "businessId" + "58" + "charset" + "UTF-8"
            + "developerId" + SANDBOX_DEVELOPER_ID + "timestamp" + ts + "version" + "2")
    params["sign"] = hashlib.sha1((key + text).encode()).hexdigest()
    return params


@pytest.fixture
def receipt(app):
    deals = seed_sandbox_deals()
    return buy_receipt(deals[0], mobile="13812348000")


def test_a_hand_signed_request_is_accepted_without_csrf(client, receipt):
    response = client.post(PREPARE, data=hand_signed(receipt.code))
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["code"] == "OP_SUCCESS" and answer["traceId"]
    data = answer["data"]
    assert (data["receiptCode"], data["dealId"], data["count"], data["bizType"]) == (receipt.code, 710001, 1, 0)
    assert (data["dealPrice"], data["dealMarketPrice"]) == (199, 299)  # yuan, as JSON numbers
    assert data["mobile"] == "138****8000"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", data["receiptEndDate"])


@pytest.mark.parametrize("tamper", ["biz", "timestamp", "appAuthToken", "sign", "extra"])
def test_tampered_parameters_are_rejected(client, receipt, tamper):
    params = hand_signed(receipt.code)
    if tamper == "biz":
        params["biz"] = json.dumps({"receiptCode": "999999999999"})
    elif tamper == "timestamp":
        params["timestamp"] = str(int(params["timestamp"]) + 1)
    elif tamper == "appAuthToken":
        params["appAuthToken"] = "store-2"
    elif tamper == "sign":
        params["sign"] = params["sign"][:-1] + ("0" if params["sign"][-1] != "0" else "1")
    else:
        params["extra"] = "x"  # any added parameter is signed too
    answer = client.post(PREPARE, data=params).get_json()
    assert answer["code"] == "OP_SIGN_INVALID"


def test_wrong_key_missing_sign_and_stale_timestamp(client, receipt):
    assert client.post(PREPARE, data=hand_signed(receipt.code, key="other")).get_json()["code"] == "OP_SIGN_INVALID"
    params = hand_signed(receipt.code)
    del params["sign"]
    assert client.post(PREPARE, data=params).get_json()["code"] == "OP_PARAM_INVALID"
    stale = hand_signed(receipt.code, timestamp=int(time.time()) - 301)
    assert client.post(PREPARE, data=stale).get_json()["code"] == "OP_TIMESTAMP_INVALID"
    fresh = hand_signed(receipt.code, timestamp=int(time.time()) - 200)
    assert client.post(PREPARE, data=fresh).get_json()["code"] == "OP_SUCCESS"


def test_misbehaviour_5xx_answers_503_and_counts_down(client, receipt):
    set_misbehaviour("5xx", times=1)
    assert client.post(PREPARE, data=hand_signed(receipt.code)).status_code == 503
    assert client.post(PREPARE, data=hand_signed(receipt.code)).status_code == 200
    with pytest.raises(ValueError):
        set_misbehaviour("explode")


def test_seed_is_idempotent(app):
    seed_sandbox_deals()
    seed_sandbox_deals()
    deals = db.session.execute(select(SandboxMeituanDeal).order_by(SandboxMeituanDeal.deal_id)).scalars().all()
    assert len(deals) == 5
    assert [(d.biz_type, d.uses_per_receipt) for d in deals] == [(0, 1), (0, 1), (205, 20), (205, 10), (0, 1)]


def test_receipt_codes_are_twelve_random_digits(app):
    deal = seed_sandbox_deals()[0]
    codes = {buy_receipt(deal).code for _ in range(20)}
    assert len(codes) == 20 and all(re.fullmatch(r"\d{12}", code) for code in codes)


def test_the_page_lists_deals_and_buys_a_code(client, app, platform_admin):
    seed_sandbox_deals()
    page = client.get("/sandbox/meituan/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "健身年卡 365天畅练" in html and SANDBOX_SIGN_KEY in html and SANDBOX_DEVELOPER_ID in html
    response = client.post("/sandbox/meituan/buy", data={"deal_id": "710004", "mobile": "13900001111",
                                                         "store_token": "store-9", "csrf_token": csrf_from(page)})
    assert response.status_code == 302
    bought = db.session.execute(select(SandboxMeituanReceipt)).scalar_one()
    assert (bought.deal.deal_id, bought.uses_total, bought.uses_left, bought.status) == (710004, 10, 10, "unused")
    assert (bought.store_token, bought.mobile_masked) == ("store-9", "139****1111")
    assert bought.code in client.get("/sandbox/meituan/").get_data(as_text=True)


def test_the_page_forms_need_csrf(client, app, platform_admin):
    seed_sandbox_deals()
    response = client.post("/sandbox/meituan/buy", data={"deal_id": "710001"})
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(SandboxMeituanReceipt)) == 0
    assert client.post("/sandbox/meituan/misbehave", data={"mode": "5xx"}).status_code == 400
    assert misbehaviour() == {}


def test_the_page_seeds_sets_misbehaviour_and_status(client, app, platform_admin):
    page = client.get("/sandbox/meituan/")
    assert 'data-testid="seed"' in page.get_data(as_text=True)
    client.post("/sandbox/meituan/seed", data={"csrf_token": csrf_from(page)})
    assert db.session.scalar(select(func.count()).select_from(SandboxMeituanDeal)) == 5

    page = client.get("/sandbox/meituan/")
    client.post("/sandbox/meituan/misbehave", data={"mode": "latency", "latency_ms": "250", "times": "3",
                                                    "csrf_token": csrf_from(page)})
    assert misbehaviour() == {"mode": "latency", "remaining": 3, "latency_ms": 250}
    page = client.get("/sandbox/meituan/")
    client.post("/sandbox/meituan/misbehave", data={"mode": "", "csrf_token": csrf_from(page)})
    assert misbehaviour() == {}

    receipt = buy_receipt(db.session.execute(select(SandboxMeituanDeal).filter_by(deal_id=710001)).scalar_one())
    page = client.get("/sandbox/meituan/")
    client.post(f"/sandbox/meituan/receipts/{receipt.code}/status", data={"status": "refunding",
                                                                         "csrf_token": csrf_from(page)})
    db.session.expire_all()
    assert db.session.execute(select(SandboxMeituanReceipt.status)).scalar_one() == "refunding"
    answer = client.post(PREPARE, data=hand_signed(receipt.code)).get_json()
    assert answer["code"] == "1010"


def test_the_page_renders_inside_the_console_for_a_logged_in_operator(client, auth, make):
    seed_sandbox_deals()
    operator = make.operator(roles=("platform_admin",), org=make.platform())
    auth.login(operator.username)
    html = client.get("/sandbox/meituan/").get_data(as_text=True)
    assert 'data-testid="user-menu"' in html and 'data-testid="buy-form"' in html



@pytest.mark.parametrize("method, path", [("get", "/sandbox/meituan/"), ("post", "/sandbox/meituan/buy"),
                                          ("post", "/sandbox/meituan/seed"), ("post", "/sandbox/meituan/misbehave"),
                                          ("post", "/sandbox/meituan/receipts/123456789012/status")])
def test_the_page_is_for_platform_administrators_only(client, auth, make, method, path):
    form = {"csrf_token": csrf_from(client.get("/login")), "mode": "5xx", "deal_id": "710001", "status": "refunded"}
    assert getattr(client, method)(path, data=form).status_code == 302  # to the login page
    auth.login(make.operator(make.org(kind="bank"), roles=("org_admin",)).username)
    form["csrf_token"] = csrf_from(client.get("/", follow_redirects=True))
    assert getattr(client, method)(path, data=form).status_code == 403
    assert misbehaviour() == {}
    assert db.session.scalar(select(func.count()).select_from(SandboxMeituanDeal)) == 0
