"""The OpenID hand-off: a bank's H5 page gets its visitor's openid through us and 云数汇.

1. The bank's page sends the browser to `GET /api/v1/openid?bankId=<8-digit bank code>&redirect=<its URL>`.
2. We check the redirect URL against the allowed hosts of the bank's active API clients (no open
   redirect: an unknown host is refused, never followed), seal `{bank, redirect}` into a signed
   state that lives 10 minutes, and send the browser to the bank's 云数汇 OpenID page with our
   callback URL (`/api/v1/openid/callback?state=…`) as `wmcb`.
3. 云数汇 sends the browser back to that URL with `&openid=…&from=dshy`; we open the state and
   send the browser on to the bank's URL with `openid=` added (replacing any it had).

A refusal is shown to the bank's customer on a small mobile page (templates/h5/); it carries the
way back to the bank's page only when that page is known from our own state and still allowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from app.extensions import db

from . import bank_auth, issuance
from .models import BankApiClient, PartnerBank

STATE_MAX_AGE_SECONDS = 600
STATE_SALT = "coupons.openid-handoff"


@dataclass
class HandoffRefused(Exception):
    status: int
    code: str
    message: str  # for the bank's developers; the customer is shown words chosen by `code`
    back_url: str | None = None  # the bank's page, when known from our state and still allowed


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=STATE_SALT)


def start(bank_id: str | None, redirect: str | None) -> str:
    """The 云数汇 URL to send the visitor to; raises HandoffRefused."""
    from app.providers.yunshuhui import YunshuhuiClient, YunshuhuiError

    if not bank_id or not redirect:
        raise HandoffRefused(400, "INVALID_FIELD", "bankId and redirect are required")
    bank = db.session.execute(select(PartnerBank).where(PartnerBank.code == bank_id,
                                                        PartnerBank.status == "normal")).scalar_one_or_none()
    if bank is None:
        raise HandoffRefused(404, "BANK_NOT_FOUND", f"no bank has the code {bank_id}")
    _check_redirect(bank.org_id, redirect)
    account = issuance.tunnel_account(bank.org_id, "yunshuhui")
    if account is None or not account.openid_url:
        raise HandoffRefused(409, "TUNNEL_NOT_CONFIGURED", "the bank has no 云数汇 account with an OpenID page")
    state = _serializer().dumps({"org": bank.org_id, "redirect": redirect})
    callback = f"{issuance.public_base_url()}/api/v1/openid/callback?{urlencode({'state': state})}"
    try:
        return YunshuhuiClient.for_account(account).openid_url(callback)
    except YunshuhuiError as exc:
        raise HandoffRefused(409, "TUNNEL_NOT_CONFIGURED", exc.message) from exc


def finish(state: str | None, openid: str | None, source: str | None) -> str:
    """The bank's URL with the visitor's openid; raises HandoffRefused."""
    try:
        sealed = _serializer().loads(state or "", max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired as exc:
        raise HandoffRefused(400, "STATE_EXPIRED", "the hand-off took too long; start again from the bank's page",
                             back_url=_allowed_or_none(_serializer().loads(state or ""))) from exc
    except BadSignature as exc:
        raise HandoffRefused(400, "STATE_INVALID", "the hand-off state is not ours") from exc
    if source != "dshy" or not openid or not issuance.OPEN_ID.match(openid):
        raise HandoffRefused(400, "OPENID_MISSING", "云数汇 did not send an openid", back_url=_allowed_or_none(sealed))
    _check_redirect(sealed["org"], sealed["redirect"])  # the allow-list may have changed meanwhile
    return with_openid(sealed["redirect"], openid)


def _check_redirect(org_id: int, redirect: str) -> None:
    clients = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == org_id,
                                                             BankApiClient.status == "active")).scalars().all()
    refusals = [bank_auth.url_refusal(client, redirect) for client in clients]
    if not clients or all(refusals):
        reason = refusals[0] if refusals else "the bank has no active API client"
        raise HandoffRefused(422, "URL_NOT_ALLOWED", f"redirect: {reason}")


def _allowed_or_none(sealed: dict) -> str | None:
    """The bank's page from a state we signed, if the bank still allows it (for a way back)."""
    try:
        _check_redirect(sealed["org"], sealed["redirect"])
    except HandoffRefused:
        return None
    return sealed["redirect"]


def with_openid(url: str, openid: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "openid"]
    query.append(("openid", openid))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
