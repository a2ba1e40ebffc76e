"""Test-side WeChat Pay v3 crypto, written from the protocol with `cryptography` alone (neither the
code under test nor wechatpayv3), and the fixtures the WeChat Pay client and sandbox tests share."""
from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from app.coupons.models import TunnelAccount
from app.extensions import db
from app.sandbox import wechatpay as sandbox
from tests.helpers import serving

SCHEME = "WECHATPAY2-SHA256-RSA2048"
APPID = "wx8888888888888888"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    cert_pem: str
    serial: str  # upper-case hex, as WeChat Pay writes serials


def key_pair(common_name: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    return KeyPair(private_pem, cert.public_bytes(serialization.Encoding.PEM).decode(),
                   format(cert.serial_number, "X"))


def rsa_sign(private_pem: str, text: str | bytes) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verifies(cert_pem: str, text: str | bytes, signature: str) -> bool:
    public_key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    data = text.encode() if isinstance(text, str) else text
    try:
        public_key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # noqa: BLE001 - any failure is "does not verify"
        return False
    return True


def seal(apiv3_key: str, plaintext: str, associated_data: str, nonce: str | None = None) -> dict:
    nonce = nonce or secrets.token_hex(6)  # 12 characters
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(sealed).decode(),
            "associated_data": associated_data, "nonce": nonce}


def unseal(apiv3_key: str, resource: dict) -> str:
    return AESGCM(apiv3_key.encode()).decrypt(resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]),
                                              resource["associated_data"].encode()).decode()


def authorization(merchant: "Merchant", method: str, url: str, body: str = "", *, timestamp: int | None = None,
                  nonce: str | None = None, private_pem: str | None = None, serial: str | None = None) -> str:
    timestamp = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or secrets.token_hex(16).upper()
    signature = rsa_sign(private_pem or merchant.keys.private_pem, f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n")
    return (f'{SCHEME} mchid="{merchant.mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial or merchant.keys.serial}"')


def answer_verifies(merchant: "Merchant", headers, body: bytes) -> bool:
    text = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    return (headers["Wechatpay-Serial"] == merchant.platform_serial
            and headers["Wechatpay-Signature-Type"] == SCHEME
            and rsa_verifies(merchant.platform_cert, text, headers["Wechatpay-Signature"]))


@dataclass(frozen=True)
class Merchant:
    mchid: str
    keys: KeyPair
    apiv3_key: str
    platform_serial: str
    platform_cert: str


@pytest.fixture(scope="session")
def merchant_keys() -> KeyPair:
    return key_pair("1900000109 merchant")


@pytest.fixture
def merchant(app, merchant_keys) -> Merchant:
    apiv3_key = base64.b32encode(os.urandom(20)).decode()  # 32 characters
    platform = sandbox.provision_merchant("1900000109", merchant_keys.serial, merchant_keys.cert_pem, apiv3_key)
    return Merchant("1900000109", merchant_keys, apiv3_key, platform["platform_serial"], platform["platform_cert"])


@pytest.fixture
def live_server(app):
    """The app on a real socket (wechatpayv3 speaks `requests`, which cannot use a WSGI transport)."""
    with serving(app) as base:
        yield base + "/sandbox/wechatpay"


@pytest.fixture
def direct_account(make, merchant, live_server):
    """Our TunnelAccount for the merchant, pointed at the sandbox, with the platform certificate stored."""
    def build(**values) -> TunnelAccount:
        stored = {merchant.platform_serial: merchant.platform_cert}
        account = TunnelAccount(org_id=make.org().id, tunnel="direct", base_url=values.pop("base_url", live_server),
                                app_id=APPID, serial_no=merchant.keys.serial, member_id=merchant.mchid,
                                platform_certs=values.pop("platform_certs", stored), status="active")
        account.secrets = values.pop("secrets", {"private_key": merchant.keys.private_pem,
                                                 "apiv3_key": merchant.apiv3_key})
        db.session.add(account)
        db.session.commit()
        return account

    return build


def notification(merchant: Merchant, resource: dict, *, event_id: str = "EV-2026112300001",
                 event_type: str = "COUPON.USE", apiv3_key: str | None = None) -> bytes:
    body = {"id": event_id, "create_time": "2026-11-23T10:00:00+08:00", "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": "代金券核销通知",
            "resource": dict(seal(apiv3_key or merchant.apiv3_key, json.dumps(resource, ensure_ascii=False), "coupon"),
                             original_type="coupon")}
    return json.dumps(body, ensure_ascii=False).encode()


def notification_headers(merchant: Merchant, body: bytes, *, timestamp: int | None = None,
                         private_pem: str | None = None, serial: str | None = None,
                         signature: str | None = None) -> dict[str, str]:
    timestamp = str(timestamp if timestamp is not None else int(time.time()))
    nonce = secrets.token_hex(16)
    if signature is None:
        text = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = rsa_sign(private_pem or platform_private_key(merchant), text)
    return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial or merchant.platform_serial, "Wechatpay-Signature-Type": SCHEME}


def platform_private_key(merchant: Merchant) -> str:
    """The sandbox's platform key for this merchant (what WeChat Pay signs notifications with)."""
    return sandbox.merchant_by_mchid(merchant.mchid).platform_private_key
