"""The WeChat Pay v3 coupon client (on wechatpayv3) against the WeChat Pay sandbox over a real socket,
and the COUPON.USE notification reader against notifications built independently in the test."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from app.extensions import db
from app.providers.wechatpay import (SentCoupon, WechatCouponClient, WechatPayError, WechatPayUnavailable,
                                     parse_use_notification)
from app.sandbox import wechatpay as sandbox
from app.sandbox.wechatpay_models import SandboxWxpayCoupon, SandboxWxpayStock
from tests.providers.wechatpay_support import (APPID, direct_account, key_pair, live_server, merchant,  # noqa: F401
                                               merchant_keys, notification, notification_headers)

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.fixture
def stock(merchant):
    return sandbox.create_stock(merchant.mchid, coupon_amount_fen=1000, transaction_minimum_fen=5000, max_coupons=3,
                                max_coupons_per_user=2)


@pytest.fixture
def client(direct_account):
    return WechatCouponClient.for_account(direct_account())


def reload(stock: SandboxWxpayStock) -> SandboxWxpayStock:
    db.session.expire_all()
    return db.session.get(SandboxWxpayStock, stock.id)


def coupons_of(stock: SandboxWxpayStock) -> list[SandboxWxpayCoupon]:
    db.session.expire_all()
    return list(db.session.scalars(select(SandboxWxpayCoupon).filter_by(stock_pk=stock.id)))


# --- sending and querying ---------------------------------------------------------------------------

def test_send_coupon_goes_to_the_sandbox_and_answers_the_coupon_id(client, stock, merchant):
    sent = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD20261123000001")

    assert isinstance(sent, SentCoupon)
    assert sent.raw == {"coupon_id": sent.coupon_id}
    [coupon] = coupons_of(stock)
    assert (coupon.coupon_id, coupon.openid, coupon.appid, coupon.sender_mchid) == (sent.coupon_id, OPENID, APPID,
                                                                                   merchant.mchid)
    assert reload(stock).sent_count == 1


def test_send_coupon_is_idempotent_by_out_request_no(client, stock):
    first = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    again = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")

    assert again.coupon_id == first.coupon_id
    assert reload(stock).sent_count == 1 and len(coupons_of(stock)) == 1

    with pytest.raises(WechatPayError) as refused:  # the same number for another person is not a repeat
        client.send_coupon(openid="oAnotherPerson", stock_id=stock.stock_id, out_request_no="ORD-1")
    assert refused.value.code == "INVALID_REQUEST" and not isinstance(refused.value, WechatPayUnavailable)


def test_stock_exhaustion_is_a_permanent_error(client, stock):
    for n in range(3):
        client.send_coupon(openid=f"openid{n}", stock_id=stock.stock_id, out_request_no=f"ORD-{n}")

    with pytest.raises(WechatPayError) as exhausted:
        client.send_coupon(openid="openid9", stock_id=stock.stock_id, out_request_no="ORD-9")

    assert type(exhausted.value) is WechatPayError
    assert (exhausted.value.code, exhausted.value.http_status) == ("NOT_ENOUGH", 403)
    assert reload(stock).sent_count == 3


def test_per_user_limit_and_unknown_stock_are_permanent_errors(client, stock):
    client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-2")
    with pytest.raises(WechatPayError) as limited:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-3")
    assert limited.value.code == "RULELIMIT"

    with pytest.raises(WechatPayError) as unknown:
        client.send_coupon(openid=OPENID, stock_id="99999999", out_request_no="ORD-4")
    assert (unknown.value.code, unknown.value.http_status) == ("RESOURCE_NOT_EXISTS", 404)


def test_bad_parameters_are_refused_before_any_call(client, stock):
    calls = sandbox.call_count()
    for values in ({"openid": "", "stock_id": stock.stock_id, "out_request_no": "A"},
                   {"openid": "o/../x", "stock_id": stock.stock_id, "out_request_no": "A"},
                   {"openid": OPENID, "stock_id": stock.stock_id, "out_request_no": ""}):
        with pytest.raises(WechatPayError) as refused:
            client.send_coupon(**values)
        assert refused.value.code == "PARAM_ERROR"
    assert sandbox.call_count() == calls


def test_query_coupon_before_and_after_use(client, stock, merchant):
    sent = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")

    coupon = client.query_coupon(openid=OPENID, coupon_id=sent.coupon_id)
    assert coupon["status"] == "SENDED" and coupon["stock_id"] == stock.stock_id
    assert coupon["normal_coupon_information"] == {"coupon_amount": 1000, "transaction_minimum": 5000}
    assert "consume_information" not in coupon

    used = sandbox.use_coupon(sent.coupon_id, transaction_id="4200001234202611230000000001")
    coupon = client.query_coupon(openid=OPENID, coupon_id=sent.coupon_id)
    assert coupon["status"] == "USED"
    assert coupon["consume_information"]["transaction_id"] == "4200001234202611230000000001"
    assert coupon["consume_information"]["consume_mchid"] == merchant.mchid
    consumed = datetime.fromisoformat(coupon["consume_information"]["consume_time"])
    assert consumed.utcoffset().total_seconds() == 8 * 3600 and consumed == used.consume_time

    with pytest.raises(WechatPayError) as missing:  # another person's openid does not reach the coupon
        client.query_coupon(openid="oSomeoneElse", coupon_id=sent.coupon_id)
    assert missing.value.code == "RESOURCE_NOT_EXISTS"


def test_set_notify_url_reaches_the_sandbox(client, merchant):
    answer = client.set_notify_url("https://hub.example.com/notify/wechatpay/1")

    assert answer["notify_url"] == "https://hub.example.com/notify/wechatpay/1"
    db.session.expire_all()
    assert sandbox.merchant_by_mchid(merchant.mchid).notify_url == "https://hub.example.com/notify/wechatpay/1"


# --- certificates -------------------------------------------------------------------------------

def test_platform_certificate_is_downloaded_when_none_is_stored(direct_account, stock, merchant):
    client = WechatCouponClient.for_account(direct_account(platform_certs={}))

    sent = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")

    assert sent.coupon_id
    assert client.platform_certificates() == {merchant.platform_serial: merchant.platform_cert}


def test_a_client_with_the_wrong_apiv3_key_finds_no_platform_certificate(direct_account, merchant, stock):
    account = direct_account(platform_certs={}, secrets={"private_key": merchant.keys.private_pem,
                                                         "apiv3_key": "x" * 32})
    with pytest.raises(WechatPayUnavailable) as failed:
        WechatCouponClient.for_account(account).send_coupon(openid=OPENID, stock_id=stock.stock_id,
                                                           out_request_no="ORD-1")
    assert failed.value.code == "NO_PLATFORM_CERT"
    assert coupons_of(stock) == []


def test_an_answer_from_an_unstored_serial_makes_the_library_fetch_the_certificates(direct_account, stock):
    stranger = key_pair("not the platform")
    client = WechatCouponClient.for_account(direct_account(platform_certs={stranger.serial: stranger.cert_pem}))

    # The answer's serial is unknown, so the library downloads the real platform certificate and trusts that.
    sent = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert sent.coupon_id


# --- transient failures -------------------------------------------------------------------------

def test_5xx_is_transient_and_does_no_work(client, stock):
    sandbox.set_misbehaviour("5xx", times=1)

    with pytest.raises(WechatPayUnavailable) as failed:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")

    assert (failed.value.code, failed.value.http_status) == ("SYSTEM_ERROR", 500)
    assert reload(stock).sent_count == 0
    assert client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1").coupon_id


def test_timeout_is_transient_and_a_retry_with_the_same_number_gets_the_same_coupon(direct_account, stock):
    client = WechatCouponClient.for_account(direct_account(), timeout=(2, 0.3))
    sandbox.set_misbehaviour("latency", times=1, latency_ms=900)  # the sandbox works, we stop waiting

    with pytest.raises(WechatPayUnavailable) as failed:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert failed.value.code == "TIMEOUT"
    time.sleep(1)  # the slow answer finishes its work

    retried = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    [coupon] = coupons_of(stock)
    assert retried.coupon_id == coupon.coupon_id and reload(stock).sent_count == 1


@pytest.mark.parametrize("mode", ["bad_signature", "signtest"])
def test_an_answer_whose_signature_fails_is_transient(client, stock, mode):
    sandbox.set_misbehaviour(mode, times=1)

    with pytest.raises(WechatPayUnavailable) as failed:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert failed.value.code == "SIGN_ERROR"

    [coupon] = coupons_of(stock)  # the work was done; the retry gets the same coupon, not a second one
    retried = client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert retried.coupon_id == coupon.coupon_id
    assert reload(stock).sent_count == 1


def test_an_unreachable_gateway_is_transient(direct_account, stock):
    client = WechatCouponClient.for_account(direct_account(base_url="http://127.0.0.1:9/sandbox/wechatpay"))
    with pytest.raises(WechatPayUnavailable) as failed:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert failed.value.code == "CONNECTION_ERROR"


def test_requests_signed_with_another_key_are_refused_permanently(direct_account, stock):
    impostor = key_pair("impostor")
    client = WechatCouponClient.for_account(direct_account(secrets={"private_key": impostor.private_pem,
                                                                    "apiv3_key": "k" * 32}))
    with pytest.raises(WechatPayError) as refused:
        client.send_coupon(openid=OPENID, stock_id=stock.stock_id, out_request_no="ORD-1")
    assert (refused.value.code, refused.value.http_status) == ("SIGN_ERROR", 401)
    assert not isinstance(refused.value, WechatPayUnavailable)
    assert coupons_of(stock) == []


def test_for_account_needs_a_complete_direct_account(direct_account, merchant):
    account = direct_account()
    account.tunnel = "yunshuhui"
    with pytest.raises(WechatPayError, match="not a WeChat Pay direct account"):
        WechatCouponClient.for_account(account)
    account.tunnel = "direct"
    account.secrets = {"private_key": merchant.keys.private_pem, "apiv3_key": "too-short"}
    with pytest.raises(WechatPayError) as invalid:
        WechatCouponClient.for_account(account)
    assert invalid.value.code == "ACCOUNT_INVALID"


# --- COUPON.USE notifications (built here, independently) ---------------------------------------

RESOURCE = {
    "stock_creator_mchid": "1900000109", "stock_id": "98765432", "coupon_id": "12345678901", "coupon_name": "满50减10",
    "status": "USED", "coupon_type": "NORMAL", "no_cash": False, "singleitem": False,
    "normal_coupon_information": {"coupon_amount": 1000, "transaction_minimum": 5000},
    "consume_information": {"consume_time": "2026-11-23T20:58:27+08:00", "consume_mchid": "1900000109",
                            "transaction_id": "4200001234202611230000000001", "goods_detail": []},
}


@pytest.fixture
def account(direct_account):
    return direct_account()


def test_a_genuine_notification_is_read(account, merchant):
    body = notification(merchant, RESOURCE, event_id="EV-1")

    event = parse_use_notification(account, notification_headers(merchant, body), body)

    assert {key: event[key] for key in ("coupon_id", "stock_id", "status", "consume_mchid", "transaction_id",
                                        "event_id")} == {
        "coupon_id": "12345678901", "stock_id": "98765432", "status": "USED", "consume_mchid": "1900000109",
        "transaction_id": "4200001234202611230000000001", "event_id": "EV-1"}
    assert event["consume_time"] == datetime(2026, 11, 23, 12, 58, 27, tzinfo=timezone.utc)
    assert event["resource"] == RESOURCE


def test_headers_are_read_in_any_case_and_serials_in_any_spelling(account, merchant):
    body = notification(merchant, RESOURCE)
    headers = {key.lower(): value for key, value in notification_headers(merchant, body).items()}
    headers["wechatpay-serial"] = "000" + merchant.platform_serial.lower()

    assert parse_use_notification(account, headers, body)["coupon_id"] == "12345678901"


def test_a_tampered_body_is_rejected(account, merchant):
    body = notification(merchant, RESOURCE)
    headers = notification_headers(merchant, body)
    tampered = body.replace(b'"EV-2026112300001"', b'"EV-2026112300002"')

    with pytest.raises(WechatPayError) as rejected:
        parse_use_notification(account, headers, tampered)
    assert rejected.value.code == "SIGN_ERROR"


def test_a_signtest_probe_is_rejected_even_when_the_rest_would_verify(account, merchant):
    body = notification(merchant, RESOURCE)
    genuine = notification_headers(merchant, body)
    probe = dict(genuine, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + genuine["Wechatpay-Signature"]})

    with pytest.raises(WechatPayError, match="SIGNTEST") as rejected:
        parse_use_notification(account, probe, body)
    assert rejected.value.code == "SIGN_ERROR"


def test_a_signature_by_another_key_or_serial_is_rejected(account, merchant):
    body = notification(merchant, RESOURCE)
    stranger = key_pair("stranger")
    for headers in (notification_headers(merchant, body, private_pem=stranger.private_pem),
                    notification_headers(merchant, body, private_pem=stranger.private_pem, serial=stranger.serial)):
        with pytest.raises(WechatPayError) as rejected:
            parse_use_notification(account, headers, body)
        assert rejected.value.code == "SIGN_ERROR"


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_or_future_timestamp_is_rejected(account, merchant, skew):
    body = notification(merchant, RESOURCE)
    sent_at = int(time.time())
    headers = notification_headers(merchant, body, timestamp=sent_at)

    with pytest.raises(WechatPayError) as rejected:
        parse_use_notification(account, headers, body, now=sent_at + skew)
    assert rejected.value.code == "TIMESTAMP_EXPIRED"
    edge = sent_at + (300 if skew > 0 else -300)  # at the edge of the window the same notification is fine
    assert parse_use_notification(account, headers, body, now=edge)["coupon_id"] == "12345678901"
    with pytest.raises(WechatPayError):  # and by default "now" is the clock
        parse_use_notification(account, notification_headers(merchant, body, timestamp=sent_at - skew * 2), body)


def test_a_resource_sealed_with_another_apiv3_key_is_rejected(account, merchant):
    body = notification(merchant, RESOURCE, apiv3_key="y" * 32)

    with pytest.raises(WechatPayError) as rejected:
        parse_use_notification(account, notification_headers(merchant, body), body)
    assert rejected.value.code == "DECRYPT_ERROR"


def test_other_events_and_missing_headers_are_rejected(account, merchant):
    body = notification(merchant, RESOURCE, event_type="TRANSACTION.SUCCESS")
    with pytest.raises(WechatPayError) as other:
        parse_use_notification(account, notification_headers(merchant, body), body)
    assert other.value.code == "UNSUPPORTED_EVENT"

    body = notification(merchant, RESOURCE)
    headers = notification_headers(merchant, body)
    del headers["Wechatpay-Nonce"]
    with pytest.raises(WechatPayError) as missing:
        parse_use_notification(account, headers, body)
    assert missing.value.code == "SIGN_ERROR"


def test_the_resource_decrypts_to_exactly_what_was_sealed(account, merchant):
    resource = dict(RESOURCE, coupon_name="含中文的券名 ✓")
    body = notification(merchant, resource)
    assert "含中文的券名".encode() not in body and b"4200001234202611230000000001" not in body  # sealed, not plain

    assert parse_use_notification(account, notification_headers(merchant, body), body)["resource"] == resource
