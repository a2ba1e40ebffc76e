"""The draw API for banks' own apps (blueprint `draw_api`): JSON only, CSRF-exempt.

- `POST /api/v1/activities/<theme_no>/draws` with `{"openId": "..."}` and an `Idempotency-Key`
  header: one draw for the bank's customer (201), or the earlier draw of that key (200, header
  `Idempotent-Replayed: true`). The key is the draw's own idempotency key (unique per activity in
  `theme_draws`), so the generic idempotency table is not needed here: the same key with another
  openId is 422, and a twin still running is waited for and then answered with its result.
- `GET /api/v1/activities/<theme_no>/draws/<draw_no>`: a draw and the state of its fulfilment.

Authenticated, rate-limited and answered exactly like the coupon API (the bank signs with its key,
LKLAPI; we sign the answer): the decorator, error handlers and answer signature of
`app.coupons.api` are reused. A bank reaches only its own theme activities: another bank's is 404.
Errors are `{"code": "...", "message": "..."}` with 400 / 401 / 404 / 409 / 422 / 429.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import HTTPException

from app.coupons.api import bank_client_required, error, http_error, sign_answer, unexpected_error
from app.coupons.models import CouponActivity, CouponIssue
from app.core.timeutil import format_local
from app.extensions import csrf, db

from . import draw as engine

bp = Blueprint("draw_api", __name__, url_prefix="/api/v1/activities")
csrf.exempt(bp)
bp.after_request(sign_answer)
bp.register_error_handler(HTTPException, http_error)
bp.register_error_handler(Exception, unexpected_error)


def _theme_or_404(theme_no: str):
    theme = engine.theme_for_bank(theme_no, g.bank_client.org_id)
    if theme is None:
        return None, error(404, "THEME_NOT_FOUND", f"no theme activity of this bank has id {theme_no}")
    return theme, None


def prize_document(prize: engine.PrizeView) -> dict:
    document = {"id": prize.id, "name": prize.name, "type": prize.kind.upper(), "segment": prize.sort_order,
                "colour": prize.colour}
    if prize.points is not None:
        document["points"] = prize.points
    if prize.cash_fen is not None:
        document["amount"] = prize.cash_fen  # fen, as every amount of the API
    if prize.coupon_activity_id is not None:
        activity = db.session.get(CouponActivity, prize.coupon_activity_id)
        document.update(activityCode=activity.code, batchCode=activity.batch_no)
    return document


def draw_document(theme_no: str, outcome: engine.DrawOutcome) -> dict:
    return {"drawNo": outcome.draw_no, "themeNo": theme_no, "result": "WON" if outcome.won else "THANKS",
            "prize": prize_document(outcome.prize), "fulfilment": outcome.fulfilment_status.upper(),
            "drawsLeft": outcome.draws_left, "drawsLeftToday": outcome.draws_left_today,
            "drawnAt": format_local(outcome.drawn_at), "replayed": outcome.replayed}


@bp.post("/<theme_no>/draws")
@bank_client_required
def create_draw(theme_no: str):
    key = (request.headers.get("Idempotency-Key") or "").strip()
    if not key:
        return error(400, "IDEMPOTENCY_KEY_REQUIRED", "Idempotency-Key header is required")
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        return error(400, "INVALID_JSON", "the body must be a JSON object")
    open_id = data.get("openId")
    client = g.bank_client  # detached by bank_client_required: it stays loaded through the draw's commit
    try:
        outcome = engine.draw_for_bank(theme_no, client.org_id, open_id if isinstance(open_id, str) else "", key,
                                       api_client_id=client.id)
    except engine.DrawRefused as exc:
        if exc.code == "THEME_NOT_FOUND":
            return error(404, exc.code, f"no theme activity of this bank has id {theme_no}")
        return error(exc.status, exc.code, exc.message)
    response = jsonify(draw_document(theme_no, outcome))
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 200 if outcome.replayed else 201


@bp.get("/<theme_no>/draws/<draw_no>")
@bank_client_required
def show_draw(theme_no: str, draw_no: str):
    theme, missing = _theme_or_404(theme_no)
    if missing:
        return missing
    found = engine.find_draw(theme.id, draw_no)
    if found is None:
        return error(404, "DRAW_NOT_FOUND", f"no draw {draw_no} in theme activity {theme_no}")
    document = draw_document(theme_no, engine.outcome_of(found))
    document.pop("replayed")
    document.pop("drawsLeft")
    document.pop("drawsLeftToday")
    document["fulfilmentNote"] = found.fulfilment_note
    if found.coupon_issue_id:
        issue = db.session.get(CouponIssue, found.coupon_issue_id)
        document["coupon"] = {"orderNo": issue.order_no, "status": issue.status.upper(),
                              "thirdCouponId": issue.third_coupon_id}
    return jsonify(document)

