"""The bank-facing API on PostgreSQL and Redis: signatures, replay, tenancy between banks,
idempotency, callTradeNo de-duplication, validation and the rate limit."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.core import crypto
from app.core.idempotency import IdempotencyRecord
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.coupons.models import CouponActivity, CouponIssue, CouponMemberCount
from app.extensions import db
from tests.coupons.bank_api_helpers import bank, bank_key_pair, issue_body, make_bank  # noqa: F401 (fixture)
from tests.coupons.ysh_sandbox import connect_ysh_account

ISSUE = "/api/v1/coupons/issue"


@pytest.fixture
def activity(make, bank):
    return make.coupon_activity(org=bank.org, issue_total=5, per_member_limit=2)


def issued_count(activity) -> int:
    db.session.expire_all()
    return db.session.get(CouponActivity, activity.id).issued_count


def count(model) -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_a_signed_request_is_accepted_counted_and_queued_and_the_answer_is_signed(client, bank, activity):
    body = issue_body(activity, call_trade_no="BANK0001", open_id="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", memberId="C-77")
    response = bank.caller.post(client, ISSUE, body)

    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["callTradeNo"] == "BANK0001" and answer["status"] == "queued"
    assert answer["orderNo"].startswith("CP") and len(answer["orderNo"]) == 26
    assert bank.caller.answer_verifies(response)

    issue = db.session.execute(select(CouponIssue)).scalar_one()
    assert (issue.order_no, issue.status, issue.org_id, issue.api_client_id) == (
        answer["orderNo"], "queued", bank.org.id, bank.client.id)
    assert "oUpF8uMuAJO" not in issue.openid_enc and issue.openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert issue.openid_hash == crypto.lookup_hash("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
    assert issue.openid_masked == "oUpF****eS6o"
    assert (issue.bank_member_id, issue.post_notify) == ("C-77", body["postNotify"])
    assert issued_count(activity) == 1
    assert db.session.execute(select(CouponMemberCount.issued)).scalar_one() == 1
    message = db.session.execute(select(OutboxMessage)).scalar_one()
    assert (message.kind, message.payload, message.org_id) == (
        "coupons.issue", {"issue_id": issue.id, "order_no": issue.order_no}, bank.org.id)


def _signing_case(bank, body: bytes, case: str) -> dict:
    caller = bank.caller
    now = int(time.time())
    if case == "tampered body":
        return {"Authorization": caller.authorization(body.replace(b'"T', b'"X', 1))}
    if case == "wrong key":
        return {"Authorization": caller.authorization(body, private_pem=bank_key_pair()[0])}
    if case == "unknown serial":
        return {"Authorization": caller.authorization(body, serial="abc123")}
    if case == "unknown appid":
        return {"Authorization": caller.authorization(body, appid="NOBODY")}
    if case == "stale timestamp":
        return {"Authorization": caller.authorization(body, timestamp=str(now - 301))}
    if case == "future timestamp":
        # 330, not 301: a second may pass before the server looks, and 300 s ahead would be accepted.
        return {"Authorization": caller.authorization(body, timestamp=str(now + 330))}
    if case == "short nonce":
        return {"Authorization": caller.authorization(body, nonce="abc")}
    if case == "other scheme":
        return {"Authorization": caller.authorization(body).replace("LKLAPI-SHA256withRSA", "WECHATPAY2-SHA256-RSA2048")}
    if case == "no signature":
        return {}
    raise AssertionError(case)


@pytest.mark.parametrize("case, code", [
    ("tampered body", "SIGNATURE_INVALID"), ("wrong key", "SIGNATURE_INVALID"), ("unknown serial", "UNKNOWN_CLIENT"),
    ("unknown appid", "UNKNOWN_CLIENT"), ("stale timestamp", "TIMESTAMP_STALE"), ("future timestamp", "TIMESTAMP_STALE"),
    ("short nonce", "SIGNATURE_INVALID"), ("other scheme", "SIGNATURE_INVALID"), ("no signature", "SIGNATURE_INVALID"),
])
def test_requests_that_do_not_authenticate_are_refused_and_change_nothing(client, bank, activity, case, code):
    body = json.dumps(issue_body(activity)).encode()
    headers = {**_signing_case(bank, body, case), "Idempotency-Key": "k1", "Content-Type": "application/json"}
    response = client.post(ISSUE, data=body, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["code"] == code
    assert "Lklapi-Signature" not in response.headers  # no client is known: nothing is signed for anyone
    assert count(CouponIssue) == 0 and count(IdempotencyRecord) == 0 and count(OutboxMessage) == 0
    assert issued_count(activity) == 0


def test_a_disabled_client_is_unknown(client, bank, activity):
    bank.client.status = "disabled"
    db.session.commit()
    response = bank.caller.post(client, ISSUE, issue_body(activity))
    assert (response.status_code, response.get_json()["code"]) == (401, "UNKNOWN_CLIENT")


def test_a_replayed_request_is_refused_even_with_its_valid_signature(client, bank, activity):
    body = json.dumps(issue_body(activity)).encode()
    headers = {"Authorization": bank.caller.authorization(body), "Idempotency-Key": "once",
               "Content-Type": "application/json"}
    assert client.post(ISSUE, data=body, headers=headers).status_code == 202
    replay = client.post(ISSUE, data=body, headers=headers)
    assert (replay.status_code, replay.get_json()["code"]) == (401, "NONCE_REPLAYED")
    get_headers = {"Authorization": bank.caller.authorization(b"")}
    assert client.get("/api/v1/coupons/issues/none", headers=get_headers).status_code == 404
    assert client.get("/api/v1/coupons/issues/none", headers=get_headers).get_json()["code"] == "NONCE_REPLAYED"
    assert count(CouponIssue) == 1


def test_bank_a_cannot_issue_for_or_read_bank_b(client, make, bank, activity):
    other = make_bank(make)
    connect_ysh_account(other.org)
    b_activity = make.coupon_activity(org=other.org)
    mine = bank.caller.post(client, ISSUE, issue_body(activity, call_trade_no="SAME-SERIAL"))
    theirs = other.caller.post(client, ISSUE, issue_body(b_activity, call_trade_no="SAME-SERIAL"))
    assert mine.status_code == theirs.status_code == 202  # one serial, two banks: two issues

    by_code = bank.caller.post(client, ISSUE, issue_body(b_activity))
    by_batch = bank.caller.post(client, ISSUE, {**issue_body(b_activity), "activityCode": None,
                                                "batchCode": b_activity.batch_no})
    as_b = bank.caller.post(client, ISSUE, issue_body(activity, bankId=other.partner.code))
    assert [r.status_code for r in (by_code, by_batch, as_b)] == [404, 404, 404]
    assert [r.get_json()["code"] for r in (by_code, by_batch, as_b)] == [
        "ACTIVITY_NOT_FOUND", "ACTIVITY_NOT_FOUND", "BANK_NOT_FOUND"]
    assert issued_count(b_activity) == 1

    read = bank.caller.get(client, "/api/v1/coupons/issues/SAME-SERIAL").get_json()
    assert read["orderNo"] == mine.get_json()["orderNo"] != theirs.get_json()["orderNo"]
    other_only = other.caller.post(client, ISSUE, issue_body(b_activity, call_trade_no="B-ONLY"))
    assert other_only.status_code == 202
    assert bank.caller.get(client, "/api/v1/coupons/issues/B-ONLY").status_code == 404
    assert bank.caller.post(client, ISSUE, issue_body(activity, bankId=bank.partner.code)).status_code == 202


def test_idempotency_key_is_required_and_replays_the_stored_answer(client, bank, activity):
    body = issue_body(activity)
    missing = bank.caller.post(client, ISSUE, body, idempotency_key=None)
    assert (missing.status_code, missing.get_json()["code"]) == (400, "IDEMPOTENCY_KEY_REQUIRED")

    first = bank.caller.post(client, ISSUE, body, idempotency_key="key-1")
    again = bank.caller.post(client, ISSUE, body, idempotency_key="key-1")
    assert first.status_code == again.status_code == 202
    assert again.get_data() == first.get_data() and again.headers["Idempotent-Replayed"] == "true"
    assert bank.caller.answer_verifies(again)  # a replay is signed afresh
    other_body = bank.caller.post(client, ISSUE, issue_body(activity), idempotency_key="key-1")
    assert (other_body.status_code, other_body.get_json()["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert count(CouponIssue) == 1 and issued_count(activity) == 1


def test_the_same_call_trade_no_is_the_same_issue_and_another_body_is_refused(client, bank, activity):
    body = issue_body(activity, call_trade_no="BANK-42")
    first = bank.caller.post(client, ISSUE, body)
    again = bank.caller.post(client, ISSUE, body)  # a new Idempotency-Key, the same serial
    by_batch = bank.caller.post(client, ISSUE, {**body, "activityCode": None, "batchCode": activity.batch_no})
    assert (first.status_code, again.status_code, by_batch.status_code) == (202, 200, 200)
    assert again.get_json() == first.get_json() == by_batch.get_json()

    changed = bank.caller.post(client, ISSUE, {**body, "openId": "oSomeoneElse"})
    assert (changed.status_code, changed.get_json()["code"]) == (422, "CALL_TRADE_NO_REUSED")
    assert count(CouponIssue) == 1 and issued_count(activity) == 1


@pytest.mark.parametrize("change, status, code, words", [
    ({"openId": None}, 400, "INVALID_FIELD", "openId"),
    ({"openId": "has space"}, 400, "INVALID_FIELD", "openId"),
    ({"callTradeNo": ""}, 400, "INVALID_FIELD", "callTradeNo"),
    ({"callTradeNo": "x" * 65}, 400, "INVALID_FIELD", "callTradeNo"),
    ({"activityCode": None}, 400, "INVALID_FIELD", "activityCode"),
    ({"postNotify": None}, 400, "INVALID_FIELD", "postNotify"),
    ({"openId": ["a"]}, 400, "INVALID_FIELD", "openId"),
    ({"writeOffNotify": "https://evil.example/steal"}, 422, "URL_NOT_ALLOWED", "evil.example"),
    ({"postNotify": "ftp://127.0.0.1/x"}, 422, "URL_NOT_ALLOWED", "http"),
    ({"postNotify": "http://user:pw@127.0.0.1/x"}, 422, "URL_NOT_ALLOWED", "password"),
    ({"activityCode": "WX0_0"}, 404, "ACTIVITY_NOT_FOUND", "activityCode"),
    ({"bankId": "99999999"}, 404, "BANK_NOT_FOUND", "99999999"),
])
def test_bad_requests_are_refused_with_a_code_and_a_clear_message(client, bank, activity, change, status, code, words):
    response = bank.caller.post(client, ISSUE, {**issue_body(activity), **change})
    assert response.status_code == status
    assert response.get_json()["code"] == code and words in response.get_json()["message"]
    assert count(CouponIssue) == 0 and issued_count(activity) == 0


def test_a_body_that_is_not_json_is_refused(client, bank):
    response = bank.caller.post(client, ISSUE, None, body=b"openId=1")
    assert (response.status_code, response.get_json()["code"]) == (400, "INVALID_JSON")


@pytest.mark.parametrize("state, code", [
    ({"enabled": False}, "ACTIVITY_DISABLED"),
    ({"start_at": "future"}, "ACTIVITY_NOT_RUNNING"),
    ({"end_at": "past"}, "ACTIVITY_NOT_RUNNING"),
    ({"terminated_at": "now"}, "ACTIVITY_NOT_RUNNING"),
    ({"promotion_id": None}, "ACTIVITY_NOT_CONFIGURED"),
])
def test_only_enabled_running_configured_activities_issue(client, make, bank, state, code):
    now = utcnow()
    times = {"future": now + timedelta(hours=1), "past": now - timedelta(minutes=1), "now": now}
    values = {k: times.get(v, v) if isinstance(v, str) else v for k, v in state.items()}
    if "end_at" in values:
        values["start_at"] = now - timedelta(days=2)
    if "start_at" in values and "end_at" not in values:
        values["end_at"] = values["start_at"] + timedelta(days=1)
    activity = make.coupon_activity(org=bank.org, **values)
    response = bank.caller.post(client, ISSUE, issue_body(activity))
    assert (response.status_code, response.get_json()["code"]) == (409, code)


def test_tunnels_that_cannot_issue_are_refused(client, make, bank):
    internal = make.coupon_activity(org=bank.org, tunnel="internal")
    direct = make.coupon_activity(org=bank.org, tunnel="direct")  # the bank has no WeChat Pay account
    assert bank.caller.post(client, ISSUE, issue_body(internal)).get_json()["code"] == "TUNNEL_NOT_SUPPORTED"
    assert bank.caller.post(client, ISSUE, issue_body(direct)).get_json()["code"] == "TUNNEL_NOT_CONFIGURED"


def test_stock_and_member_limit_answer_409(client, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=2, per_member_limit=1)
    assert bank.caller.post(client, ISSUE, issue_body(activity, open_id="oA")).status_code == 202
    same_person = bank.caller.post(client, ISSUE, issue_body(activity, open_id="oA"))
    assert (same_person.status_code, same_person.get_json()["code"]) == (409, "MEMBER_LIMIT_REACHED")
    assert bank.caller.post(client, ISSUE, issue_body(activity, open_id="oB")).status_code == 202
    sold_out = bank.caller.post(client, ISSUE, issue_body(activity, open_id="oC"))
    assert (sold_out.status_code, sold_out.get_json()["code"]) == (409, "STOCK_EXHAUSTED")
    assert count(CouponIssue) == 2


def test_each_client_has_its_own_rate_limit(client, make, activity, bank):
    slow = make_bank(make, rate_limit_per_minute=3)
    for _ in range(3):
        assert slow.caller.get(client, "/api/v1/coupons/issues/x").status_code == 404
    limited = slow.caller.get(client, "/api/v1/coupons/issues/x")
    assert (limited.status_code, limited.get_json()["code"]) == (429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert slow.caller.answer_verifies(limited)
    assert bank.caller.post(client, ISSUE, issue_body(activity)).status_code == 202  # the other bank is not held up


def test_the_state_of_an_issue(client, bank, activity):
    bank.caller.post(client, ISSUE, issue_body(activity, call_trade_no="Q1", open_id="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"))
    response = bank.caller.get(client, "/api/v1/coupons/issues/Q1")
    assert response.status_code == 200 and bank.caller.answer_verifies(response)
    state = response.get_json()
    assert {k: state[k] for k in ("callTradeNo", "status", "activityCode", "batchCode", "redemption", "openIdMasked")} == {
        "callTradeNo": "Q1", "status": "queued", "activityCode": activity.code, "batchCode": activity.batch_no,
        "redemption": None, "openIdMasked": "oUpF****eS6o"}
    assert "openId" not in state
