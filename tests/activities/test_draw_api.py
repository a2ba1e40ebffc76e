"""The draw API for banks' own apps: signed requests (LKLAPI, as the coupon API), idempotent draws,
refusals as JSON, and bank isolation."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.activities.prize_models import Prize, ThemeDraw
from app.core import outbox
from app.extensions import db
from tests.coupons.bank_api_helpers import make_bank


@pytest.fixture
def bank(make):
    return make_bank(make)


@pytest.fixture
def theme(make, bank):
    theme = make.wheel_theme(bank.org, participation_limit=2, daily_limit=None, thanks_weight=1)
    make.prize(theme, name="百元话费", kind="cash", cash_fen=10_000, stock=5, weight=100, sort_order=1)
    return theme


def post_draw(client, bank, theme_no: str, body=None, key: str | None = "key-1", **signing):
    return bank.caller.post(client, f"/api/v1/activities/{theme_no}/draws",
                            {"openId": "oBankCustomer01"} if body is None else body, idempotency_key=key, **signing)


def draw_count() -> int:
    return db.session.execute(select(func.count()).select_from(ThemeDraw)).scalar_one()


def test_a_signed_request_draws_and_the_answer_is_signed(client, bank, theme):
    response = post_draw(client, bank, theme.theme_no)

    assert response.status_code == 201, response.get_json()
    doc = response.get_json()
    assert doc["result"] == "WON" and doc["themeNo"] == theme.theme_no and doc["replayed"] is False
    assert doc["prize"]["type"] == "CASH" and doc["prize"]["amount"] == 10_000 and doc["prize"]["name"] == "百元话费"
    assert doc["fulfilment"] == "PENDING" and doc["drawsLeft"] == 1 and doc["drawsLeftToday"] is None
    assert doc["drawNo"].startswith("D") and len(doc["drawnAt"]) == 19
    assert bank.caller.answer_verifies(response)
    assert db.session.execute(select(ThemeDraw.channel, ThemeDraw.api_client_id)).one() == ("api", bank.client.id)


def test_a_retried_key_gets_the_same_answer_and_draws_nothing_more(client, bank, theme):
    first = post_draw(client, bank, theme.theme_no, key="retry-key").get_json()

    again = post_draw(client, bank, theme.theme_no, key="retry-key")

    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    doc = again.get_json()
    assert doc["drawNo"] == first["drawNo"] and doc["prize"] == first["prize"] and doc["replayed"] is True
    assert draw_count() == 1
    assert db.session.execute(select(Prize.stock_remaining).where(Prize.kind == "cash")).scalar_one() == 4


def test_the_same_key_for_another_customer_is_422(client, bank, theme):
    post_draw(client, bank, theme.theme_no, key="k")

    response = post_draw(client, bank, theme.theme_no, {"openId": "oSomebodyElse"}, key="k")

    assert response.status_code == 422 and response.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("body, key, code", [
    ({"openId": "oX"}, None, "IDEMPOTENCY_KEY_REQUIRED"),
    ([1, 2], "k", "INVALID_JSON"),
    ({}, "k", "INVALID_OPEN_ID"),
    ({"openId": 12345}, "k", "INVALID_OPEN_ID"),
    ({"openId": "has space"}, "k", "INVALID_OPEN_ID"),
])
def test_malformed_requests_are_400(client, bank, theme, body, key, code):
    response = post_draw(client, bank, theme.theme_no, body, key=key)

    assert response.status_code == 400 and response.get_json()["code"] == code
    assert draw_count() == 0


def test_an_unsigned_or_badly_signed_request_is_401(client, bank, theme):
    unsigned = client.post(f"/api/v1/activities/{theme.theme_no}/draws", json={"openId": "oX"},
                           headers={"Idempotency-Key": "k"})
    stale = post_draw(client, bank, theme.theme_no, timestamp="1600000000")

    assert unsigned.status_code == 401 and stale.status_code == 401
    assert stale.get_json()["code"] == "TIMESTAMP_STALE" and draw_count() == 0


def test_refusals_are_409_with_a_code(client, bank, theme):
    for n in range(2):
        assert post_draw(client, bank, theme.theme_no, key=f"k{n}").status_code == 201

    over = post_draw(client, bank, theme.theme_no, key="k3")
    theme.status = "paused"
    db.session.commit()
    paused = post_draw(client, bank, theme.theme_no, key="k4")

    assert (over.status_code, over.get_json()["code"]) == (409, "TOTAL_LIMIT_REACHED")
    assert (paused.status_code, paused.get_json()["code"]) == (409, "ACTIVITY_PAUSED")
    assert bank.caller.answer_verifies(paused)


def test_a_bank_cannot_draw_in_or_read_another_banks_activity(client, make, bank, theme):
    other = make_bank(make)
    own = post_draw(client, bank, theme.theme_no).get_json()

    drawn = post_draw(client, other, theme.theme_no, key="intruder")
    read = other.caller.get(client, f"/api/v1/activities/{theme.theme_no}/draws/{own['drawNo']}")
    unknown = post_draw(client, bank, "9999999999", key="k9")

    assert drawn.status_code == 404 and drawn.get_json()["code"] == "THEME_NOT_FOUND"
    assert read.status_code == 404 and unknown.status_code == 404
    assert draw_count() == 1


def test_a_draw_can_be_read_back_with_its_fulfilment(client, bank, theme):
    drawn = post_draw(client, bank, theme.theme_no).get_json()
    before = bank.caller.get(client, f"/api/v1/activities/{theme.theme_no}/draws/{drawn['drawNo']}").get_json()

    outbox.relay_due()
    after = bank.caller.get(client, f"/api/v1/activities/{theme.theme_no}/draws/{drawn['drawNo']}")

    assert before["fulfilment"] == "PENDING"
    assert after.status_code == 200 and after.get_json()["fulfilment"] == "FULFILLED"
    assert after.get_json()["drawNo"] == drawn["drawNo"] and "drawsLeft" not in after.get_json()
    missing = bank.caller.get(client, f"/api/v1/activities/{theme.theme_no}/draws/DNOPE")
    assert missing.status_code == 404 and missing.get_json()["code"] == "DRAW_NOT_FOUND"
