"""The banks' API clients (`BankApiClient`): who is calling `/api/v1/`, how fast, and what we sign back.

- `authenticate(header, body)`: the request is signed the LKLAPI way (five-line text) with the
  bank's key; we check it with the certificate we hold for the client's `app_id` + serial, refuse a
  timestamp more than ±300 s off and a nonce seen before (Redis `SET NX` with a TTL that outlives
  the window, so a captured request cannot be played again while its timestamp would still pass).
- `over_rate_limit(client)`: `rate_limit_per_minute` per client, counted in Flask-Limiter's own
  storage and strategy (Redis in production) so every web process shares one count.
- `answer_headers(client, body)`: the `Lklapi-*` headers of our answer, signed with the key pair we
  made for this client (the bank checks them with `our_cert`).
- `url_refusal(client, url)`: a URL a bank names (H5 redirect, notification target) must be on a
  host of the client's allow-list (`allowed_hosts`); this closes the open redirect of the OpenID
  hand-off and keeps notifications from being aimed at our own network.
- `register_client(...)`: a new client, with our key pair for it generated here.

The LKLAPI scheme signs the body, not the method or the URL (as Lakala's own API does): the URL is
protected by TLS and the nonce, which makes any signed request usable once only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l
from limits import RateLimitItemPerMinute
from sqlalchemy import bindparam, func, select

from app.core import audit
from app.extensions import db, get_redis, limiter
from app.orgs.models import Organisation
from app.providers import lklapi

from .models import BankApiClient

SIGNATURE_WINDOW_SECONDS = 300
NONCE_TTL_SECONDS = 2 * SIGNATURE_WINDOW_SECONDS + 60
RATE_LIMIT_SCOPE = "bank-api"


@dataclass
class BankAuthError(Exception):
    """A request that does not authenticate; `code` and `message` go to the bank as JSON (401)."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def authenticate(header: str | None, body: bytes, *, now: float | None = None) -> BankApiClient:
    """The active client whose key signed this request; raises BankAuthError."""
    found: dict[str, BankApiClient] = {}

    def certificate_of(app_id: str, serial_no: str) -> str | None:
        client = _active_client(app_id)
        if client is None or client.client_serial_no.lower() != serial_no.lower():
            return None
        found["client"] = client
        return client.client_cert

    try:
        auth = lklapi.verify_request(header, body, certificate_of)
    except lklapi.SignatureError as exc:
        code = "UNKNOWN_CLIENT" if "unknown appid" in str(exc) else "SIGNATURE_INVALID"
        raise BankAuthError(code, str(exc)) from exc
    if not lklapi.is_fresh(auth.timestamp, SIGNATURE_WINDOW_SECONDS, now=now):
        raise BankAuthError("TIMESTAMP_STALE", f"timestamp is more than {SIGNATURE_WINDOW_SECONDS} s from our clock")
    if not _first_use_of_nonce(auth.appid or "", auth.nonce_str):
        raise BankAuthError("NONCE_REPLAYED", "this nonce_str was used before; sign every request with a new one")
    return found["client"]


_ACTIVE_CLIENT = (select(BankApiClient).join(Organisation, Organisation.id == BankApiClient.org_id)
                  .where(BankApiClient.app_id == bindparam("app_id"), BankApiClient.status == "active",
                         Organisation.status == "active"))  # built once: every bank API request runs it


def _active_client(app_id: str) -> BankApiClient | None:
    return db.session.execute(_ACTIVE_CLIENT, {"app_id": app_id}).scalar_one_or_none()


def _first_use_of_nonce(app_id: str, nonce: str) -> bool:
    return bool(get_redis().set(f"bank-api:nonce:{app_id}:{nonce}", b"1", nx=True, ex=NONCE_TTL_SECONDS))


def over_rate_limit(client: BankApiClient) -> int | None:
    """Count this request against the client's limit: None when within it, else the seconds to wait."""
    if not limiter.enabled:
        return None
    item = RateLimitItemPerMinute(max(client.rate_limit_per_minute, 1))
    strategy = limiter.limiter
    try:
        if strategy.hit(item, RATE_LIMIT_SCOPE, client.app_id):
            return None
        reset_at = strategy.get_window_stats(item, RATE_LIMIT_SCOPE, client.app_id).reset_time
    except Exception:  # the limiter's storage is down: serve rather than refuse every bank
        current_app.logger.warning("rate-limit storage unavailable; bank API request let through", exc_info=True)
        return None
    return max(1, int(reset_at - time.time()) + 1)


def answer_headers(client: BankApiClient, body: bytes) -> dict[str, str]:
    """`Lklapi-Appid/-Serial/-Timestamp/-Nonce/-Signature` over our answer, with our key for this client."""
    return lklapi.response_headers(client.app_id, client.our_serial_no, client.our_private_key, body)


def notification_authorization(client: BankApiClient, body: bytes) -> str:
    """The `Authorization` header of a notification we send the bank (the three-line callback form)."""
    return lklapi.callback_authorization(client.our_private_key, body)


# --- URLs a bank names ---------------------------------------------------------------------------


def url_refusal(client: BankApiClient, url: str | None) -> str | None:
    """Why `url` may not be used for this client (None when it may)."""
    if not url:
        return "the URL is empty"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL is not valid"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the URL must be an absolute http(s) URL"
    if parts.scheme != "https" and current_app.config.get("ENV_NAME") == "production":
        return "the URL must use https"
    if parts.username or parts.password:
        return "the URL may not carry a user name or password"
    port = port or (443 if parts.scheme == "https" else 80)
    if not any(host_matches(pattern, parts.hostname, port) for pattern in client.allowed_hosts or []):
        return f"the host {parts.hostname} is not on this client's list of allowed hosts"
    return None


def host_matches(pattern: str, host: str, port: int) -> bool:
    """'h5.bank.com' (any port), 'h5.bank.com:8443' (that port), '*.bank.com' (any subdomain)."""
    pattern = (pattern or "").strip().lower()
    name, _, wanted_port = pattern.rpartition(":") if pattern.count(":") == 1 else (pattern, "", "")
    if wanted_port and wanted_port != str(port):
        return False
    host = host.lower().rstrip(".")
    if name.startswith("*."):
        return host.endswith(name[1:]) and len(host) > len(name) - 1
    return bool(name) and host == name


# --- registration --------------------------------------------------------------------------------


def register_client(org: Organisation, *, name: str, app_id: str, client_cert: str,
                    allowed_hosts: list[str] | tuple[str, ...] = (), rate_limit_per_minute: int = 6000
                    ) -> BankApiClient:
    """A new API client for a bank; we make the key pair we sign its answers with (audited, not committed)."""
    if db.session.execute(select(func.count()).where(BankApiClient.app_id == app_id)).scalar_one():
        raise ValueError(f"app_id {app_id} is taken")
    private_pem, cert_pem, serial = lklapi.new_key_pair(f"marketing-hub {app_id}")
    client = BankApiClient(org_id=org.id, name=name, app_id=app_id, client_cert=client_cert,
                           client_serial_no=lklapi.certificate_serial(client_cert), our_serial_no=serial,
                           our_cert=cert_pem, rate_limit_per_minute=rate_limit_per_minute,
                           allowed_hosts=[h.strip().lower() for h in allowed_hosts if h.strip()])
    client.our_private_key = private_pem
    db.session.add(client)
    db.session.flush()
    audit.record("bank_api_client.create", "bank_api_client", client.id,
                 after=audit.snapshot(client, ("app_id", "name", "client_serial_no", "our_serial_no",
                                               "allowed_hosts", "rate_limit_per_minute")), org_id=org.id)
    return client


audit.ACTION_LABELS.setdefault("bank_api_client.create", _l("Registered a bank API client"))
