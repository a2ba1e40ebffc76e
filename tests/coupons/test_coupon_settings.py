"""Coupon tunnel accounts and bank API clients: PEM checks with clear messages, secrets encrypted
and never shown, generated key pairs, the sandbox connection, audit rows, tenancy, permissions."""
from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select, text

from app.core.audit import AuditEvent
from app.coupons import bank_auth, settings
from app.coupons.models import BankApiClient, TunnelAccount
from app.extensions import db
from tests.helpers import csrf_from, htmx_headers


# --- keys and certificates made here, independently of the code under test ---------------------

def key_and_cert(name: str = "test", days: int = 365, bits: int = 2048, serial: int | None = None):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(now - timedelta(days=400)).not_valid_after(now + timedelta(days=days))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return key, key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), format(cert.serial_number, "x")


def signature_ok(cert_pem: str, message: bytes, signature_b64: str) -> bool:
    public = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    try:
        public.verify(base64.b64decode(signature_b64), message, padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


def sign(key, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


PLATFORM = key_and_cert("云数汇 platform")
NOTIFY = key_and_cert("云数汇 notify")
OURS = key_and_cert("our key")
BANK_KEY = key_and_cert("bank back-end")


# --- fixtures ---------------------------------------------------------------------------------

def token(client) -> str:
    return csrf_from(client.get("/dashboard"))


def login(client, auth, username: str) -> None:
    assert auth.login(username).status_code == 302
    client.post("/language", data={"locale": "en", "csrf_token": token(client)})  # messages asserted in English


@pytest.fixture
def banks(make):
    return make.org(kind="bank", name="甲银行"), make.org(kind="bank", name="乙银行")


@pytest.fixture
def bank_admin(client, auth, make, banks):
    operator = make.operator(banks[0], roles=("org_admin",), username="bank_a")
    login(client, auth, "bank_a")
    return operator


def post(client, url, data, target="modal-content"):
    return client.post(url, data={**data, "csrf_token": token(client)},
                       headers=htmx_headers(target=target) if target else {})


def field_error(response, name: str) -> str:
    html = response.get_data(as_text=True)
    block = re.search(rf'class="mb-3 field-{re.escape(name)}">(.*?)data-field-error>([^<]*)<', html, re.S)
    return block.group(2).strip() if block else ""


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def yunshuhui_form(org, **changes):
    return {"org_id": org.id, "tunnel": "yunshuhui", "base_url": "https://s2.lakala.example/", "app_id": "OP00000003",
            "member_id": "1234567890123", "openid_url": "https://ysh.example/openid", "platform_certs": PLATFORM[2],
            "notify_cert": NOTIFY[2], "private_key": OURS[1], "our_cert": OURS[2], **changes}


def account_of(org) -> TunnelAccount:
    return db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == org.id)).scalar_one()


# --- tunnel accounts --------------------------------------------------------------------------

def test_a_yunshuhui_account_is_saved_with_secrets_encrypted_and_never_shown(client, bank_admin, banks):
    response = post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0]))
    assert response.status_code == 204 and "tunnels-changed" in response.headers["HX-Trigger"]
    account = account_of(banks[0])
    assert account.base_url == "https://s2.lakala.example" and account.serial_no == OURS[3]
    assert list(account.platform_certs) == [PLATFORM[3]]
    assert settings.describe_certificate(account.notify_cert).serial == NOTIFY[3]
    assert "PRIVATE KEY" in account.secrets["private_key"] and account.secrets["certificate"]
    raw = db.session.execute(text("SELECT secrets_enc FROM tunnel_accounts")).scalar_one()
    assert raw.startswith("v1:") and "PRIVATE" not in raw
    page = client.get("/coupons/settings/tunnels").get_data(as_text=True)
    fingerprint = settings.key_fingerprint(OURS[2])
    assert fingerprint in page and "PRIVATE KEY" not in page and OURS[3] in page
    edit = client.get(f"/coupons/settings/tunnels/{account.id}/edit", headers=htmx_headers(target="modal-content"))
    assert "PRIVATE KEY" not in edit.get_data(as_text=True) and fingerprint in edit.get_data(as_text=True)
    [event] = events("tunnel_account.save")
    assert "PRIVATE" not in json.dumps(event.after) and event.after["secrets_changed"] == ["certificate", "private_key"]
    assert event.after["private_key_fingerprint"] == fingerprint and event.org_id == banks[0].id


def test_generating_our_key_pair_offers_our_certificate(client, bank_admin, banks):
    form = yunshuhui_form(banks[0], private_key="", our_cert="", generate_key_pair="y")
    response = post(client, "/coupons/settings/tunnels/new", form)
    assert response.status_code == 200 and 'data-testid="tunnel-saved"' in response.get_data(as_text=True)
    account = account_of(banks[0])
    download = client.get(f"/coupons/settings/tunnels/{account.id}/certificate")
    assert download.status_code == 200 and download.headers["Content-Disposition"].endswith(f'{account.serial_no}.pem"')
    cert_pem = download.get_data(as_text=True)
    assert format(x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "x") == account.serial_no
    message = b"a\nb\n"
    key = serialization.load_pem_private_key(account.secrets["private_key"].encode(), password=None)
    assert signature_ok(cert_pem, message, sign(key, message))  # the stored key is the certificate's


def _expired_cert() -> str:
    return key_and_cert("old", days=-1)[2]


def _encrypted_key() -> str:
    return OURS[0].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.BestAvailableEncryption(b"pw")).decode()


def _ec_key() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.mark.parametrize("changes, field, message", [
    ({"platform_certs": "hello"}, "platform_certs", "not a PEM certificate"),
    ({"platform_certs": OURS[1]}, "platform_certs", "private key, not a certificate"),
    ({"platform_certs": PLATFORM[2][:200] + "\n-----END CERTIFICATE-----"}, "platform_certs", "could not be read"),
    ({"platform_certs": None}, "platform_certs", "expired on"),
    ({"platform_certs": ""}, "platform_certs", "Paste the 云数汇 platform certificate"),
    ({"notify_cert": ""}, "notify_cert", "notification certificate"),
    ({"notify_cert": PLATFORM[2] + NOTIFY[2]}, "notify_cert", "exactly one certificate"),
    ({"private_key": PLATFORM[2], "our_cert": ""}, "private_key", "a certificate"),
    ({"private_key": None, "our_cert": ""}, "private_key", "protected by a password"),
    ({"private_key": _ec_key(), "our_cert": ""}, "private_key", "Only RSA keys"),
    ({"private_key": key_and_cert(bits=1024)[1], "our_cert": ""}, "private_key", "at least 2048"),
    ({"private_key": "", "our_cert": ""}, "private_key", "generate a key pair"),
    ({"our_cert": PLATFORM[2]}, "our_cert", "not the one of our private key"),
    ({"our_cert": "", "serial_no": ""}, "serial_no", "serial number of our certificate"),
    ({"our_cert": "", "serial_no": "xyz"}, "serial_no", "hexadecimal"),
    ({"base_url": "ftp://x"}, "base_url", "http:// or https://"),
    ({"member_id": "123"}, "member_id", "10 to 20"),
])
def test_bad_certificates_and_keys_are_refused_with_clear_messages(client, bank_admin, banks, changes, field, message):
    if changes.get("platform_certs", "") is None:
        changes["platform_certs"] = _expired_cert()
    if changes.get("private_key", "") is None:
        changes["private_key"] = _encrypted_key()
    response = post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0], **changes))
    assert response.status_code == 422
    assert message in field_error(response, field)
    assert db.session.execute(select(func.count()).select_from(TunnelAccount)).scalar_one() == 0
    pasted_key = re.search(r'<textarea[^>]*name="private_key"[^>]*>(.*?)</textarea>', response.get_data(as_text=True), re.S)
    assert pasted_key.group(1).strip() == ""  # a pasted private key is never written back into the page


def test_a_pasted_key_without_its_certificate_uses_the_typed_serial(client, bank_admin, banks):
    post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0], our_cert="", serial_no="00A1B2C3"))
    account = account_of(banks[0])
    assert account.serial_no == "00a1b2c3" and "certificate" not in account.secrets


def test_one_account_per_bank_and_tunnel(client, bank_admin, banks):
    post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0]))
    again = post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0]))
    assert again.status_code == 422 and "already has" in field_error(again, "tunnel")


def test_edit_keeps_blank_secrets_and_adds_platform_certificates(client, bank_admin, banks):
    post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0]))
    account = account_of(banks[0])
    second = key_and_cert("云数汇 platform 2")
    response = post(client, f"/coupons/settings/tunnels/{account.id}/edit",
                    {"base_url": "https://s3.lakala.example", "app_id": "OP00000003", "member_id": "1234567890123",
                     "platform_certs": second[2], "notify_cert": "", "private_key": "", "our_cert": ""})
    assert response.status_code == 204
    db.session.expire_all()
    account = db.session.get(TunnelAccount, account.id)
    assert sorted(account.platform_certs) == sorted([PLATFORM[3], second[3]])
    assert account.serial_no == OURS[3] and settings.key_fingerprint(account.secrets["private_key"]) == \
        settings.key_fingerprint(OURS[2])
    edit_event = events("tunnel_account.save")[-1]
    assert edit_event.before["base_url"] == "https://s2.lakala.example" and "secrets_changed" not in edit_event.after
    # Removing a certificate: allowed while another remains, audited; the last one stays.
    assert post(client, f"/coupons/settings/tunnels/{account.id}/certificates/remove", {"serial": PLATFORM[3]},
                target=None).status_code == 302
    post(client, f"/coupons/settings/tunnels/{account.id}/certificates/remove", {"serial": second[3]}, target=None)
    db.session.expire_all()
    assert list(db.session.get(TunnelAccount, account.id).platform_certs) == [second[3]]
    assert events("tunnel_account.remove_certificate")[0].after == {"platform_cert_serials": [second[3]]}


def test_a_new_key_drops_the_certificate_of_the_old_one(banks):
    saved = settings.save_tunnel_account(banks[0], "yunshuhui", settings.TunnelDetails(
        base_url="https://x.example", app_id="OP1", member_id="1234567890", platform_certs_pem=PLATFORM[2],
        notify_cert_pem=NOTIFY[2], private_key_pem=OURS[1], our_cert_pem=OURS[2]))
    other = key_and_cert("other")
    settings.save_tunnel_account(banks[0], "yunshuhui", settings.TunnelDetails(
        base_url="https://x.example", app_id="OP1", member_id="1234567890", private_key_pem=other[1],
        serial_no="abc"), saved.account)
    assert "certificate" not in saved.account.secrets and saved.account.serial_no == "abc"


def test_a_direct_account_needs_a_32_character_apiv3_key(client, bank_admin, banks):
    form = {"org_id": banks[0].id, "tunnel": "direct", "base_url": "https://api.mch.weixin.qq.com",
            "app_id": "wx1234567890abcdef", "member_id": "1900000001", "private_key": OURS[1], "our_cert": OURS[2]}
    short = post(client, "/coupons/settings/tunnels/new", {**form, "apiv3_key": "short"})
    assert short.status_code == 422 and "exactly 32 characters (5 given)" in field_error(short, "apiv3_key")
    assert "short" not in short.get_data(as_text=True)  # a secret is never written back
    assert post(client, "/coupons/settings/tunnels/new", {**form, "apiv3_key": "k" * 32}).status_code == 204
    account = account_of(banks[0])
    assert account.serial_no == OURS[3].upper() and account.secrets["apiv3_key"] == "k" * 32
    assert account.platform_certs == {} and account.notify_cert is None


def test_disable_and_enable_a_tunnel_account(client, bank_admin, banks):
    post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[0]))
    account = account_of(banks[0])
    post(client, f"/coupons/settings/tunnels/{account.id}/status", {"status": "disabled"}, target=None)
    db.session.refresh(account)
    assert account.status == "disabled" and events("tunnel_account.disable")[0].org_id == banks[0].id
    post(client, f"/coupons/settings/tunnels/{account.id}/status", {"status": "active"}, target=None)
    db.session.refresh(account)
    assert account.status == "active" and len(events("tunnel_account.enable")) == 1


def fake_yunshuhui(account_cert: str, appid: str, platform_key, platform_serial: str, tamper: bool = False):
    """A stand-in for 云数汇: checks our five-line signature, answers "no such order" signed with its key."""

    def handle(request: httpx.Request) -> httpx.Response:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', request.headers["Authorization"]))
        signed = "".join(f"{fields[k]}\n" for k in ("appid", "serial_no", "timestamp", "nonce_str")).encode() + \
            request.content + b"\n"
        if not signature_ok(account_cert, signed, fields["signature"]):
            body = b'{"code":"BBS40001","msg":"signature"}'
            status = 401
        else:
            body = json.dumps({"code": "000000", "msg": "ok", "data": {"resCode": "100001", "failMsg": "none"}}).encode()
            status = 200
        ts, nonce = "1700000000", "abcdefabcdef1234"
        signature = sign(platform_key, f"{appid}\n{platform_serial}\n{ts}\n{nonce}\n".encode() + body + b"\n")
        if tamper:
            signature = sign(platform_key, b"something else")
        headers = {"Lklapi-Appid": appid, "Lklapi-Serial": platform_serial, "Lklapi-Timestamp": ts,
                   "Lklapi-Nonce": nonce, "Lklapi-Signature": signature}
        return httpx.Response(status, content=body, headers=headers)

    return httpx.MockTransport(handle)


def test_check_connection_proves_both_signatures(banks):
    saved = settings.save_tunnel_account(banks[0], "yunshuhui", settings.TunnelDetails(
        base_url="https://ysh.example", app_id="OP00000003", member_id="1234567890123",
        platform_certs_pem=PLATFORM[2], notify_cert_pem=NOTIFY[2], private_key_pem=OURS[1], our_cert_pem=OURS[2]))
    account = saved.account
    good = settings.check_connection(account, fake_yunshuhui(OURS[2], "OP00000003", PLATFORM[0], PLATFORM[3]))
    assert good.ok
    forged = settings.check_connection(account, fake_yunshuhui(OURS[2], "OP00000003", PLATFORM[0], PLATFORM[3], True))
    assert not forged.ok
    refused = settings.check_connection(account, fake_yunshuhui(BANK_KEY[2], "OP00000003", PLATFORM[0], PLATFORM[3]))
    assert not refused.ok


def test_connect_a_bank_to_the_wechat_pay_sandbox(client, make, auth, banks):
    from app.sandbox.wechatpay import merchant_by_mchid

    make.operator(make.platform(), roles=("platform_admin",), username="root")
    login(client, auth, "root")
    page = client.get("/coupons/settings/tunnels").get_data(as_text=True)
    assert 'data-testid="connect-sandbox"' in page
    response = post(client, "/coupons/settings/tunnels/sandbox", {"org_id": banks[1].id, "tunnel": "direct"})
    assert response.status_code == 204
    account = account_of(banks[1])
    assert account.base_url.endswith("/sandbox/wechatpay") and len(account.secrets["apiv3_key"]) == 32
    merchant = merchant_by_mchid(account.member_id)
    assert merchant.merchant_serial_no == account.serial_no
    assert list(account.platform_certs) == [merchant.platform_serial]
    assert events("tunnel_account.sandbox")[0].org_id == banks[1].id


def test_the_sandbox_button_is_hidden_when_sandboxes_are_off(client, bank_admin, app, monkeypatch):
    monkeypatch.setitem(app.config, "SANDBOXES_ENABLED", False)
    assert 'data-testid="connect-sandbox"' not in client.get("/coupons/settings/tunnels").get_data(as_text=True)
    assert client.get("/coupons/settings/tunnels/sandbox").status_code == 404


# --- tenancy and permissions ------------------------------------------------------------------

def test_a_bank_admin_sees_and_acts_on_their_own_bank_only(client, bank_admin, banks):
    settings.save_tunnel_account(banks[1], "yunshuhui", settings.TunnelDetails(
        base_url="https://b.example", app_id="OPOTHERBANK2", member_id="9999999999", platform_certs_pem=PLATFORM[2],
        notify_cert_pem=NOTIFY[2], generate_key_pair=True))
    other = account_of(banks[1])
    page = client.get("/coupons/settings/tunnels").get_data(as_text=True)
    assert "乙银行" not in page and "OPOTHERBANK2" not in page and f"tunnel-yunshuhui-{banks[1].id}" not in page
    assert client.get(f"/coupons/settings/tunnels/{other.id}/certificate").status_code == 404
    assert post(client, f"/coupons/settings/tunnels/{other.id}/status", {"status": "disabled"}, target=None
                ).status_code == 404
    refused = post(client, "/coupons/settings/tunnels/new", yunshuhui_form(banks[1]))
    assert refused.status_code in (404, 422)
    assert db.session.execute(select(func.count()).select_from(TunnelAccount)).scalar_one() == 1
    created = post(client, "/coupons/settings/api-clients/new", {"org_id": banks[1].id, "name": "x",
                                                                 "client_cert": BANK_KEY[2], "rate_limit_per_minute": 10})
    assert created.status_code in (404, 422) and not db.session.execute(select(BankApiClient.id)).first()


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize("url", ["/coupons/settings/tunnels", "/coupons/settings/tunnels/new",
                                 "/coupons/settings/api-clients", "/coupons/settings/api-clients/new"])
def test_settings_need_coupons_configure(client, auth, make, banks, role, url):
    make.operator(banks[0], roles=(role,), username="someone")
    login(client, auth, "someone")
    assert client.get(url).status_code == 403
    assert "/coupons/settings/" not in client.get("/dashboard").get_data(as_text=True)


# --- bank API clients -------------------------------------------------------------------------

def create_client(client, org, **changes):
    data = {"org_id": org.id, "name": "H5 券系统", "client_cert": BANK_KEY[2], "rate_limit_per_minute": 600,
            "allowed_hosts": "h5.bank.example\n*.bank.example:8443", **changes}
    return post(client, "/coupons/settings/api-clients/new", data)


def test_an_api_client_gets_an_appid_and_a_key_pair_of_ours(client, bank_admin, banks):
    response = create_client(client, banks[0])
    assert response.status_code == 200 and 'data-testid="client-created"' in response.get_data(as_text=True)
    api_client = db.session.execute(select(BankApiClient)).scalar_one()
    assert re.fullmatch(r"BK[0-9A-Z]{14}", api_client.app_id) and api_client.app_id in response.get_data(as_text=True)
    assert api_client.client_serial_no == BANK_KEY[3] and api_client.rate_limit_per_minute == 600
    assert api_client.allowed_hosts == ["h5.bank.example", "*.bank.example:8443"]
    our_cert = client.get(f"/coupons/settings/api-clients/{api_client.id}/certificate").get_data(as_text=True)
    key = serialization.load_pem_private_key(api_client.our_private_key.encode(), password=None)
    assert signature_ok(our_cert, b"x\n", sign(key, b"x\n"))
    assert "PRIVATE" not in db.session.execute(text("SELECT our_private_key_enc FROM bank_api_clients")).scalar_one()
    assert events("bank_api_client.create")[0].after["client_serial_no"] == BANK_KEY[3]


def test_a_request_signed_as_the_help_panel_says_authenticates(client, bank_admin, banks):
    create_client(client, banks[0])
    api_client = db.session.execute(select(BankApiClient)).scalar_one()
    page = client.get(f"/coupons/settings/api-clients/{api_client.id}").get_data(as_text=True)
    shown = re.search(r'data-testid="signed-text">(.*?)</pre>', page, re.S).group(1).split("\n")
    assert shown[:2] == [f"{api_client.app_id}\\n", f"{api_client.client_serial_no}\\n"]
    body, ts, nonce = b'{"callTradeNo":"B1"}', str(int(datetime.now().timestamp())), "Nonce1234567890ab"
    signature = sign(BANK_KEY[0], f"{api_client.app_id}\n{api_client.client_serial_no}\n{ts}\n{nonce}\n".encode()
                     + body + b"\n")
    header = (f'LKLAPI-SHA256withRSA appid="{api_client.app_id}",serial_no="{api_client.client_serial_no}",'
              f'timestamp="{ts}",nonce_str="{nonce}",signature="{signature}"')
    assert bank_auth.authenticate(header, body).id == api_client.id


@pytest.mark.parametrize("changes, field, message", [
    ({"client_cert": "nonsense"}, "client_cert", "not a PEM certificate"),
    ({"client_cert": _expired_cert()}, "client_cert", "expired on"),
    ({"allowed_hosts": "https://h5.bank.example/path"}, "allowed_hosts", "is not a host name"),
    ({"rate_limit_per_minute": 0}, "rate_limit_per_minute", ""),
    ({"name": ""}, "name", "Enter a name"),
])
def test_bad_api_client_input_is_refused(client, bank_admin, banks, changes, field, message):
    response = create_client(client, banks[0], **changes)
    assert response.status_code == 422 and message in field_error(response, field) and field_error(response, field)
    assert not db.session.execute(select(BankApiClient.id)).first()


def test_edit_rotate_and_disable_an_api_client(client, bank_admin, banks):
    create_client(client, banks[0])
    api_client = db.session.execute(select(BankApiClient)).scalar_one()
    new_bank_cert = key_and_cert("bank 2")
    response = post(client, f"/coupons/settings/api-clients/{api_client.id}/edit",
                    {"name": "H5 券系统", "client_cert": new_bank_cert[2], "rate_limit_per_minute": 1200,
                     "allowed_hosts": "h5.bank.example"})
    assert response.status_code == 204
    [update] = events("bank_api_client.update")
    assert update.before["rate_limit_per_minute"] == 600 and update.after["client_serial_no"] == new_bank_cert[3]
    old_serial = db.session.execute(select(BankApiClient.our_serial_no)).scalar_one()
    assert post(client, f"/coupons/settings/api-clients/{api_client.id}/rotate", {}, target=None).status_code == 302
    db.session.expire_all()
    rotated = db.session.get(BankApiClient, api_client.id)
    assert rotated.our_serial_no != old_serial
    assert events("bank_api_client.rotate_key")[0].before == {"our_serial_no": old_serial}
    key = serialization.load_pem_private_key(rotated.our_private_key.encode(), password=None)
    assert signature_ok(rotated.our_cert, b"y", sign(key, b"y"))
    post(client, f"/coupons/settings/api-clients/{api_client.id}/status", {"status": "disabled"}, target=None)
    db.session.refresh(rotated)
    assert rotated.status == "disabled" and len(events("bank_api_client.disable")) == 1


def test_api_client_list_is_limited_to_the_bank(client, bank_admin, banks):
    from app.coupons.bank_auth import register_client

    register_client(banks[1], name="乙行系统", app_id="BKOTHERBANK00001", client_cert=BANK_KEY[2])
    db.session.commit()
    create_client(client, banks[0])
    page = client.get("/coupons/settings/api-clients").get_data(as_text=True)
    assert "H5 券系统" in page and "BKOTHERBANK00001" not in page


def test_connect_a_bank_to_the_yunshuhui_sandbox_and_test_the_connection(client, make, auth, banks, app):
    make.operator(make.platform(), roles=("platform_admin",), username="root")
    login(client, auth, "root")
    response = post(client, "/coupons/settings/tunnels/sandbox", {"org_id": banks[0].id, "tunnel": "yunshuhui"})
    assert response.status_code == 204
    account = account_of(banks[0])
    assert account.base_url == "http://localhost/sandbox/yunshuhui" and account.openid_url.startswith(account.base_url)
    assert account.notify_cert and account.platform_certs and account.secrets["certificate"]
    # The account works against the sandbox: our signature is accepted and its answer verifies.
    result = settings.check_connection(account, transport=httpx.WSGITransport(app=app))
    assert result.ok, result.message
    # Connecting again keeps the account's ids and replaces its key.
    first_serial, app_id = account.serial_no, account.app_id
    post(client, "/coupons/settings/tunnels/sandbox", {"org_id": banks[0].id, "tunnel": "yunshuhui"})
    db.session.expire_all()
    again = account_of(banks[0])
    assert again.app_id == app_id and again.serial_no != first_serial
    assert settings.check_connection(again, transport=httpx.WSGITransport(app=app)).ok


def test_choosing_the_tunnel_relabels_the_form_and_carries_only_the_bank(client, bank_admin, banks):
    response = client.get("/coupons/settings/tunnels/new", query_string={"tunnel": "direct", "org_id": banks[0].id},
                          headers=htmx_headers(target="modal-content"))
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'name="apiv3_key"' in html and 'name="openid_url"' not in html
    assert "WeChat Pay merchant id (mchid)" in html
    assert re.search(rf'<option selected value="{banks[0].id}">|<option value="{banks[0].id}" selected>', html)
    assert 'hx-include="[name=org_id]"' in html  # never the pasted keys
    yunshuhui = client.get("/coupons/settings/tunnels/new", headers=htmx_headers(target="modal-content"))
    assert 'name="openid_url"' in yunshuhui.get_data(as_text=True) and 'name="apiv3_key"' not in \
        yunshuhui.get_data(as_text=True)
