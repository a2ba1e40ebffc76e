"""The demo bank's notification endpoint (/sandbox/bank/notify/<kind>): it takes a notification
only when our signature verifies with the certificate named by Lklapi-Serial."""
from __future__ import annotations

import json
import time

from app.coupons import bank_auth
from app.providers import lklapi
from tests.coupons.bank_api_helpers import make_bank


def notification(client, body: bytes, **overrides) -> dict:
    headers = {"Content-Type": "application/json", "Authorization": bank_auth.notification_authorization(client, body),
               "Lklapi-Serial": client.our_serial_no}
    return {**headers, **overrides}


def test_a_notification_we_signed_is_taken(client, make):
    bank = make_bank(make)
    body = json.dumps({"notifyType": "ISSUANCE", "callTradeNo": "T1"}).encode()
    answer = client.post("/sandbox/bank/notify/issued", data=body, headers=notification(bank.client, body))
    assert (answer.status_code, answer.get_json()["code"]) == (200, "SUCCESS")


def test_a_changed_body_an_unknown_serial_or_an_old_timestamp_is_refused(client, make):
    bank = make_bank(make)
    body = json.dumps({"notifyType": "REDEMPTION", "callTradeNo": "T2"}).encode()
    headers = notification(bank.client, body)
    changed = client.post("/sandbox/bank/notify/redeemed", data=body.replace(b"T2", b"T3"), headers=headers)
    unknown = client.post("/sandbox/bank/notify/redeemed", data=body,
                          headers=notification(bank.client, body, **{"Lklapi-Serial": "abc123"}))
    old = str(int(time.time()) - 3600)
    stale_header = lklapi.callback_authorization(bank.client.our_private_key, body, timestamp=old)
    stale = client.post("/sandbox/bank/notify/redeemed", data=body,
                        headers=notification(bank.client, body, Authorization=stale_header))
    assert [r.status_code for r in (changed, unknown, stale)] == [401, 401, 401]
    assert {r.get_json()["code"] for r in (changed, unknown, stale)} == {"FAIL"}
