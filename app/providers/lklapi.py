"""The LKLAPI-SHA256withRSA scheme of the Lakala open platform (and 云数汇 behind it).

One module owns the scheme for every side that speaks it: our client to 云数汇, the 云数汇
sandbox, and our own bank-facing API (banks sign their requests to us the same way, and we sign
our answers and notifications to them). Hand-written because no maintained Python library
implements it; the primitives come from `cryptography`.

Signed texts (each line ends in "\\n"):
- request:  appid, serial_no, timestamp, nonce_str, body   (header `Authorization`)
- response: appid, serial, timestamp, nonce, body          (headers `Lklapi-*`)
- callback: timestamp, nonce_str, body                      (header `Authorization`, no appid/serial)
"""
from __future__ import annotations

import base64
import binascii
import re
import string
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from app.core.randomtext import random_text

SCHEME = "LKLAPI-SHA256withRSA"
RESPONSE_HEADERS = ("Lklapi-Appid", "Lklapi-Serial", "Lklapi-Timestamp", "Lklapi-Nonce", "Lklapi-Signature")
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9]{12,32}$")
_FIELD = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_NONCE_ALPHABET = string.ascii_letters + string.digits


class SignatureError(ValueError):
    """A signature, or the header carrying it, is missing, malformed or does not verify."""


@dataclass(frozen=True)
class Authorization:
    """The fields of an `Authorization: LKLAPI-SHA256withRSA ...` header."""

    appid: str | None
    serial_no: str | None
    timestamp: str
    nonce_str: str
    signature: str


# --- keys ------------------------------------------------------------------------------------


def new_key_pair(common_name: str, days: int = 3650) -> tuple[str, str, str]:
    """A fresh RSA-2048 key and a self-signed certificate: (private key PEM, certificate PEM, serial hex)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    return private_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), format(serial, "x")


def certificate_serial(cert_pem: str) -> str:
    """The serial number of a PEM certificate, lower-case hex (as certificates are referred to)."""
    return format(x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "x")


def same_serial(serial: str) -> str:
    """A certificate serial in one spelling: hex in any case, with or without leading zeros
    (consoles show "00A1B2…", the headers may carry "a1b2…")."""
    return serial.strip().lower().lstrip("0") or "0"


@lru_cache(maxsize=256)
def _load_private_key(pem: str):
    """Parsed once per process per key (parsing an RSA key costs more than a signature)."""
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError("the private key is not a PEM RSA key") from exc


@lru_cache(maxsize=256)
def _load_public_key(pem: str):
    try:
        if "CERTIFICATE" in pem:
            return x509.load_pem_x509_certificate(pem.encode()).public_key()
        return serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise SignatureError("the certificate is not a PEM certificate or public key") from exc


# --- primitives ------------------------------------------------------------------------------


def new_nonce(length: int = 32) -> str:
    """`length` letters and digits, each uniformly random."""
    return random_text(length, _NONCE_ALPHABET)


def now_timestamp() -> str:
    return str(int(time.time()))


def signed_text(*lines: str | bytes) -> bytes:
    """Join the parts, each followed by a newline (the body goes in as its exact bytes)."""
    return b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)


def sign(private_key_pem: str, message: bytes) -> str:
    key = _load_private_key(private_key_pem)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_pem: str, message: bytes, signature: str) -> bool:
    """True when `signature` (Base64) is a SHA256withRSA signature of `message` by the key in `public_pem`."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        _load_public_key(public_pem).verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- headers ---------------------------------------------------------------------------------


def parse_authorization(header: str | None) -> Authorization:
    """Read the header by field name, in any order, with or without a space after the scheme."""
    header = (header or "").strip()
    if not header.startswith(SCHEME):
        raise SignatureError(f"the Authorization header is not {SCHEME}")
    fields = dict(_FIELD.findall(header[len(SCHEME):]))
    missing = [name for name in ("timestamp", "nonce_str", "signature") if not fields.get(name)]
    if missing:
        raise SignatureError(f"the Authorization header lacks {', '.join(missing)}")
    return Authorization(fields.get("appid"), fields.get("serial_no"), fields["timestamp"], fields["nonce_str"],
                         fields["signature"])


def request_authorization(appid: str, serial_no: str, private_key_pem: str, body: bytes,
                          timestamp: str | None = None, nonce: str | None = None) -> str:
    """The Authorization header for a request we send (or a bank sends us)."""
    timestamp = timestamp or now_timestamp()
    nonce = nonce or new_nonce()
    signature = sign(private_key_pem, signed_text(appid, serial_no, timestamp, nonce, body))
    return (f'{SCHEME} appid="{appid}",serial_no="{serial_no}",timestamp="{timestamp}",'
            f'nonce_str="{nonce}",signature="{signature}"')


def verify_request(header: str | None, body: bytes, public_pem_for: "callable") -> Authorization:
    """Check a signed request; `public_pem_for(appid, serial_no)` returns the caller's certificate
    (or None when the pair is unknown). Returns the parsed header; raises SignatureError."""
    auth = parse_authorization(header)
    if not auth.appid or not auth.serial_no:
        raise SignatureError("the Authorization header lacks appid or serial_no")
    if not NONCE_PATTERN.match(auth.nonce_str):
        raise SignatureError("nonce_str must be 12 to 32 letters and digits")
    pem = public_pem_for(auth.appid, auth.serial_no)
    if not pem:
        raise SignatureError("unknown appid or certificate serial")
    if not verify(pem, signed_text(auth.appid, auth.serial_no, auth.timestamp, auth.nonce_str, body), auth.signature):
        raise SignatureError("the signature does not verify")
    return auth


def response_headers(appid: str, serial: str, private_key_pem: str, body: bytes,
                     timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
    timestamp = timestamp or now_timestamp()
    nonce = nonce or new_nonce()
    signature = sign(private_key_pem, signed_text(appid, serial, timestamp, nonce, body))
    return dict(zip(RESPONSE_HEADERS, (appid, serial, timestamp, nonce, signature)))


def verify_response(headers, body: bytes, certs_by_serial: dict[str, str]) -> str:
    """Check the `Lklapi-*` headers of an answer with the certificate its serial names.
    Returns the serial used; raises SignatureError when a header is missing or it does not verify."""
    values = [headers.get(name) for name in RESPONSE_HEADERS]
    missing = [name for name, value in zip(RESPONSE_HEADERS, values) if not value]
    if missing:
        raise SignatureError(f"the answer lacks {', '.join(missing)}")
    appid, serial, timestamp, nonce, signature = values
    by_serial = {same_serial(key): pem for key, pem in certs_by_serial.items()}
    cert = by_serial.get(same_serial(serial))
    if not cert:
        raise SignatureError(f"no platform certificate with serial {serial}")
    if not verify(cert, signed_text(appid, serial, timestamp, nonce, body), signature):
        raise SignatureError("the answer's signature does not verify")
    return serial


def callback_authorization(private_key_pem: str, body: bytes, timestamp: str | None = None,
                           nonce: str | None = None) -> str:
    """The Authorization header 云数汇 puts on a callback (no appid or serial)."""
    timestamp = timestamp or now_timestamp()
    nonce = nonce or new_nonce()
    signature = sign(private_key_pem, signed_text(timestamp, nonce, body))
    return f'{SCHEME} timestamp="{timestamp}",nonce_str="{nonce}",signature="{signature}"'


def verify_callback(header: str | None, body: bytes, notify_cert_pem: str) -> Authorization:
    """Check a callback's three-line signature with the notification certificate."""
    auth = parse_authorization(header)
    if not verify(notify_cert_pem, signed_text(auth.timestamp, auth.nonce_str, body), auth.signature):
        raise SignatureError("the callback's signature does not verify")
    return auth


def is_fresh(timestamp: str, window_seconds: int = 300, now: float | None = None) -> bool:
    """True when a Unix-seconds timestamp is within ±window of now."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    return abs((now if now is not None else time.time()) - sent) <= window_seconds


# --- envelope --------------------------------------------------------------------------------


def envelope(req_data: dict, now: datetime | None = None) -> dict:
    """The v3 request envelope; `req_time` is Beijing time yyyyMMddHHmmss."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone(timedelta(hours=8)))
    return {"req_time": moment.strftime("%Y%m%d%H%M%S"), "version": "3.0", "req_data": req_data}
