"""The bank-facing API, `/api/v1/` (blueprint `coupon_api`): JSON only, CSRF-exempt.

Thin views over `issuance`, `bank_auth` and `openid_handoff`:
- `POST /api/v1/coupons/issue` and `GET /api/v1/coupons/issues/<callTradeNo>`: signed by the bank
  (LKLAPI, see `bank_auth`), rate-limited per client, answered with our `Lklapi-*` signature; every
  POST needs an `Idempotency-Key` (`app.core.idempotency`).
- `GET /api/v1/openid` and `/api/v1/openid/callback`: the browser's OpenID hand-off (not signed:
  a browser carries no signature; guarded by the allow-list of hosts and a signed state). A refusal
  is a small page for the bank's customer on a phone (templates/h5/), not JSON.
- `GET /api/v1/openapi.json` and `/api/v1/docs`: the description and a page to read it.

Errors are `{"code": "...", "message": "..."}` with 400 / 401 / 404 / 409 / 422 / 429.
"""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, g, jsonify, make_response, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from app.core.idempotency import idempotent
from app.extensions import csrf, db, limiter

from . import bank_auth, issuance, openapi, openid_handoff
from .notifications import bank_view

bp = Blueprint("coupon_api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
BROWSER_LIMIT = "120 per minute"


def error(status: int, code: str, message: str):
    return make_response(jsonify(code=code, message=message), status)


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return error(exc.code or 500, (exc.name or "error").upper().replace(" ", "_"), exc.description or "")


@bp.errorhandler(Exception)
def unexpected_error(exc: Exception):
    from flask import current_app

    db.session.rollback()
    current_app.logger.exception("bank API request failed")
    return error(500, "INTERNAL_ERROR", "the request failed on our side; nothing was accepted, please retry")


@bp.after_request
def sign_answer(response):
    """Every answer to an authenticated client carries our signature over its exact body."""
    client = g.get("bank_client")
    if client is not None:
        response.headers.update(bank_auth.answer_headers(client, response.get_data()))
    return response


def bank_client_required(view):
    """Authenticate the bank's signature, then count the request against its rate limit."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        try:
            client = bank_auth.authenticate(request.headers.get("Authorization"), request.get_data(cache=True))
        except bank_auth.BankAuthError as exc:
            return error(401, exc.code, exc.message)
        # The client is read-only for the rest of the request: detached, it keeps its loaded values
        # through the request's commits (idempotency claim, the issue) instead of being read again
        # from the database after each of them.
        db.session.expunge(client)
        g.bank_client = client
        wait = bank_auth.over_rate_limit(client)
        if wait is not None:
            response = error(429, "RATE_LIMITED", f"more than {client.rate_limit_per_minute} requests a minute")
            response.headers["Retry-After"] = str(wait)
            return response
        return view(*args, **kwargs)

    return wrapped


def _idempotency_client() -> str:
    return f"bank-client:{g.bank_client.id}"


@bp.post("/coupons/issue")
@bank_client_required
@idempotent(client_id=_idempotency_client)
def issue_coupon():
    try:
        accepted = issuance.accept_issue(g.bank_client, request.get_json(silent=True, force=True))
    except issuance.IssueRefused as exc:
        return error(exc.status, exc.code, exc.message)
    issue = accepted.issue
    return jsonify(orderNo=issue.order_no, callTradeNo=issue.call_trade_no, status=issue.status), (
        202 if accepted.created else 200)


@bp.get("/coupons/issues/<call_trade_no>")
@bank_client_required
def show_issue(call_trade_no: str):
    issue = issuance.find_issue(g.bank_client, call_trade_no)
    if issue is None:
        return error(404, "ISSUE_NOT_FOUND", f"no issue of this bank has callTradeNo {call_trade_no}")
    return jsonify({**bank_view(issue), "openIdMasked": issue.openid_masked})


def _browser_error(exc: openid_handoff.HandoffRefused):
    """The bank's customer, on a phone, sees a small page of their own (not the console's error page)."""
    return render_template("h5/handoff_error.html", refusal=exc), exc.status


@bp.get("/openid")
@limiter.limit(BROWSER_LIMIT)
def openid_start():
    try:
        target = openid_handoff.start(request.args.get("bankId"), request.args.get("redirect"))
    except openid_handoff.HandoffRefused as exc:
        return _browser_error(exc)
    return redirect(target, code=302)


@bp.get("/openid/callback")
@limiter.limit(BROWSER_LIMIT)
def openid_callback():
    try:
        target = openid_handoff.finish(request.args.get("state"), request.args.get("openid"), request.args.get("from"))
    except openid_handoff.HandoffRefused as exc:
        return _browser_error(exc)
    return redirect(target, code=302)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.spec())


@bp.get("/docs")
def api_docs():
    return render_template("coupons/api_docs.html", spec=openapi.spec(), schema_of=openapi.resolve)
