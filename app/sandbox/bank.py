"""A partner bank's back end, for the demo: the endpoint our issuance and redemption notifications
are sent to (`POST /sandbox/bank/notify/<kind>`), as a bank's system would take them.

It checks each notification the way a bank is told to: the `Authorization` header's three-line
LKLAPI signature (timestamp, nonce_str, body) with our certificate for the bank's API client that
`Lklapi-Serial` names, and a timestamp within ±300 s. A notification that verifies is answered
`{"code":"SUCCESS"}` (200); anything else `{"code":"FAIL"}` (401), which makes our outbox retry.
It keeps nothing: what was sent, and every try, is in our own notification history (the issuance
monitor).
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.coupons.models import BankApiClient
from app.extensions import csrf, db
from app.providers import lklapi

bp = Blueprint("sandbox_bank", __name__, url_prefix="/sandbox/bank")
WINDOW_SECONDS = 300


def _our_certificate(serial: str | None) -> str | None:
    if not serial:
        return None
    return db.session.execute(select(BankApiClient.our_cert).where(BankApiClient.our_serial_no == serial)).scalar()


@bp.post("/notify/<any(issued, redeemed):kind>")
@csrf.exempt
def notify(kind: str):
    certificate = _our_certificate(request.headers.get("Lklapi-Serial"))
    if certificate is None:
        return jsonify(code="FAIL", msg="unknown Lklapi-Serial"), 401
    try:
        auth = lklapi.verify_callback(request.headers.get("Authorization"), request.get_data(), certificate)
    except lklapi.SignatureError as exc:
        return jsonify(code="FAIL", msg=str(exc)), 401
    if not lklapi.is_fresh(auth.timestamp, WINDOW_SECONDS):
        return jsonify(code="FAIL", msg="stale timestamp"), 401
    return jsonify(code="SUCCESS", msg="ok")
