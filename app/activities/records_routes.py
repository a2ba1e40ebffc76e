"""Screens of a theme activity's draw records and gift shipping (blueprint `activity_records`):

- `/activities/<id>/draws`: every draw with its filters, sorting, paging and an xlsx export; a
  failed fulfilment retried (confirmed);
- `/activities/<id>/deliveries`: the gifts in three tabs (waiting for the address, to ship,
  shipped), each shipped with a tracking number in its row (confirmed) or many at once from the
  filled-in shipping list (xlsx); the contact shown masked, in full on demand; the shipping list
  exported (masked, or in full for those who ship).

Thin views over `app.activities.records`, which audits what must be (searches by openid, the
contact shown in full, shipping, retries, exports). The theme activity is fetched with the
tenancy helper: another bank's answers 404. Looking is `activities.view`; shipping, retrying,
seeing a contact in full and exporting it are `activities.manage`.
"""
from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, abort, flash, make_response, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from app.auth.forms import EmptyForm
from app.core.exports import EXPORT_ROW_LIMIT, Column, export_response, refuse_oversized_export
from app.core.htmx import htmx_targets, render_page, toast, trigger
from app.core.listing import ListParams, paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404
from app.core.timeutil import format_local
from app.extensions import db

from . import records
from .forms import STATUS_COLOURS, STATUS_LABELS
from .models import ThemeActivity
from .prizes import KIND_LABELS
from .services import effective_status

bp = Blueprint("activity_records", __name__, url_prefix="/activities")

VIEW, MANAGE = "activities.view", "activities.manage"
DRAWS_TEMPLATE = "activities/records/draws.html"
DELIVERIES_TEMPLATE = "activities/records/deliveries.html"
DRAWS_CHANGED = "theme-draws-changed"
DELIVERIES_CHANGED = "gift-deliveries-changed"
TOO_MANY_DRAWS = _l("%(total)s draws match, more than the %(limit)s an export may hold. Narrow the filters "
                    "(a shorter time range, one prize) and export again.")
TOO_MANY_GIFTS = _l("%(total)s gifts match, more than the %(limit)s an export may hold. Narrow the filters "
                    "and export again.")


def _theme(theme_id: int) -> ThemeActivity:
    return get_scoped_or_404(ThemeActivity, theme_id, current_user)


def _labels(theme: ThemeActivity, **context) -> dict:
    status = effective_status(theme)
    return dict(theme=theme, status=status, status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS,
                fulfilment_labels=records.FULFILMENT_LABELS, fulfilment_colours=records.FULFILMENT_COLOURS,
                channel_labels=records.CHANNEL_LABELS, result_labels=records.RESULT_LABELS, kind_labels=KIND_LABELS,
                manage=current_user.can(MANAGE), **context)


def _return_url(fallback: str) -> str:
    """The `next` path a form posted (a path of this site only), else `fallback`."""
    target = request.form.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else fallback


def _checked_form() -> None:
    if not EmptyForm().validate_on_submit():
        abort(400)


# --- the draw records -----------------------------------------------------------------------------

def _draw_params(theme: ThemeActivity) -> ListParams:
    params = parse_list_params(request.args, records.DRAW_FILTERS, default_sort="drawn_at")
    params.filters["theme_id"] = str(theme.id)  # fills the URL's <theme_id> in paging and sorting links
    return params


def _filters(params: ListParams) -> dict[str, str]:
    return {k: v for k, v in params.filters.items() if k not in ("theme_id", "tab")}


@bp.get("/<int:theme_id>/draws")
@login_required
@permission_required(VIEW)
def draws(theme_id: int):
    theme = _theme(theme_id)
    params = _draw_params(theme)
    filters = _filters(params)
    page = records.list_draws(current_user, theme, replace(params, filters=filters))
    return render_page(DRAWS_TEMPLATE, "draw_rows", targets=("draw-rows",), **_labels(
        theme, params=params, page=page, rows=records.draw_rows(theme, page.items), prizes=records.prizes_of(theme),
        narrowed=bool(filters), bad_openid=records.invalid_openid(filters),
        coupon_issue_links=current_user.can("coupons.view")))


def _draw_columns() -> list[Column]:
    def yes_no(value: bool) -> str:
        return _("Yes") if value else _("No")

    return [
        Column(_("Draw no."), lambda r: r.draw.draw_no),
        Column(_("Drawn at"), lambda r: format_local(r.draw.drawn_at)),
        Column(_("Customer (OpenID)"), lambda r: r.openid_masked),
        Column(_("Channel"), lambda r: str(records.CHANNEL_LABELS.get(r.draw.channel, r.draw.channel))),
        Column(_("Prize drawn"), lambda r: r.picked.name if r.picked else ""),
        Column(_("Prize awarded"), lambda r: r.prize.name if r.prize else ""),
        Column(_("Fell back"), lambda r: yes_no(r.fell_back)),
        Column(_("Won"), lambda r: yes_no(r.draw.won)),
        Column(_("Fulfilment"), lambda r: str(records.FULFILMENT_LABELS[r.draw.fulfilment_status])),
        Column(_("Fulfilment note"), lambda r: r.draw.fulfilment_note),
        Column(_("Coupon issue no."), lambda r: r.coupon_issue_no),
    ]


@bp.get("/<int:theme_id>/draws/export")
@login_required
@permission_required(VIEW)
def export_draws(theme_id: int):
    """The records under the current filters and order, as xlsx (at most 10,000 rows; openids masked; audited)."""
    theme = _theme(theme_id)
    params = _draw_params(theme)
    filters = _filters(params)
    stmt = records.sorted_draws(current_user, theme, replace(params, filters=filters))
    refused = refuse_oversized_export(records.count(stmt), EXPORT_ROW_LIMIT,
                                      url_for(".draws", **params.args(page=None)), TOO_MANY_DRAWS)
    if refused:
        return refused
    rows = records.draw_rows(theme, list(db.session.execute(stmt).scalars()))
    records.record_export("theme_draw.export", theme, filters, len(rows))
    return export_response(f"抽奖记录_{theme.theme_no}", "xlsx", _draw_columns(), rows)


@bp.post("/<int:theme_id>/draws/<int:draw_id>/retry")
@login_required
@permission_required(MANAGE)
def retry_fulfilment(theme_id: int, draw_id: int):
    """Hand a failed fulfilment over again (after its cause was fixed)."""
    theme = _theme(theme_id)
    _checked_form()
    if records.draw_in(current_user, theme, draw_id) is None:
        abort(404)
    outcome = records.retry_fulfilment(current_user, theme, [draw_id])[0]
    level = "success" if outcome.done else "warning"
    if htmx_targets("draw-rows"):
        return toast(trigger(make_response("", 204), DRAWS_CHANGED), outcome.message, level)
    flash(outcome.message, level)
    return redirect(_return_url(url_for(".draws", theme_id=theme.id)))


# --- the gifts ------------------------------------------------------------------------------------

def _tab() -> str:
    tab = request.values.get("tab", "to_ship")
    return tab if tab in records.DELIVERY_TABS else "to_ship"


def _delivery_params(theme: ThemeActivity, tab: str) -> ListParams:
    sort, direction = records.DELIVERY_DEFAULT_SORT[tab]
    params = parse_list_params(request.args, records.DELIVERY_FILTERS, default_sort=sort, default_direction=direction)
    params.filters.update(theme_id=str(theme.id), tab=tab)
    return params


def _deliveries_context(theme: ThemeActivity, tab: str, params: ListParams | None = None, **extra) -> dict:
    params = params or _delivery_params(theme, tab)
    stmt = records.sorted_deliveries(current_user, theme, tab, replace(params, filters=_filters(params)))
    page = paginate(stmt, params)
    gift_prizes = {i: p for i, p in records.prizes_of(theme).items() if p.kind == "gift"}
    return _labels(theme, tab=tab, tabs=records.DELIVERY_TAB_LABELS, counts=records.tab_counts(current_user, theme),
                   params=params, page=page, rows=records.delivery_rows(theme, page.items), prizes=gift_prizes,
                   narrowed=bool(_filters(params)), **extra)


@bp.get("/<int:theme_id>/deliveries")
@login_required
@permission_required(VIEW)
def deliveries(theme_id: int):
    theme = _theme(theme_id)
    return render_page(DELIVERIES_TEMPLATE, "delivery_rows", targets=("delivery-rows",),
                       **_deliveries_context(theme, _tab()))


def _delivery_columns() -> list[Column]:
    def contact(row, field: str) -> str:
        return getattr(row.masked, field) if row.masked else ""

    return [
        Column(_("Draw no."), lambda r: r.draw.draw_no),
        Column(_("Tracking no."), lambda r: r.delivery.tracking_no if r.delivery else ""),
        Column(_("Gift"), lambda r: r.prize.name if r.prize else ""),
        Column(_("Recipient"), lambda r: contact(r, "recipient")),
        Column(_("Phone"), lambda r: contact(r, "phone")),
        Column(_("Address"), lambda r: contact(r, "address")),
        Column(_("Status"), lambda r: str(records.FULFILMENT_LABELS[r.draw.fulfilment_status])),
        Column(_("Customer (OpenID)"), lambda r: r.openid_masked),
        Column(_("Drawn at"), lambda r: format_local(r.draw.drawn_at)),
        Column(_("Address given at"), lambda r: format_local(r.delivery.created_at) if r.delivery else ""),
        Column(_("Shipped at"), lambda r: format_local(r.delivery.shipped_at) if r.delivery else ""),
        Column(_("Shipped by"), lambda r: r.shipped_by),
    ]


@bp.get("/<int:theme_id>/deliveries/export")
@login_required
@permission_required(VIEW)
def export_deliveries(theme_id: int):
    """The tab's gifts under its filters, as xlsx: the contact masked, or in full (`full=1`, for those
    who ship); draw no. and tracking no. first, so the file can be filled in and uploaded. Audited."""
    theme = _theme(theme_id)
    tab = _tab()
    full = request.args.get("full") == "1"
    if full and not current_user.can(MANAGE):
        abort(403)
    params = _delivery_params(theme, tab)
    filters = _filters(params)
    stmt = records.sorted_deliveries(current_user, theme, tab, replace(params, filters=filters))
    refused = refuse_oversized_export(records.count(stmt), EXPORT_ROW_LIMIT,
                                      url_for(".deliveries", **params.args(page=None)), TOO_MANY_GIFTS)
    if refused:
        return refused
    rows = records.delivery_rows(theme, list(db.session.execute(stmt).scalars()), full=full)
    records.record_export("prize_delivery.export", theme, {**filters, "tab": tab}, len(rows), full=full)
    return export_response(f"礼品发货_{theme.theme_no}", "xlsx", _delivery_columns(), rows)


def _answer_ship(theme: ThemeActivity, draw_id: int, message: str, level: str):
    """After a ship from a row's form (htmx): the tabs refresh themselves and a toast says what
    happened. Without JavaScript: flash and back to the list."""
    if htmx_targets(f"ship-{draw_id}"):
        return toast(trigger(make_response("", 204), DELIVERIES_CHANGED), message, level)
    flash(message, level)
    return redirect(_return_url(url_for(".deliveries", theme_id=theme.id)))


@bp.post("/<int:theme_id>/deliveries/<int:draw_id>/ship")
@login_required
@permission_required(MANAGE)
def ship(theme_id: int, draw_id: int):
    """Ship one gift with the tracking number typed in its row. A number that is not one answers the
    row's form again with the message beside the field (what was typed kept)."""
    theme = _theme(theme_id)
    _checked_form()
    draw = records.draw_in(current_user, theme, draw_id)
    if draw is None:
        abort(404)
    typed = request.form.get("tracking_no", "")
    try:
        outcome = records.ship(current_user, theme, [draw_id], typed)[0]
    except records.InvalidTrackingNo as exc:
        if htmx_targets(f"ship-{draw_id}"):
            return render_block(DELIVERIES_TEMPLATE, "ship_form", row=records.DeliveryRow(draw, None, None, ""),
                                theme=theme, typed=typed, error=str(exc)), 422
        flash(str(exc), "warning")
        return redirect(_return_url(url_for(".deliveries", theme_id=theme.id)))
    return _answer_ship(theme, draw_id, outcome.message, "success" if outcome.done else "warning")


@bp.post("/<int:theme_id>/deliveries/<int:draw_id>/reveal")
@login_required
@permission_required(MANAGE)
def reveal(theme_id: int, draw_id: int):
    """One gift's recipient, phone and address in full, in place of the masked ones (audited)."""
    theme = _theme(theme_id)
    _checked_form()
    try:
        contact = records.reveal(current_user, theme, draw_id)
    except records.DeliveryNotFound:
        abort(404)
    return render_block(DELIVERIES_TEMPLATE, "contact_full", contact=contact, draw_id=draw_id)


@bp.post("/<int:theme_id>/deliveries/import")
@login_required
@permission_required(MANAGE)
def import_tracking_numbers(theme_id: int):
    """Ship the gifts of the uploaded shipping list (draw no., tracking no.); the page shows each row's outcome."""
    theme = _theme(theme_id)
    _checked_form()
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise records.ShippingFileError(_("Choose the filled-in shipping list (.xlsx)."))
        outcomes = records.ship_lines(current_user, theme, records.read_shipping_file(upload.stream))
    except records.ShippingFileError as exc:
        page = render_page(DELIVERIES_TEMPLATE, "delivery_rows", targets=("delivery-rows",),
                           **_deliveries_context(theme, "to_ship", import_error=str(exc)))
        return toast(make_response(page, 422), str(exc), "warning")
    shipped = sum(1 for o in outcomes if o.done)
    message = _("%(shipped)s shipped, %(other)s not, of %(n)s rows.", shipped=shipped, other=len(outcomes) - shipped,
                n=len(outcomes))
    page = render_page(DELIVERIES_TEMPLATE, "delivery_rows", targets=("delivery-rows",),
                       **_deliveries_context(theme, "to_ship", import_results=outcomes))
    return toast(page, message, "success" if shipped == len(outcomes) else "warning")
