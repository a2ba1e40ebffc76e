"""The customer-facing H5 game page of theme activities (blueprint `h5_activities`, `/h5/activities`).

- `GET /<theme_no>`: the game page (the link and QR code of `entry.entry_path`). The customer is the
  openid the OpenID hand-off left in the signed session for the activity's bank; without one the page
  starts the hand-off (云数汇's OpenID page, coming back to `/openid/callback` on the page's own
  host). An `?openid=` in a URL is never taken as identity: anyone could type one. Every view by an
  identified customer is counted (`visits`).
- `GET /openid/callback`: 云数汇 comes back here (`openid_handoff.finish_own_page`); the openid goes
  into the session, keyed by the bank's organisation, and the browser on to the page without it.
- `POST /<theme_no>/draws`: one spin (JSON; the CSRF token in `X-CSRFToken`). The body is
  `{"key": "..."}`, an idempotency key the browser makes per spin attempt and sends again when a
  network error makes it retry, so a retry is the same draw. Answers the prize, where the wheel
  stops and the draws left (201; 200 for a replay), or the refusal's code and the customer's words.
- `GET /<theme_no>/prizes`: the "My prizes" part of the page, refreshed after a spin (not a view).
- `POST /<theme_no>/draws/<draw_no>/address`: a gift's winner leaves the delivery address (a plain
  form, post-redirect-get; it works without JavaScript).
- `GET /<theme_no>/background`: the activity's background image (public, like the page).

Rate limits (Flask-Limiter, in Redis): a customer (the identity in the session, else the address)
may spin 20 times a minute, a human needs ~5 s a spin; one address may send 600 draws a minute,
because mobile carriers put many customers behind one address (carrier-grade NAT), so only a runaway
script meets that limit. The engine's own limits stay the real cap. Personalised answers are
`Cache-Control: no-store`.
"""
from __future__ import annotations

import json
import secrets

from flask import (Blueprint, abort, flash, jsonify, make_response, redirect, render_template, request, send_file,
                   session, url_for)
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError
from jinja2_fragments.flask import render_block

from app.core import crypto
from app.coupons import openid_handoff
from app.extensions import limiter

from . import backgrounds, fulfilment, game, visits
from .entry import entry_path
from .h5_forms import REFUSAL_MESSAGES, DeliveryAddressForm
from .models import ThemeActivity

bp = Blueprint("h5_activities", __name__, url_prefix="/h5/activities")

SESSION_OPENIDS = "h5_openids"  # {"<bank org id>": openid}
SESSION_NONCE = "h5_handoff_nonce"  # binds a hand-off's state to this browser
DRAW_LIMIT_PER_CUSTOMER = "20 per minute"
DRAW_LIMIT_PER_ADDRESS = "600 per minute"
PAGE_LIMIT_PER_ADDRESS = "600 per minute"
ADDRESS_LIMIT_PER_CUSTOMER = "10 per minute"
TEMPLATE = "h5/game.html"


# --- who the customer is ------------------------------------------------------------------------------


def _openid_for(theme: ThemeActivity) -> str | None:
    """The customer's openid at the activity's bank, from the signed session (never from the URL)."""
    return _openid_at(theme.org_id)


def _openid_at(org_id: int) -> str | None:
    return (session.get(SESSION_OPENIDS) or {}).get(str(org_id))


def _customer_key() -> str:
    """The rate limits' key: the identities in the session, or the address before the hand-off."""
    openids = session.get(SESSION_OPENIDS)
    if not openids:
        return f"h5:address:{get_remote_address()}"
    return "h5:customer:" + crypto.lookup_hash(json.dumps(openids, sort_keys=True))


def _page_url(theme: ThemeActivity) -> str:
    """The page's absolute URL on the host the customer is on, if it is ours, else on our H5 host."""
    here = request.host_url.rstrip("/").lower()
    origins = openid_handoff.own_origins()
    return (here if here in origins else origins[0]) + entry_path(theme)


def _hand_off(theme: ThemeActivity):
    """Send the customer to 云数汇's OpenID page; it comes back to `openid_callback`."""
    nonce = session.get(SESSION_NONCE)
    if not nonce:
        nonce = session[SESSION_NONCE] = secrets.token_urlsafe(16)
    bank = game.bank_of(theme)
    try:
        target = openid_handoff.start_own_page(bank.code if bank else None, _page_url(theme),
                                               url_for(".openid_callback"), nonce)
    except openid_handoff.HandoffRefused as exc:
        return _unavailable(exc.code, exc.status, details=f"{exc.status} {exc.code}: {exc.message}")
    return redirect(target, code=302)


@bp.get("/openid/callback")
@limiter.limit(PAGE_LIMIT_PER_ADDRESS)
def openid_callback():
    try:
        visitor = openid_handoff.finish_own_page(request.args.get("state"), request.args.get("openid"),
                                                 request.args.get("from"), session.get(SESSION_NONCE))
    except openid_handoff.HandoffRefused as exc:
        return _unavailable(exc.code, exc.status, back_url=exc.back_url,
                            details=f"{exc.status} {exc.code}: {exc.message}")
    session[SESSION_OPENIDS] = {**(session.get(SESSION_OPENIDS) or {}), str(visitor.org_id): visitor.openid}
    session.permanent = True  # kept for PERMANENT_SESSION_LIFETIME: no hand-off at every visit
    return redirect(visitor.page_url, code=302)


# --- the page -----------------------------------------------------------------------------------------


def _theme_or_404(theme_no: str) -> ThemeActivity:
    theme = game.find_theme(theme_no)
    if theme is None:
        abort(404)
    return theme


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _render_page(theme: ThemeActivity, open_id: str, form: DeliveryAddressForm | None = None,
                 address_for: str | None = None, status: int = 200):
    page = game.page_of(theme, open_id)
    blank = DeliveryAddressForm(formdata=None)
    html = render_template(TEMPLATE, page=page, form=form or blank, blank_form=blank, address_for=address_for,
                           background_url=_background_url(theme, page))
    return _no_store(make_response(html, status))


def _background_url(theme: ThemeActivity, page: game.GamePage) -> str | None:
    if not page.has_background:
        return None
    version = theme.background_image.rsplit("/", 1)[-1].split(".")[0][:8]  # a new image, a new URL
    return url_for(".background", theme_no=theme.theme_no, v=version)


@bp.get("/<theme_no>")
@limiter.limit(PAGE_LIMIT_PER_ADDRESS)
def game_page(theme_no: str):
    theme = _theme_or_404(theme_no)
    open_id = _openid_for(theme)
    if open_id is None:
        return _hand_off(theme)
    visits.record_visit(theme, open_id)
    return _render_page(theme, open_id)


@bp.get("/<theme_no>/prizes")
def my_prizes(theme_no: str):
    theme = _theme_or_404(theme_no)
    open_id = _openid_for(theme)
    if open_id is None:
        abort(404)
    blank = DeliveryAddressForm(formdata=None)
    html = render_block(TEMPLATE, "my_prizes", page=game.page_of(theme, open_id), form=blank, blank_form=blank,
                        address_for=None)
    return _no_store(make_response(html))


@bp.get("/<theme_no>/background")
def background(theme_no: str):
    theme = _theme_or_404(theme_no)
    if not backgrounds.exists(theme.background_image):
        abort(404)
    return send_file(backgrounds.path_of(theme.background_image),
                     mimetype=backgrounds.mimetype_of(theme.background_image), max_age=86_400)


# --- a spin -------------------------------------------------------------------------------------------


def _json_refusal(status: int, code: str, message: str | None = None, spin: game.SpinState | None = None):
    body = {"code": code, "message": message or game.customer_message(code)}
    if spin is not None:
        body["spin"] = spin.document()
    return _no_store(jsonify(body)), status


@bp.post("/<theme_no>/draws")
@limiter.limit(DRAW_LIMIT_PER_CUSTOMER, key_func=_customer_key)
@limiter.limit(DRAW_LIMIT_PER_ADDRESS)
def spin(theme_no: str):
    found = game.theme_identity(theme_no)
    if found is None:
        return _json_refusal(404, "THEME_NOT_FOUND")
    theme_id, org_id = found
    open_id = _openid_at(org_id)
    if open_id is None:
        return _json_refusal(401, "SIGN_IN_REQUIRED")
    data = request.get_json(silent=True)
    key = data.get("key") if isinstance(data, dict) else None
    try:
        result = game.spin(theme_id, open_id, key if isinstance(key, str) else "")
    except game.SpinRefused as exc:
        return _json_refusal(exc.status, exc.code, exc.message, exc.spin)
    return _no_store(jsonify(result.document())), 200 if result.outcome.replayed else 201


# --- a gift's delivery address ------------------------------------------------------------------------


@bp.post("/<theme_no>/draws/<draw_no>/address")
@limiter.limit(ADDRESS_LIMIT_PER_CUSTOMER, key_func=_customer_key)
def leave_address(theme_no: str, draw_no: str):
    theme = _theme_or_404(theme_no)
    open_id = _openid_for(theme)
    if open_id is None:
        return redirect(url_for(".game_page", theme_no=theme.theme_no))
    form = DeliveryAddressForm()
    if form.validate_on_submit():
        try:
            fulfilment.leave_address(theme.id, draw_no, open_id, form.recipient.data, form.phone.data,
                                     form.address.data)
        except fulfilment.AddressRefused as exc:
            if exc.field not in form:  # the draw: not this customer's, or no longer waiting for an address
                flash(str(REFUSAL_MESSAGES["draw"]), "error")
                return redirect(url_for(".game_page", theme_no=theme.theme_no, _anchor="my-prizes"))
            form[exc.field].errors.append(str(REFUSAL_MESSAGES[exc.field]))
        else:
            flash(_("Thank you! We will send your gift to this address."), "success")
            return redirect(url_for(".game_page", theme_no=theme.theme_no, _anchor="my-prizes"))
    return _render_page(theme, open_id, form=form, address_for=draw_no, status=400)


# --- what the customer sees when something is wrong ---------------------------------------------------


def _wants_json() -> bool:
    return request.method == "POST" and request.is_json


def _unavailable(code: str, status: int, back_url: str | None = None, details: str | None = None):
    html = render_template("h5/game_unavailable.html", code=code, status=status, back_url=back_url, details=details)
    return _no_store(make_response(html, status))


@bp.errorhandler(404)
def not_found(error):
    if _wants_json():
        return _json_refusal(404, "THEME_NOT_FOUND")
    return _unavailable("THEME_NOT_FOUND", 404)


@bp.errorhandler(429)
def too_many(error):
    if _wants_json():
        return _json_refusal(429, "RATE_LIMITED")
    return _unavailable("RATE_LIMITED", 429)


@bp.errorhandler(CSRFError)
def page_expired(error):
    if _wants_json():
        return _json_refusal(400, "PAGE_EXPIRED", _("The page has expired. Please reload it and try again."))
    theme_no = (request.view_args or {}).get("theme_no")
    back = url_for(".game_page", theme_no=theme_no) if theme_no else None
    return _unavailable("PAGE_EXPIRED", 400, back_url=back)
