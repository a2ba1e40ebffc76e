"""Test helpers for the bank-facing API: a bank with its API client, a caller that signs requests
the way a bank would, and a bank's notification endpoint on a real local HTTP server.

The bank's side signs and verifies with `cryptography` directly (not with `app.providers.lklapi`),
so the tests check our implementation of the scheme against an independent one.

    from tests.coupons.bank_api_helpers import bank, bank_receiver, make_bank  # noqa: F401 (fixtures)
"""
from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import pytest
from cryptography import x509
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.coupons import bank_auth
from app.coupons.models import BankApiClient, PartnerBank
from app.extensions import db
from tests.providers.wechatpay_support import key_pair, rsa_sign, rsa_verifies  # the same independent RSA helpers

_codes = itertools.count(10_000_001)


@lru_cache(maxsize=64)
def bank_key_pair(name: str = "bank") -> tuple[str, str]:
    """(private key PEM, self-signed certificate PEM) made in the test, as a bank's IT would (one per
    name per test run: key generation is slow, and keys need not differ between tests)."""
    pair = key_pair(name)
    return pair.private_pem, pair.cert_pem


@dataclass
class BankCaller:
    """Signs requests as the bank's back end does and checks our signed answers."""

    client: BankApiClient
    private_pem: str
    cert_pem: str

    @property
    def serial(self) -> str:
        return format(x509.load_pem_x509_certificate(self.cert_pem.encode()).serial_number, "x")

    def authorization(self, body: bytes, *, timestamp: str | None = None, nonce: str | None = None,
                      private_pem: str | None = None, appid: str | None = None, serial: str | None = None) -> str:
        appid = appid or self.client.app_id
        serial = serial or self.serial
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_hex(12)
        text = b"".join(part + b"\n" for part in (appid.encode(), serial.encode(), timestamp.encode(), nonce.encode(),
                                                  body))
        signature = rsa_sign(private_pem or self.private_pem, text)
        return (f'LKLAPI-SHA256withRSA appid="{appid}",serial_no="{serial}",timestamp="{timestamp}",'
                f'nonce_str="{nonce}",signature="{signature}"')

    def post(self, http, path: str, document, *, idempotency_key: str | None = "auto", body: bytes | None = None,
             **signing):
        body = body if body is not None else json.dumps(document, ensure_ascii=False).encode()
        headers = {"Authorization": self.authorization(body, **signing), "Content-Type": "application/json"}
        if idempotency_key == "auto":
            idempotency_key = secrets.token_hex(8)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return http.post(path, data=body, headers=headers)

    def get(self, http, path: str, **signing):
        return http.get(path, headers={"Authorization": self.authorization(b"", **signing)})

    def answer_verifies(self, response) -> bool:
        """Our answer's Lklapi-* headers, checked with the certificate we gave the bank."""
        h = response.headers
        text = b"".join(part + b"\n" for part in (h["Lklapi-Appid"].encode(), h["Lklapi-Serial"].encode(),
                                                  h["Lklapi-Timestamp"].encode(), h["Lklapi-Nonce"].encode(),
                                                  response.get_data()))
        return h["Lklapi-Serial"] == self.client.our_serial_no and rsa_verifies(self.client.our_cert, text,
                                                                                 h["Lklapi-Signature"])


@dataclass
class Bank:
    org: object
    partner: PartnerBank
    caller: BankCaller
    account: object = None  # its 云数汇 TunnelAccount, when connected

    @property
    def client(self) -> BankApiClient:
        return self.caller.client


def make_bank(make, *, allowed_hosts=("127.0.0.1", "h5.bank.example"), rate_limit_per_minute: int = 6000,
              org=None) -> Bank:
    """A bank organisation, its master-data row and an API client whose key the test holds (committed)."""
    org = org or make.org(kind="bank")
    code = f"{next(_codes):08d}"
    partner = PartnerBank(code=code, name=f"测试银行{code}", kind="commercial", org_id=org.id, status="normal")
    db.session.add(partner)
    private_pem, cert_pem = bank_key_pair(f"bank-{org.id}")
    client = bank_auth.register_client(org, name=f"{org.name} 后台", app_id=f"BANK{code}", client_cert=cert_pem,
                                       allowed_hosts=list(allowed_hosts), rate_limit_per_minute=rate_limit_per_minute)
    db.session.commit()
    return Bank(org, partner, BankCaller(client, private_pem, cert_pem))


@pytest.fixture
def bank(make):
    """A bank with its API client and a 云数汇 account on the in-process sandbox site."""
    from tests.coupons.ysh_sandbox import connect_ysh_account

    bank = make_bank(make)
    bank.account = connect_ysh_account(bank.org)
    return bank


def issue_body(activity, call_trade_no: str | None = None, open_id: str | None = None, receiver_url: str | None = None,
               **extra) -> dict:
    url = receiver_url or "http://127.0.0.1:9/notify"
    return {"openId": open_id or f"oTest{secrets.token_hex(8)}", "activityCode": activity.code,
            "callTradeNo": call_trade_no or f"T{secrets.token_hex(10)}", "writeOffNotify": url + "/redeemed",
            "postNotify": url + "/issued", **extra}


class BankReceiver:
    """A bank's notification endpoint on a real socket: records each POST (headers and exact body)
    and answers `answer` with `status` (by default 200 {"code":"SUCCESS"})."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.answer = b'{"code":"SUCCESS","msg":"ok"}'
        self._lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/bank"

    @Request.application
    def wsgi(self, request: Request) -> Response:
        with self._lock:
            self.requests.append({"path": request.path, "headers": dict(request.headers), "body": request.get_data()})
            return Response(self.answer, status=self.status, content_type="application/json")

    def documents(self) -> list[dict]:
        with self._lock:
            return [json.loads(r["body"]) for r in self.requests]

    def signature_verifies(self, request: dict, cert_pem: str) -> bool:
        """The bank's check of our notification: the three-line callback form."""
        header = request["headers"]["Authorization"]
        assert header.startswith("LKLAPI-SHA256withRSA ")
        fields = dict(part.split("=", 1) for part in header[len("LKLAPI-SHA256withRSA "):].split(","))
        fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
        text = fields["timestamp"].encode() + b"\n" + fields["nonce_str"].encode() + b"\n" + request["body"] + b"\n"
        return rsa_verifies(cert_pem, text, fields["signature"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bank_receiver():
    receiver = BankReceiver()
    threading.Thread(target=receiver.server.serve_forever, name="bank-receiver", daemon=True).start()
    yield receiver
    receiver.close()
