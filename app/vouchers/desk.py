"""The front desk: scan a voucher, see what it is, confirm, print the receipt, undo."""
from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.core.htmx import render_page, toast
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404
from app.extensions import db
from app.members.models import Member
from app.orgs.models import Organisation
from app.providers.vouchers import PLATFORMS, VoucherError
from app.vouchers import verification as services
from app.vouchers.models import Voucher, VoucherVerification
from app.vouchers.platforms import PLATFORM_LABELS

bp = Blueprint("desk", __name__, url_prefix="/desk")

TEMPLATE = "vouchers/desk.html"


def _page(block: str = "desk_result", status: int = 200, **context):
    context.setdefault("platform_labels", PLATFORM_LABELS)
    context.setdefault("chosen_platform", request.form.get("platform", "") if request.method == "POST" else "")
    html = render_page(TEMPLATE, block, targets=("desk-result",), **context)
    return html, status


def _int(name: str) -> int | None:
    value = (request.form.get(name) or "").strip()
    return int(value) if value.isdigit() else None


def _error(message, verification=None, status: int = 200):
    """A failure card (red): refusals are answers, not server errors, so they swap like any result."""
    return _page(error=str(message), verification=verification, status=status)


@bp.get("")
@login_required
@permission_required("frontdesk.verify")
def desk():
    return render_template(TEMPLATE, platform_labels=PLATFORM_LABELS, chosen_platform=request.args.get("platform", ""))


@bp.post("/preview")
@login_required
@permission_required("frontdesk.verify")
def preview():
    platform = request.form.get("platform") or None
    if platform not in PLATFORMS:
        platform = None
    try:
        found = services.preview(current_user, request.form.get("code", ""), platform)
    except services.AlreadyVerified as exc:
        return _error(exc.message, exc.verification)
    except services.DeskError as exc:
        return _error(exc.message)
    except VoucherError as exc:
        return _error(exc.message)
    return _page(preview=found)


@bp.post("/confirm")
@login_required
@permission_required("frontdesk.verify")
def confirm():
    voucher_id = _int("voucher_id")
    if voucher_id is None:
        abort(400)
    count = _int("count") or 1
    try:
        verification = services.confirm(current_user, voucher_id, request.form.get("request_id", ""), count,
                                        phone=request.form.get("phone"), member_id=_int("member_id"),
                                        session_id=_int("session_id"), member_name=request.form.get("member_name"))
    except services.DeskError as exc:
        return _error(exc.message, exc.verification)
    except VoucherError as exc:
        return _error(exc.message)
    html, status = _page(verification=verification, retry=_retry_fields())
    if verification.status == "verified":
        return toast(html, _("Verified."))
    return html, status


def _retry_fields() -> dict[str, str]:
    """The confirm form's fields, to retry an unknown outcome with the same request id."""
    names = ("voucher_id", "request_id", "count", "phone", "member_id", "member_name", "session_id")
    return {name: request.form.get(name, "") for name in names if request.form.get(name)}


@bp.post("/verifications/<int:verification_id>/undo")
@login_required
@permission_required("vouchers.undo")
def undo(verification_id: int):
    get_scoped_or_404(VoucherVerification, verification_id, current_user)
    try:
        verification = services.undo(current_user, verification_id, request.form.get("reason", ""))
    except services.DeskError as exc:
        return _error(exc.message, services.get_verification(current_user, verification_id))
    except VoucherError as exc:
        return _error(exc.message, services.get_verification(current_user, verification_id))
    return toast(_page(verification=verification)[0], _("The verification was undone."))


@bp.get("/recent")
@login_required
@permission_required("frontdesk.verify")
def recent():
    rows = services.recent(current_user)
    return render_template("vouchers/desk_recent.html", rows=rows, platform_labels=PLATFORM_LABELS)


@bp.get("/receipts/<int:verification_id>")
@login_required
@permission_required("frontdesk.verify")
def receipt(verification_id: int):
    verification = get_scoped_or_404(VoucherVerification, verification_id, current_user)
    if verification.status not in ("verified", "undone"):
        abort(404)
    voucher = db.session.get(Voucher, verification.voucher_id)
    member = db.session.get(Member, verification.member_id) if verification.member_id else None
    org = db.session.get(Organisation, verification.org_id)
    return render_template("vouchers/desk_receipt.html", v=verification, voucher=voucher, member=member, org=org,
                           platform_labels=PLATFORM_LABELS)
