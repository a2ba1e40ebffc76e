"""The 云数汇 client and the LKLAPI scheme: signatures checked against vectors made here with
`cryptography` and openssl (not by the code under test), every rejection, the answer mapping
against the sandbox, transient failures, the OpenID URL and the callback parsers."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from datetime import datetime, timezone

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sqlalchemy import select

from app.coupons.models import TunnelAccount
from app.extensions import db
from app.providers import lklapi
from app.providers.yunshuhui import (ACK_SUCCESS, PATH_ISSUE, CallbackFormatError, YunshuhuiClient, YunshuhuiError,
                                     YunshuhuiUnavailable, ack_fail, parse_issuance_callback,
                                     parse_redemption_callback, verify_callback)
from app.sandbox import yunshuhui as sandbox
from app.sandbox.yunshuhui_models import SandboxYshCoupon
from tests.coupons.ysh_sandbox import connect_ysh_account, ysh_live_site, ysh_transport  # noqa: F401

HEADER_FIELD = re.compile(r'(\w+)="([^"]*)"')


def _fields(header: str) -> dict[str, str]:
    return dict(HEADER_FIELD.findall(header))


def _raw_sign(key, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def _raw_verify(cert_pem: str, message: bytes, signature: str) -> bool:
    public_key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    try:
        public_key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001 - any failure is "does not verify"
        return False
    return True


@pytest.fixture(scope="module")
def own_key():
    """A key made with `cryptography` directly, as PEM, and its public key as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, private_pem, public_pem


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def account(app, bank) -> TunnelAccount:
    return connect_ysh_account(bank)


@pytest.fixture
def ysh(app, account):
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        yield client


ISSUE = {"activity_id": "A000000001", "owner_id": "OWNER001", "promotion_id": "PROMO-2026-0001",
         "channel_openid": "oYSH-test-openid-0001", "write_off_notify": "http://bank.test/writeoff",
         "post_notify": "http://bank.test/post"}


def coupons(**filters) -> list[SandboxYshCoupon]:
    db.session.expire_all()
    return list(db.session.execute(select(SandboxYshCoupon).filter_by(**filters)).scalars())


def issue(client: YunshuhuiClient, order: str, **changes):
    return client.issue(**{**ISSUE, "mer_order_id": order, **changes})


# ---- the scheme, against independent vectors ---------------------------------------------------

def test_request_signature_equals_one_made_with_cryptography_directly(own_key):
    key, private_pem, _ = own_key
    body = '{"req_time":"20261122100000","version":"3.0","req_data":{"member_id":"1234567890"}}'.encode()
    header = lklapi.request_authorization("OP00000001", "00dfba8194c41b84cf", private_pem, body,
                                          timestamp="1700000000", nonce="Nonce12345678")
    fields = _fields(header)
    text = b"OP00000001\n00dfba8194c41b84cf\n1700000000\nNonce12345678\n" + body + b"\n"
    assert header.startswith("LKLAPI-SHA256withRSA appid=")
    assert fields == {"appid": "OP00000001", "serial_no": "00dfba8194c41b84cf", "timestamp": "1700000000",
                      "nonce_str": "Nonce12345678", "signature": _raw_sign(key, text)}  # PKCS#1 v1.5 is deterministic


def test_request_signature_equals_one_made_by_openssl(own_key, tmp_path):
    _, private_pem, _ = own_key
    body = "中文 body".encode()
    (tmp_path / "key.pem").write_text(private_pem)
    (tmp_path / "text").write_bytes(b"app\nserial\n1700000001\nabcdefABCDEF12\n" + body + b"\n")
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(tmp_path / "key.pem"), str(tmp_path / "text")],
                               check=True, capture_output=True).stdout
    header = lklapi.request_authorization("app", "serial", private_pem, body, timestamp="1700000001",
                                          nonce="abcdefABCDEF12")
    assert _fields(header)["signature"] == base64.b64encode(signature).decode()


def test_empty_body_is_signed_as_an_empty_line(own_key):
    key, private_pem, _ = own_key
    header = lklapi.request_authorization("a", "s", private_pem, b"", timestamp="1", nonce="n" * 12)
    assert _fields(header)["signature"] == _raw_sign(key, b"a\ns\n1\nnnnnnnnnnnnn\n\n")


def test_callback_signed_by_hand_verifies_and_any_change_does_not(app, account):
    keys = sandbox.ensure_keys()
    notify_key = serialization.load_pem_private_key(keys["notify"].private_key.encode(), password=None)
    body = json.dumps({"callTradeNo": "ORDER1", "tradeStatus": "SUCCESS", "amount": 10.5}).encode()
    timestamp = str(int(time.time()))
    signature = _raw_sign(notify_key, f"{timestamp}\nNONCEnonce1234\n".encode() + body + b"\n")
    header = f'LKLAPI-SHA256withRSA timestamp="{timestamp}",nonce_str="NONCEnonce1234",signature="{signature}"'
    auth = verify_callback(account, header, body)
    assert (auth.timestamp, auth.nonce_str, auth.appid) == (timestamp, "NONCEnonce1234", None)
    squeezed = header.replace("LKLAPI-SHA256withRSA ", "LKLAPI-SHA256withRSA")  # no space after the scheme occurs
    assert verify_callback(account, squeezed, body).signature == signature
    reordered = f'LKLAPI-SHA256withRSA signature="{signature}", nonce_str="NONCEnonce1234", timestamp="{timestamp}"'
    assert verify_callback(account, reordered, body).nonce_str == "NONCEnonce1234"

    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, header, body.replace(b"SUCCESS", b"FAIL"))  # tampered body
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, header.replace(timestamp, str(int(timestamp) + 1)), body)  # tampered timestamp
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = _raw_sign(other, f"{timestamp}\nNONCEnonce1234\n".encode() + body + b"\n")
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, header.replace(signature, wrong), body)  # signed with another key
    platform_key = serialization.load_pem_private_key(keys["platform"].private_key.encode(), password=None)
    with pytest.raises(lklapi.SignatureError):  # the platform key is not the notification key
        verify_callback(account, header.replace(signature, _raw_sign(
            platform_key, f"{timestamp}\nNONCEnonce1234\n".encode() + body + b"\n")), body)


@pytest.mark.parametrize("signature", [
    "WECHATPAY/SIGNTEST/" + "A" * 300,  # the SIGNTEST probe of WeChat Pay's style
    "SIGNTEST", "", "not base64 !!", base64.b64encode(b"\0" * 256).decode(), "A" * 344,
])
def test_garbage_and_signtest_signatures_are_rejected(app, account, signature):
    body = b'{"callTradeNo":"X"}'
    header = f'LKLAPI-SHA256withRSA timestamp="{int(time.time())}",nonce_str="abcdefghijkl",signature="{signature}"'
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, header, body)


@pytest.mark.parametrize("header", [
    None, "", "Bearer abc", 'WECHATPAY2-SHA256-RSA2048 timestamp="1",nonce_str="abcdefghijkl",signature="x"',
    'LKLAPI-SHA256withRSA timestamp="1",signature="abc"',  # no nonce_str
])
def test_malformed_callback_headers_are_rejected(app, account, header):
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, header, b"{}")


def test_stale_and_future_callback_timestamps_and_bad_nonces_are_rejected(app, account):
    key = sandbox.ensure_keys()["notify"].private_key
    body = b'{"callTradeNo":"X","tradeStatus":"SUCCESS"}'
    old = lklapi.callback_authorization(key, body, timestamp=str(int(time.time()) - 301))
    with pytest.raises(lklapi.SignatureError, match="window"):
        verify_callback(account, old, body)
    ahead = lklapi.callback_authorization(key, body, timestamp=str(int(time.time()) + 400))
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, ahead, body)
    short = lklapi.callback_authorization(key, body, nonce="abc")
    with pytest.raises(lklapi.SignatureError, match="nonce"):
        verify_callback(account, short, body)
    assert verify_callback(account, lklapi.callback_authorization(key, body), body)
    account.notify_cert = None
    with pytest.raises(lklapi.SignatureError):
        verify_callback(account, lklapi.callback_authorization(key, body), body)


def _signed_answer(key, appid: str, serial: str, body: bytes, **override) -> dict[str, str]:
    timestamp, nonce = "1700000000", "ANSWERnonce123"
    headers = {"Lklapi-Appid": appid, "Lklapi-Serial": serial, "Lklapi-Timestamp": timestamp,
               "Lklapi-Nonce": nonce,
               "Lklapi-Signature": _raw_sign(key, f"{appid}\n{serial}\n{timestamp}\n{nonce}\n".encode() + body + b"\n")}
    headers.update(override)
    return headers


def test_response_verification_by_serial(own_key):
    key, _, _ = own_key
    cert_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "platform")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(cert_key.public_key())
            .serial_number(0xA1B2C3).not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
            .sign(cert_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    body = b'{"code":"000000","data":{}}'
    headers = httpx.Headers(_signed_answer(cert_key, "OP1", "a1b2c3", body))
    assert lklapi.verify_response(headers, body, {"A1B2C3": cert_pem}) == "a1b2c3"  # serial case does not matter
    assert lklapi.verify_response(headers, body, {"00a1b2c3": cert_pem})  # nor leading zeros
    with pytest.raises(lklapi.SignatureError, match="serial"):
        lklapi.verify_response(headers, body, {"ffff": cert_pem})  # unknown serial
    with pytest.raises(lklapi.SignatureError):
        lklapi.verify_response(headers, body + b" ", {"a1b2c3": cert_pem})  # tampered body
    wrong = httpx.Headers(_signed_answer(key, "OP1", "a1b2c3", body))  # signed by another key
    with pytest.raises(lklapi.SignatureError):
        lklapi.verify_response(wrong, body, {"a1b2c3": cert_pem})
    for missing in lklapi.RESPONSE_HEADERS:
        partial = httpx.Headers({k: v for k, v in headers.items() if k.lower() != missing.lower()})
        with pytest.raises(lklapi.SignatureError, match=missing):
            lklapi.verify_response(partial, body, {"a1b2c3": cert_pem})


def test_verify_request_checks_the_appid_serial_pair_and_nonce(own_key):
    key, private_pem, public_pem = own_key
    body = b'{"x":1}'
    header = lklapi.request_authorization("OP1", "s1", private_pem, body)
    assert lklapi.verify_request(header, body, lambda a, s: public_pem if (a, s) == ("OP1", "s1") else None).appid == "OP1"
    with pytest.raises(lklapi.SignatureError, match="unknown"):
        lklapi.verify_request(header, body, lambda a, s: None)
    with pytest.raises(lklapi.SignatureError):
        lklapi.verify_request(header, body + b"x", lambda a, s: public_pem)
    bad_nonce = lklapi.request_authorization("OP1", "s1", private_pem, body, nonce="short")
    with pytest.raises(lklapi.SignatureError, match="nonce"):
        lklapi.verify_request(bad_nonce, body, lambda a, s: public_pem)


# ---- the client's requests ---------------------------------------------------------------------

def test_the_client_signs_the_exact_envelope_it_sends(app, account, ysh):
    url, body, headers = ysh.signed_request(PATH_ISSUE, {"member_id": account.member_id})
    assert url == account.base_url + "/api/v3/yunshuhui/coupon/issue"
    envelope = json.loads(body)
    assert envelope["version"] == "3.0" and envelope["req_data"] == {"member_id": account.member_id}
    beijing = datetime.strptime(envelope["req_time"], "%Y%m%d%H%M%S")
    assert abs((beijing - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds() - 8 * 3600) < 120
    fields = _fields(headers["Authorization"])
    assert (fields["appid"], fields["serial_no"]) == (account.app_id, account.serial_no)
    assert re.fullmatch(r"[A-Za-z0-9]{12,32}", fields["nonce_str"])
    assert abs(int(fields["timestamp"]) - time.time()) < 5
    sandbox_merchant = sandbox._merchant(account.app_id, account.serial_no)
    text = "\n".join([fields["appid"], fields["serial_no"], fields["timestamp"], fields["nonce_str"]]).encode() \
        + b"\n" + body + b"\n"
    assert _raw_verify(sandbox_merchant.cert_pem, text, fields["signature"])


def test_for_account_refuses_incomplete_or_foreign_accounts(app, account):
    account.secrets = {}
    with pytest.raises(YunshuhuiError) as caught:
        YunshuhuiClient.for_account(account)
    assert caught.value.code == "CONFIG" and "private_key" in caught.value.message
    account.tunnel = "direct"
    with pytest.raises(YunshuhuiError):
        YunshuhuiClient.for_account(account)


def test_fields_are_checked_before_sending(ysh):
    calls = sandbox.call_count()
    for changes in ({"activity_id": "SHORT"}, {"owner_id": "123456789"}, {"promotion_id": "P" * 33},
                    {"channel_openid": ""}, {"mer_order_id": "M" * 65}):
        with pytest.raises(YunshuhuiError) as caught:
            issue(ysh, "ORDER-V", **changes)
        assert caught.value.code == "VALIDATION" and not isinstance(caught.value, YunshuhuiUnavailable)
    assert sandbox.call_count() == calls


# ---- answers ----------------------------------------------------------------------------------

def test_issue_success(ysh, account):
    answer = issue(ysh, "ORDER-S1")
    assert (answer.res_code, answer.trade_status, answer.fail_msg) == ("000000", "SUCCESS", None)
    assert answer.succeeded and not answer.pending and not answer.failed
    assert answer.mer_order_id == "ORDER-S1" and answer.third_coupon_id.startswith("CP") and answer.trade_no
    assert answer.batch_code == "BA000000001"
    assert answer.raw["channel_openid"] == ISSUE["channel_openid"]
    coupon = coupons(mer_order_id="ORDER-S1")[0]
    assert (coupon.member_id, coupon.post_notify, coupon.write_off_notify) == (
        account.member_id, "http://bank.test/post", "http://bank.test/writeoff")


def test_issue_process_and_fail(ysh):
    sandbox.update_settings(issue_mode="process")
    pending = issue(ysh, "ORDER-P1")
    assert (pending.res_code, pending.trade_status) == ("000000", "PROCESS") and pending.pending
    sandbox.update_settings(issue_mode="fail", fail_msg="活动已结束")
    failed = issue(ysh, "ORDER-F1")
    assert failed.failed and failed.res_code == "999999" and failed.fail_msg == "活动已结束"
    assert failed.third_coupon_id is None


def test_the_same_order_again_is_the_same_coupon_and_other_fields_are_refused(ysh):
    first = issue(ysh, "ORDER-IDEM")
    sandbox.update_settings(issue_mode="fail")  # would fail now, but the order is already made
    again = issue(ysh, "ORDER-IDEM")
    assert (again.third_coupon_id, again.trade_no, again.trade_status) == (first.third_coupon_id, first.trade_no,
                                                                           "SUCCESS")
    assert len(coupons(mer_order_id="ORDER-IDEM")) == 1
    with pytest.raises(YunshuhuiError) as caught:
        issue(ysh, "ORDER-IDEM", channel_openid="oYSH-someone-else")
    assert caught.value.code == "999999" and "重复" in caught.value.message
    assert not isinstance(caught.value, YunshuhuiUnavailable)


def test_out_of_stock_is_a_fail_answer(ysh):
    sandbox.define_activity("A000000002", face_value_fen=500, stock=1)
    assert issue(ysh, "ORDER-ST1", activity_id="A000000002").succeeded
    second = issue(ysh, "ORDER-ST2", activity_id="A000000002")
    assert second.failed and second.fail_msg == "库存不足"


def test_another_banks_member_id_is_refused(app, make, ysh):
    other = connect_ysh_account(make.org(kind="bank"))
    ysh.member_id = other.member_id  # our credentials, their member id
    with pytest.raises(YunshuhuiError) as caught:
        issue(ysh, "ORDER-X")
    assert caught.value.code == "999999" and "member_id" in caught.value.message


def test_query_follows_the_coupon_through_redemption(ysh):
    answer = issue(ysh, "ORDER-Q1")
    before = ysh.query(owner_id=ISSUE["owner_id"], mer_order_id="ORDER-Q1", activity_id=ISSUE["activity_id"],
                       trade_no=answer.trade_no)
    assert (before.trade_status, before.redemption_status, before.used_at, before.promo_amount_fen) == (
        "SUCCESS", None, None, None)
    coupon = coupons(mer_order_id="ORDER-Q1")[0]
    used_at = datetime(2026, 3, 1, 2, 30, 15, tzinfo=timezone.utc)
    sandbox.use_coupon(coupon.id, 5000, now=used_at)
    after = ysh.query(owner_id=ISSUE["owner_id"], mer_order_id="ORDER-Q1", activity_id=ISSUE["activity_id"])
    assert after.redemption_status == "USED" and after.used_at == used_at  # Beijing 10:30:15 on the wire
    assert after.raw["gmt_used"] == "2026-03-01 10:30:15"
    assert (after.promo_amount_fen, after.total_amount_fen, after.org_amount_fen) == (1000, 5000, 1000)
    missing = ysh.query(owner_id=ISSUE["owner_id"], mer_order_id="NO-SUCH-ORDER", activity_id=ISSUE["activity_id"])
    assert missing.not_found and missing.trade_status is None
    with pytest.raises(YunshuhuiError):
        ysh.query(owner_id="OTHER001", mer_order_id="ORDER-Q1", activity_id=ISSUE["activity_id"])


# ---- gateway refusals are permanent ------------------------------------------------------------

def test_wrong_key_is_refused_with_a_signed_gateway_answer(app, account):
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        client._private_key_pem = lklapi.new_key_pair("intruder")[0]
        with pytest.raises(YunshuhuiError) as caught:
            issue(client, "ORDER-W")
    assert caught.value.code == "BBS40102" and not isinstance(caught.value, YunshuhuiUnavailable)
    assert len(coupons()) == 0


def test_unknown_serial_and_unknown_appid_are_refused(app, account):
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        client.serial_no = "123abc"
        with pytest.raises(YunshuhuiError) as caught:
            issue(client, "ORDER-U")
        assert caught.value.code == "BBS40101"
        client.serial_no, client.app_id = account.serial_no, "OP-NOBODY"
        with pytest.raises(YunshuhuiError) as caught:
            issue(client, "ORDER-U")
        assert caught.value.code == "BBS40101"


def _post_raw(app, account, body: bytes, **auth) -> httpx.Response:
    header = lklapi.request_authorization(account.app_id, account.serial_no, account.secrets["private_key"], body,
                                          **auth)
    with httpx.Client(transport=ysh_transport(app)) as http:
        return http.post(account.base_url + PATH_ISSUE, content=body, headers={"Authorization": header})


def test_stale_timestamp_bad_nonce_and_replay_are_refused(app, account):
    body = json.dumps(lklapi.envelope({"member_id": account.member_id})).encode()
    stale = _post_raw(app, account, body, timestamp=str(int(time.time()) - 301))
    assert stale.status_code == 401 and stale.json()["code"] == "BBS40103"
    lklapi.verify_response(stale.headers, stale.content, account.platform_certs)  # refusals are signed too
    short = _post_raw(app, account, body, nonce="abc")
    assert short.json()["code"] == "BBS40104"
    first = _post_raw(app, account, body, nonce="Replayed0Nonce0001")
    assert first.status_code == 200 and first.json()["code"] == "999999"  # through the gateway; fields wrong
    replay = _post_raw(app, account, body, nonce="Replayed0Nonce0001")
    assert replay.status_code == 401 and replay.json()["code"] == "BBS40104"


def test_a_missing_or_malformed_authorization_and_envelope(app, account):
    with httpx.Client(transport=ysh_transport(app)) as http:
        bare = http.post(account.base_url + PATH_ISSUE, content=b"{}")
    assert bare.status_code == 401 and bare.json()["code"] == "BBS40100"
    not_v3 = _post_raw(app, account, json.dumps({"req_data": {}, "version": "2.0"}).encode())
    assert not_v3.status_code == 400 and not_v3.json()["code"] == "BBS40000"


# ---- transient failures ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["5xx", "timeout"])
def test_5xx_and_gateway_timeouts_are_unavailable_and_do_nothing(ysh, mode):
    sandbox.update_settings(api_mode=mode, api_times=1, api_latency_ms=0)
    with pytest.raises(YunshuhuiUnavailable) as caught:
        issue(ysh, "ORDER-5")
    assert caught.value.code in ("HTTP503", "HTTP504")
    assert len(coupons()) == 0
    assert issue(ysh, "ORDER-5").succeeded  # the next call behaves


def test_a_badly_signed_answer_is_unavailable_though_the_work_was_done(ysh):
    sandbox.update_settings(api_mode="bad_signature", api_times=1)
    with pytest.raises(YunshuhuiUnavailable) as caught:
        issue(ysh, "ORDER-BS")
    assert caught.value.code == "SIGNATURE"
    answer = ysh.query(owner_id=ISSUE["owner_id"], mer_order_id="ORDER-BS", activity_id=ISSUE["activity_id"])
    assert answer.trade_status == "SUCCESS"  # the query settles what the bad answer could not


def test_answers_from_an_unknown_platform_certificate_or_unsigned_are_unavailable(app, account):
    other_cert = lklapi.new_key_pair("not-the-platform")[1]
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        client.platform_certs = {lklapi.certificate_serial(other_cert): other_cert}
        with pytest.raises(YunshuhuiUnavailable, match="serial"):
            issue(client, "ORDER-C")
    unsigned = httpx.MockTransport(lambda request: httpx.Response(200, json={"code": "000000", "data": {}}))
    with YunshuhuiClient.for_account(account, transport=unsigned) as client:
        with pytest.raises(YunshuhuiUnavailable, match="Lklapi"):
            issue(client, "ORDER-C")
    not_json = httpx.MockTransport(lambda request: httpx.Response(200, content=b"<html>"))
    with YunshuhuiClient.for_account(account, transport=not_json) as client, pytest.raises(YunshuhuiUnavailable):
        issue(client, "ORDER-C")


def test_an_answer_for_another_order_or_with_an_unknown_status_is_unavailable(app, account):
    keys = sandbox.ensure_keys()
    platform_key = serialization.load_pem_private_key(keys["platform"].private_key.encode(), password=None)

    def answering(data: dict):
        def handler(request: httpx.Request) -> httpx.Response:
            body = json.dumps({"code": "000000", "msg": "ok", "data": data}).encode()
            return httpx.Response(200, content=body,
                                  headers=_signed_answer(platform_key, account.app_id, keys["platform"].serial, body))
        return httpx.MockTransport(handler)

    with YunshuhuiClient.for_account(account, transport=answering(
            {"resCode": "000000", "trade_status": "SUCCESS", "mer_order_id": "SOMEONE-ELSE"})) as client:
        with pytest.raises(YunshuhuiUnavailable, match="SOMEONE-ELSE"):
            issue(client, "ORDER-MINE")
    with YunshuhuiClient.for_account(account, transport=answering({"resCode": "000000", "trade_status": "WAIT"})) as c:
        with pytest.raises(YunshuhuiUnavailable, match="WAIT"):
            issue(c, "ORDER-MINE")
    with YunshuhuiClient.for_account(account, transport=answering({"resCode": "123456", "failMsg": "no"})) as client:
        answer = issue(client, "ORDER-MINE")
        assert answer.failed and answer.fail_msg == "no"  # non-zero resCode without a status is a FAIL


def test_connection_refused_is_unavailable(app, account):
    account.base_url = "http://127.0.0.1:9/sandbox/yunshuhui"
    with YunshuhuiClient.for_account(account, timeout=1.0) as client, pytest.raises(YunshuhuiUnavailable) as caught:
        issue(client, "ORDER-CR")
    assert caught.value.code == "CONNECTION"


def test_latency_beyond_the_timeout_is_unavailable_and_the_retry_finds_the_coupon(app, bank, ysh_live_site):
    account = connect_ysh_account(bank, site=ysh_live_site)
    sandbox.update_settings(api_mode="latency", api_times=1, api_latency_ms=800)
    started = time.monotonic()
    with YunshuhuiClient.for_account(account, timeout=0.25) as client:
        with pytest.raises(YunshuhuiUnavailable) as caught:
            issue(client, "ORDER-SLOW")
        assert caught.value.code == "TIMEOUT" and time.monotonic() - started < 0.8
        time.sleep(1.0)  # the slow call finishes its work
        again = issue(client, "ORDER-SLOW")  # the pipeline's retry with the same mer_order_id
    assert again.succeeded and len(coupons(mer_order_id="ORDER-SLOW")) == 1


def test_the_shared_http_client_is_one_per_origin(app, bank, ysh_live_site):
    account = connect_ysh_account(bank, site=ysh_live_site)
    first, second = YunshuhuiClient.for_account(account), YunshuhuiClient.for_account(account)
    assert first._http is second._http
    assert issue(first, "ORDER-SH1").succeeded and issue(second, "ORDER-SH2").succeeded
    first.close()  # closing a client on the shared pool leaves the pool open
    assert issue(second, "ORDER-SH3").succeeded


# ---- OpenID URL and callbacks --------------------------------------------------------------------

def test_openid_url(account, ysh):
    url = ysh.openid_url("https://hub.example/h5/openid?state=a b&x=1")
    assert url == account.openid_url + "?wmcb=https%3A%2F%2Fhub.example%2Fh5%2Fopenid%3Fstate%3Da%20b%26x%3D1"
    ysh.openid_page = "https://ysh.example/auth?member=1"
    assert ysh.openid_url("https://cb/").startswith("https://ysh.example/auth?member=1&wmcb=https%3A%2F%2Fcb%2F")
    ysh.openid_page = None
    with pytest.raises(YunshuhuiError):
        ysh.openid_url("https://cb/")


def test_parse_issuance_callback():
    body = json.dumps({"orgId": "1234567890", "callTradeNo": "ORDER-1", "amount": 12.34, "tradeStatus": "SUCCESS",
                       "failMsg": "", "tradeCreateTime": "2026-03-01 08:00:00", "tradePaymentTime": "20260301080005",
                       "sign": "opaque"}).encode()
    parsed = parse_issuance_callback(body)
    assert (parsed["mer_order_id"], parsed["trade_status"], parsed["amount_fen"], parsed["fail_msg"]) == (
        "ORDER-1", "SUCCESS", 1234, None)
    assert parsed["trade_created_at"] == datetime(2026, 3, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert parsed["trade_paid_at"] == datetime(2026, 3, 1, 0, 0, 5, tzinfo=timezone.utc)
    assert parsed["event_key"] == "ysh:issuance:ORDER-1:SUCCESS" and parsed["org_id"] == "1234567890"
    assert parsed["raw"]["amount"] == "12.34"  # exact, and JSON-storable
    assert parse_issuance_callback(b'{"callTradeNo":"O","amount":"0.1","tradeStatus":"FAIL","failMsg":"x"}')[
        "amount_fen"] == 10
    for bad in (b"not json", b"[]", b'{"tradeStatus":"SUCCESS"}', b'{"callTradeNo":"O","tradeStatus":"WAIT"}',
                b'{"callTradeNo":"O","tradeStatus":"SUCCESS","amount":"1.234"}',
                b'{"callTradeNo":"O","tradeStatus":"SUCCESS","tradeCreateTime":"yesterday"}'):
        with pytest.raises(CallbackFormatError):
            parse_issuance_callback(bad)


def test_parse_redemption_callback():
    payload = {"member_id": "1234567890", "owner_id": "OWNER001", "channel_openid": "oX", "promotion_id": "P",
               "third_coupon_id": "CP1", "activity_id": "A000000001", "promo_amount": 1000, "total_amount": "5000",
               "org_amount": "", "trade_no": "YT1", "mer_order_id": "ORDER-1", "gmt_used": "2026-01-01 00:00:01",
               "tradeStatus": "USED"}
    parsed = parse_redemption_callback(json.dumps(payload).encode())
    assert (parsed["promo_amount_fen"], parsed["total_amount_fen"], parsed["org_amount_fen"]) == (1000, 5000, None)
    assert parsed["used_at"] == datetime(2025, 12, 31, 16, 0, 1, tzinfo=timezone.utc)
    assert (parsed["redemption_status"], parsed["third_coupon_id"], parsed["merchant_no"]) == ("USED", "CP1", None)
    assert parsed["event_key"] == "ysh:redemption:ORDER-1:USED"
    expired = parse_redemption_callback(json.dumps({**payload, "tradeStatus": "EXPIRED", "promo_amount": ""}).encode())
    assert expired["redemption_status"] == "EXPIRED" and expired["promo_amount_fen"] is None
    for bad in ({**payload, "tradeStatus": "UNUSED"}, {**payload, "promo_amount": "10.00"},
                {**payload, "mer_order_id": "", "third_coupon_id": ""}, {**payload, "gmt_used": "01/01/2026"}):
        with pytest.raises(CallbackFormatError):
            parse_redemption_callback(json.dumps(bad).encode())


def test_acknowledgement_bodies():
    assert ACK_SUCCESS == {"code": "SUCCESS", "msg": "处理成功"}
    assert ack_fail("验签失败") == {"code": "FAIL", "msg": "验签失败"}
