"""The WeChat Pay sandbox: request signatures checked against requests signed here, answers and
certificates checked here, coupon sends (idempotent, budget under concurrency), COUPON.USE
notifications (sealed, signed, retried on the payment-notification schedule) and the page."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from app.core.timeutil import as_utc, utcnow
from app.extensions import db
from app.providers.wechatpay import WechatPayError, parse_use_notification
from app.sandbox import wechatpay as sandbox
from app.sandbox.wechatpay_models import SandboxWxpayCoupon, SandboxWxpayNotification, SandboxWxpayStock
from tests.helpers import csrf_from
from tests.providers.wechatpay_support import (APPID, answer_verifies, authorization, direct_account,  # noqa: F401
                                               key_pair, live_server, merchant, merchant_keys, rsa_verifies, unseal)

PREFIX = "/sandbox/wechatpay"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
NOTIFY_URL = "https://hub.example.com/notify/wechatpay/7"


@pytest.fixture
def stock(merchant):
    return sandbox.create_stock(merchant.mchid, coupon_amount_fen=500, max_coupons=5, max_coupons_per_user=1)


def send_body(merchant, stock, out_request_no="ORD-1", **values) -> str:
    return json.dumps(dict({"stock_id": stock.stock_id, "out_request_no": out_request_no, "appid": APPID,
                            "stock_creator_mchid": merchant.mchid}, **values))


def post_send(client, merchant, body: str, openid: str = OPENID, **auth):
    url = f"/v3/marketing/favor/users/{openid}/coupons"
    return client.post(PREFIX + url, data=body, content_type="application/json",
                       headers={"Authorization": authorization(merchant, "POST", url, auth.pop("signed_body", body),
                                                               **auth)})


# --- request signatures --------------------------------------------------------------------------

def test_a_request_signed_here_is_accepted_and_the_answer_verifies_here(client, merchant, stock):
    answer = post_send(client, merchant, send_body(merchant, stock))

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert set(answer.get_json()) == {"coupon_id"}
    assert answer_verifies(merchant, answer.headers, answer.get_data())


@pytest.mark.parametrize("case", ["tampered_body", "wrong_key", "wrong_serial", "stale", "future"])
def test_a_request_that_fails_its_signature_is_refused(client, merchant, stock, case):
    body = send_body(merchant, stock)
    auth = {
        "tampered_body": {"signed_body": send_body(merchant, stock, out_request_no="ORD-OTHER")},
        "wrong_key": {"private_pem": key_pair("impostor").private_pem},
        "wrong_serial": {"serial": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"},
        "stale": {"timestamp": int(time.time()) - 301},
        "future": {"timestamp": int(time.time()) + 302},  # +302: the clock may tick between here and there
    }[case]

    answer = post_send(client, merchant, body, **auth)

    assert answer.status_code == 401
    assert answer.get_json()["code"] == "SIGN_ERROR"
    assert db.session.scalars(select(SandboxWxpayCoupon)).all() == []


def test_missing_authorization_and_unknown_mchid_are_refused(client, merchant, stock):
    url = f"/v3/marketing/favor/users/{OPENID}/coupons"
    unsigned = client.post(PREFIX + url, data=send_body(merchant, stock), content_type="application/json")
    assert (unsigned.status_code, unsigned.get_json()["code"]) == (401, "SIGN_ERROR")
    header = authorization(merchant, "POST", url, send_body(merchant, stock)).replace(
        f'mchid="{merchant.mchid}"', 'mchid="1900000999"')
    answer = client.post(PREFIX + url, data=send_body(merchant, stock), content_type="application/json",
                         headers={"Authorization": header})
    assert (answer.status_code, answer.get_json()["code"]) == (401, "SIGN_ERROR")


def test_the_query_string_is_part_of_the_signed_url(client, merchant, stock):
    coupon_id = post_send(client, merchant, send_body(merchant, stock)).get_json()["coupon_id"]
    url = f"/v3/marketing/favor/users/{OPENID}/coupons/{coupon_id}?appid={APPID}"

    signed_without_query = authorization(merchant, "GET", url.split("?")[0])
    assert client.get(PREFIX + url, headers={"Authorization": signed_without_query}).status_code == 401

    answer = client.get(PREFIX + url, headers={"Authorization": authorization(merchant, "GET", url)})
    assert answer.status_code == 200 and answer.get_json()["coupon_id"] == coupon_id
    assert answer_verifies(merchant, answer.headers, answer.get_data())


def test_certificates_answer_the_platform_certificate_sealed_with_the_apiv3_key(client, merchant):
    answer = client.get(PREFIX + "/v3/certificates",
                        headers={"Authorization": authorization(merchant, "GET", "/v3/certificates")})

    assert answer.status_code == 200 and answer_verifies(merchant, answer.headers, answer.get_data())
    [entry] = answer.get_json()["data"]
    assert entry["serial_no"] == merchant.platform_serial
    assert entry["encrypt_certificate"]["algorithm"] == "AEAD_AES_256_GCM"
    assert entry["encrypt_certificate"]["associated_data"] == "certificate"
    assert unseal(merchant.apiv3_key, entry["encrypt_certificate"]) == merchant.platform_cert


def test_provisioning_checks_the_serial_and_keeps_the_platform_key(merchant, merchant_keys):
    with pytest.raises(ValueError, match="serial"):
        sandbox.provision_merchant(merchant.mchid, "ABCDEF", merchant_keys.cert_pem, merchant.apiv3_key)
    with pytest.raises(ValueError, match="32"):
        sandbox.provision_merchant(merchant.mchid, merchant_keys.serial, merchant_keys.cert_pem, "short")

    again = sandbox.provision_merchant(merchant.mchid, merchant_keys.serial.lower(), merchant_keys.cert_pem, "z" * 32)
    assert again == {"platform_serial": merchant.platform_serial, "platform_cert": merchant.platform_cert}


# --- sending coupons -----------------------------------------------------------------------------

def test_the_same_out_request_no_answers_the_same_coupon(client, merchant, stock):
    first = post_send(client, merchant, send_body(merchant, stock)).get_json()["coupon_id"]
    again = post_send(client, merchant, send_body(merchant, stock)).get_json()["coupon_id"]

    assert first == again
    db.session.expire_all()
    assert db.session.get(SandboxWxpayStock, stock.id).sent_count == 1

    other = post_send(client, merchant, send_body(merchant, stock), openid="oOtherPerson")
    assert (other.status_code, other.get_json()["code"]) == (400, "INVALID_REQUEST")


def test_a_stock_of_another_merchant_cannot_be_sent(client, merchant, stock):
    other = key_pair("1900000200 merchant")
    sandbox.provision_merchant("1900000200", other.serial, other.cert_pem, "q" * 32)
    foreign = sandbox.create_stock("1900000200", coupon_amount_fen=100, max_coupons=5)

    answer = post_send(client, merchant, send_body(merchant, foreign, stock_creator_mchid="1900000200"))
    assert (answer.status_code, answer.get_json()["code"]) == (403, "NOAUTH")
    answer = post_send(client, merchant, send_body(merchant, foreign))
    assert (answer.status_code, answer.get_json()["code"]) == (400, "INVALID_REQUEST")


def test_the_budget_holds_under_concurrent_sends(app, merchant, stock):
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()
    bodies = [send_body(merchant, stock, out_request_no=f"ORD-{n}") for n in range(12)]  # read here, not in threads

    def send(n: int) -> None:
        with app.app_context():
            answer = post_send(app.test_client(), merchant, bodies[n], openid=f"openid{n}")
            with lock:
                answers.append((answer.status_code, answer.get_json()))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(answers) == 12
    assert sorted(status for status, _ in answers) == [200] * 5 + [403] * 7
    assert {body["code"] for status, body in answers if status == 403} == {"NOT_ENOUGH"}
    db.session.expire_all()
    assert db.session.get(SandboxWxpayStock, stock.id).sent_count == 5
    assert len(db.session.scalars(select(SandboxWxpayCoupon).filter_by(stock_pk=stock.id)).all()) == 5


def test_a_stock_outside_its_window_sends_nothing(client, merchant):
    ended = sandbox.create_stock(merchant.mchid, coupon_amount_fen=100, max_coupons=5,
                                 begin_at=utcnow() - timedelta(days=3), end_at=utcnow() - timedelta(days=1))
    answer = post_send(client, merchant, send_body(merchant, ended))
    assert (answer.status_code, answer.get_json()["code"]) == (403, "RULELIMIT")


# --- using coupons and notifications ------------------------------------------------------------

class Receiver:
    """Our notify endpoint as the sandbox sees it: records every request, answers what it is told."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"code": "FAIL", "message": "down"} if status >= 400 else None)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


@pytest.fixture
def sent(merchant, stock):
    sandbox.set_notify_url(merchant.mchid, NOTIFY_URL)
    mchid_merchant = sandbox.merchant_by_mchid(merchant.mchid)
    answer = sandbox.send_coupon(mchid_merchant, OPENID, json.loads(send_body(merchant, stock)))
    return answer["coupon_id"]


def notifications() -> list[SandboxWxpayNotification]:
    db.session.expire_all()
    return list(db.session.scalars(select(SandboxWxpayNotification).order_by(SandboxWxpayNotification.id)))


def test_using_a_coupon_sends_a_sealed_signed_coupon_use_notification(merchant, sent, direct_account):
    coupon = sandbox.use_coupon(sent)
    receiver = Receiver(200)

    assert sandbox.deliver_due_notifications(http=receiver.client()) == [(notifications()[0].id, "delivered")]

    [request] = receiver.requests
    assert str(request.url) == NOTIFY_URL
    body = request.content
    text = f"{request.headers['Wechatpay-Timestamp']}\n{request.headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    assert request.headers["Wechatpay-Serial"] == merchant.platform_serial
    assert rsa_verifies(merchant.platform_cert, text, request.headers["Wechatpay-Signature"])
    envelope = json.loads(body)
    assert (envelope["event_type"], envelope["resource_type"]) == ("COUPON.USE", "encrypt-resource")
    assert envelope["resource"]["associated_data"] == "coupon" and len(envelope["resource"]["nonce"]) == 12
    resource = json.loads(unseal(merchant.apiv3_key, envelope["resource"]))
    assert (resource["coupon_id"], resource["status"]) == (sent, "USED")
    assert resource["consume_information"]["transaction_id"] == coupon.transaction_id

    event = parse_use_notification(direct_account(), request.headers, body)  # and our reader agrees
    assert (event["coupon_id"], event["event_id"], event["consume_time"]) == (sent, envelope["id"],
                                                                             as_utc(coupon.consume_time))


def test_a_used_or_expired_coupon_cannot_be_used(merchant, sent, stock):
    sandbox.use_coupon(sent)
    with pytest.raises(ValueError, match="USED"):
        sandbox.use_coupon(sent)
    assert len(notifications()) == 1

    expired = sandbox.create_stock(merchant.mchid, coupon_amount_fen=100, max_coupons=5,
                                   begin_at=utcnow() - timedelta(days=2), end_at=utcnow() + timedelta(seconds=2))
    coupon_id = sandbox.send_coupon(sandbox.merchant_by_mchid(merchant.mchid), OPENID,
                                    json.loads(send_body(merchant, expired, out_request_no="ORD-X")))["coupon_id"]
    stock_row = db.session.get(SandboxWxpayStock, expired.id)
    stock_row.available_end_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    with pytest.raises(ValueError, match="EXPIRED"):
        sandbox.use_coupon(coupon_id)


def test_no_notification_without_a_notify_url(merchant, sent):
    sandbox.set_notify_url(merchant.mchid, None)
    sandbox.use_coupon(sent)
    assert notifications() == []


def test_failed_deliveries_follow_the_payment_notification_schedule_then_stop(sent):
    sandbox.use_coupon(sent)
    receiver = Receiver(*([500] * 16))
    now = utcnow()
    delays = []
    for _ in range(16):
        [row] = notifications()
        now = as_utc(row.next_attempt_at)
        sandbox.deliver_due_notifications(now=now, http=receiver.client())
        [row] = notifications()
        if row.status == "pending":
            delays.append(int((as_utc(row.next_attempt_at) - now).total_seconds()))

    assert delays == [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600]
    assert sum(delays) / 3600 == pytest.approx(24, abs=0.1)
    [row] = notifications()
    assert (row.status, row.attempts, row.last_http_status) == ("abandoned", 16, 500)
    assert len(receiver.requests) == 16
    assert sandbox.deliver_due_notifications(now=now + timedelta(days=2), http=receiver.client()) == []


def test_nothing_is_sent_before_its_time_and_204_counts_as_delivered(sent):
    sandbox.use_coupon(sent)
    receiver = Receiver(503, 204)
    sandbox.deliver_due_notifications(http=receiver.client())
    [row] = notifications()
    assert (row.status, row.attempts) == ("pending", 1)

    assert sandbox.deliver_due_notifications(now=utcnow() + timedelta(seconds=10), http=receiver.client()) == []
    assert len(receiver.requests) == 1

    assert sandbox.deliver_due_notifications(now=utcnow() + timedelta(seconds=16), http=receiver.client()) == [
        (row.id, "delivered")]
    [row] = notifications()
    assert (row.attempts, row.last_http_status) == (2, 204)
    assert [entry["status"] for entry in row.history] == [503, 204]
    bodies = {request.content for request in receiver.requests}
    signatures = {request.headers["Wechatpay-Signature"] for request in receiver.requests}
    assert len(bodies) == 1 and len(signatures) == 2  # the same event, signed afresh each time


def test_an_unreachable_notify_url_is_retried(sent):
    sandbox.use_coupon(sent)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    sandbox.deliver_due_notifications(http=httpx.Client(transport=httpx.MockTransport(refuse)))
    [row] = notifications()
    assert row.status == "pending" and row.last_http_status is None and "ConnectError" in row.last_error


def test_duplicate_mode_sends_the_same_event_twice(sent):
    sandbox.use_coupon(sent)
    sandbox.set_misbehaviour("notify_duplicate", times=1)
    receiver = Receiver(200, 200)

    sandbox.deliver_due_notifications(http=receiver.client())

    assert len(receiver.requests) == 2
    assert len({json.loads(request.content)["id"] for request in receiver.requests}) == 1


@pytest.mark.parametrize("mode", ["notify_bad_signature", "notify_signtest"])
def test_badly_signed_notifications_fail_our_reader(sent, direct_account, mode):
    sandbox.use_coupon(sent)
    sandbox.set_misbehaviour(mode, times=1)
    receiver = Receiver(200)

    sandbox.deliver_due_notifications(http=receiver.client())

    [request] = receiver.requests
    with pytest.raises(WechatPayError) as rejected:
        parse_use_notification(direct_account(), request.headers, request.content)
    assert rejected.value.code == "SIGN_ERROR"


# --- misbehaviour and the page ---------------------------------------------------------------------

def test_misbehaviour_is_counted_down_and_cleared(client, merchant, stock):
    sandbox.set_misbehaviour("5xx", times=1)
    first = post_send(client, merchant, send_body(merchant, stock))
    second = post_send(client, merchant, send_body(merchant, stock))
    assert (first.status_code, second.status_code) == (500, 200)
    assert sandbox.call_count() == 2

    sandbox.set_misbehaviour("notify_duplicate")
    assert sandbox.misbehaviour()["notify"]["mode"] == "notify_duplicate"
    sandbox.set_misbehaviour(None)
    assert sandbox.misbehaviour() == {"api": {}, "notify": {}}
    with pytest.raises(ValueError):
        sandbox.set_misbehaviour("explode")


def test_a_person_uses_a_coupon_on_the_page(client, merchant, stock, sent):
    page = client.get(PREFIX + "/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert stock.stock_id in html and sent in html and f'data-testid="use-{sent}"' in html

    answer = client.post(f"{PREFIX}/coupons/{sent}/use", data={"csrf_token": csrf_from(page)})

    assert answer.status_code == 302
    db.session.expire_all()
    assert db.session.execute(select(SandboxWxpayCoupon).filter_by(coupon_id=sent)).scalar_one().status == "USED"
    [row] = notifications()
    assert row.url == NOTIFY_URL and row.status == "pending"
    page = client.get(PREFIX + "/").get_data(as_text=True)
    assert f'data-testid="notification-{row.event_id}"' in page and f'data-testid="use-{sent}"' not in page


def test_a_stock_is_created_on_the_page_with_yuan_amounts(client, merchant):
    page = client.get(PREFIX + "/")
    answer = client.post(PREFIX + "/stocks", data={"csrf_token": csrf_from(page), "mchid": merchant.mchid,
                                                   "name": "满100减20", "coupon_amount": "20.00",
                                                   "transaction_minimum": "100", "max_coupons": "50",
                                                   "max_coupons_per_user": "2", "available_days": "7"})
    assert answer.status_code == 302
    stock = db.session.execute(select(SandboxWxpayStock).filter_by(name="满100减20")).scalar_one()
    assert (stock.coupon_amount_fen, stock.transaction_minimum_fen, stock.max_coupons) == (2000, 10000, 50)

    refused = client.post(PREFIX + "/stocks", data={"csrf_token": csrf_from(page), "mchid": merchant.mchid,
                                                    "coupon_amount": "20.001", "max_coupons": "5"},
                          follow_redirects=True)
    assert "批次未创建" in refused.get_data(as_text=True)  # the console speaks Chinese by default
    assert db.session.scalar(select(db.func.count()).select_from(SandboxWxpayStock)) == 1


def test_the_delivery_job_posts_over_http_and_is_off_without_sandboxes(app, merchant, sent, live_server):
    from jobs.sandbox_wechatpay import deliver_wechatpay_sandbox_notifications

    sandbox.set_notify_url(merchant.mchid, live_server + "/v3/certificates")  # a real socket that answers 405
    sandbox.use_coupon(sent)

    app.config["SANDBOXES_ENABLED"] = False
    try:
        assert deliver_wechatpay_sandbox_notifications() == {"skipped": True}
    finally:
        app.config["SANDBOXES_ENABLED"] = True
    assert deliver_wechatpay_sandbox_notifications() == {"attempted": 1, "delivered": 0}
    [row] = notifications()
    assert (row.status, row.attempts, row.last_http_status) == ("pending", 1, 405)
