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

Our own H5 pages (the theme activities' game, `/h5/...`) use the same hand-off with two differences
(`start_own_page` / `finish_own_page`): the redirect must be on our own H5 host (the host of
`H5_BASE_URL` or `PUBLIC_BASE_URL`, path under `/h5/`), which is always allowed, so no bank API
client's allow-list is involved; and the openid never travels on to the page in its URL. 云数汇
returns to a callback on the page's own host (so the cookie lands where the page reads it); the
view there keeps the openid in the signed session, keyed by the bank's organisation, and sends the
browser on to the page without it. The page never takes `?openid=` as identity: anyone could type
one. The state is bound to the browser by a random nonce kept in the session, so a callback URL
handed to someone else (or planted in their browser) signs nobody in. The two kinds of state are not
interchangeable: a bank's callback refuses an own-page state and the other way round.
"""
from __future__ import annotations

import hmac
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
    if not bank_id or not redirect:
        raise HandoffRefused(400, "INVALID_FIELD", "bankId and redirect are required")
    bank = _bank(bank_id)
    _check_redirect(bank.org_id, redirect)
    callback = f"{issuance.public_base_url()}/api/v1/openid/callback"
    return _to_yunshuhui(bank, {"org": bank.org_id, "redirect": redirect}, callback)


def finish(state: str | None, openid: str | None, source: str | None) -> str:
    """The bank's URL with the visitor's openid; raises HandoffRefused."""
    sealed = _open(state, _allowed_or_none)
    if "nonce" in sealed:  # sealed for one of our own pages: its openid stays in our session
        raise HandoffRefused(400, "STATE_INVALID", "the hand-off state is not for a bank's page")
    _check_openid(openid, source, _allowed_or_none(sealed))
    _check_redirect(sealed["org"], sealed["redirect"])  # the allow-list may have changed meanwhile
    return with_openid(sealed["redirect"], openid)


@dataclass(frozen=True)
class OwnPageVisitor:
    """Who 云数汇 says is on one of our own H5 pages, and the page to go back to (without the openid)."""

    org_id: int
    openid: str
    page_url: str


def start_own_page(bank_id: str | None, page_url: str, callback_path: str, nonce: str) -> str:
    """The 云数汇 URL for a visitor of our own H5 page `page_url`: 云数汇 comes back to `callback_path`
    on the page's host, with a state bound to the browser's `nonce`. Raises HandoffRefused."""
    origin = own_page_origin(page_url)
    if origin is None:
        raise HandoffRefused(422, "URL_NOT_ALLOWED", "redirect: not one of our own H5 pages")
    if not bank_id:
        raise HandoffRefused(409, "TUNNEL_NOT_CONFIGURED", "the activity has no bank")
    bank = _bank(bank_id)
    return _to_yunshuhui(bank, {"org": bank.org_id, "redirect": page_url, "nonce": nonce}, origin + callback_path)


def finish_own_page(state: str | None, openid: str | None, source: str | None, nonce: str | None) -> OwnPageVisitor:
    """The visitor 云数汇 sent back to one of our own pages; raises HandoffRefused (its way back is
    the page itself, which starts a fresh hand-off)."""
    sealed = _open(state, _own_page_or_none)
    page = _own_page_or_none(sealed)
    if page is None or not nonce or not hmac.compare_digest(str(sealed.get("nonce", "")), nonce):
        raise HandoffRefused(400, "STATE_INVALID", "the hand-off was not started in this browser", back_url=page)
    _check_openid(openid, source, page)
    return OwnPageVisitor(sealed["org"], openid, page)


def own_origins() -> list[str]:
    """Where our own H5 pages are served: the origins of H5_BASE_URL and PUBLIC_BASE_URL."""
    bases = (current_app.config.get("H5_BASE_URL"), issuance.public_base_url())
    return list(dict.fromkeys(origin for origin in map(_origin, bases) if origin))


def own_page_origin(url: str | None) -> str | None:
    """The origin of `url` when it is one of our own H5 pages (our host, path under /h5/); else None."""
    origin = _origin(url)
    return origin if origin in own_origins() and urlsplit(url).path.startswith("/h5/") else None


def _origin(url: str | None) -> str | None:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _bank(bank_id: str) -> PartnerBank:
    bank = db.session.execute(select(PartnerBank).where(PartnerBank.code == bank_id,
                                                        PartnerBank.status == "normal")).scalar_one_or_none()
    if bank is None:
        raise HandoffRefused(404, "BANK_NOT_FOUND", f"no bank has the code {bank_id}")
    return bank


def _to_yunshuhui(bank: PartnerBank, sealed: dict, callback: str) -> str:
    from app.providers.yunshuhui import YunshuhuiClient, YunshuhuiError

    account = issuance.tunnel_account(bank.org_id, "yunshuhui")
    if account is None or not account.openid_url:
        raise HandoffRefused(409, "TUNNEL_NOT_CONFIGURED", "the bank has no 云数汇 account with an OpenID page")
    state = _serializer().dumps(sealed)
    try:
        return YunshuhuiClient.for_account(account).openid_url(f"{callback}?{urlencode({'state': state})}")
    except YunshuhuiError as exc:
        raise HandoffRefused(409, "TUNNEL_NOT_CONFIGURED", exc.message) from exc


def _open(state: str | None, way_back) -> dict:
    """The sealed `{org, redirect[, nonce]}` of a fresh state we signed; raises HandoffRefused."""
    try:
        return _serializer().loads(state or "", max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired as exc:
        raise HandoffRefused(400, "STATE_EXPIRED", "the hand-off took too long; start again from the bank's page",
                             back_url=way_back(_serializer().loads(state or ""))) from exc
    except BadSignature as exc:
        raise HandoffRefused(400, "STATE_INVALID", "the hand-off state is not ours") from exc


def _check_openid(openid: str | None, source: str | None, back_url: str | None) -> None:
    if source != "dshy" or not openid or not issuance.OPEN_ID.match(openid):
        raise HandoffRefused(400, "OPENID_MISSING", "云数汇 did not send an openid", back_url=back_url)


def _own_page_or_none(sealed: dict) -> str | None:
    """Our own page from a state we signed for it (for a way back)."""
    return sealed["redirect"] if "nonce" in sealed and own_page_origin(sealed["redirect"]) else None


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
