"""Screens of coupon activities (活动优惠券管理): the list with its tunnel tabs, filters, batch
switch and export; the add and edit forms with validation while typing; a coupon activity's page;
enable / disable and terminate. Views parse, call `app.coupons.activities` and render.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, make_response, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from werkzeug.exceptions import HTTPException

from app.auth.forms import EmptyForm
from app.core.activity_window import default_window
from app.core.exports import EXPORT_ROW_LIMIT, Column, export_response, refuse_oversized_export, rows_for_export
from app.core.htmx import done, render_page, toast, trigger
from app.core.listing import ListParams, apply_sort, paginate, parse_list_params
from app.core.money import fen_to_yuan
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, org_names
from app.core.timeutil import format_local, local_day_range, parse_day, utcnow
from app.coupons import activities as services
from app.coupons.forms import (CHANNEL_LABELS, COUPON_TYPE_LABELS, ENABLED_LABELS, SETTLE_TYPE_LABELS, STATUS_COLOURS,
                               STATUS_LABELS, TUNNEL_LABELS, VALID_TYPE_LABELS, CouponActivityEditForm,
                               CouponActivityForm, discount_label, fill_choices)
from app.coupons.models import CouponActivity

bp = Blueprint("coupon_activities", __name__, url_prefix="/coupons/activities")

CHANGED_EVENT = "coupon-activities-changed"
# The export's file name is fixed by the requirements (活动优惠券列表_YYYYMMDD_HHMMSS.xlsx), in any language.
EXPORT_NAME = "活动优惠券列表"
TOO_MANY_ACTIVITIES = _l("%(total)s coupon activities match, more than the %(limit)s an export may hold. Narrow "
                         "the filters and export again.")


def _labels(**context):
    return dict(tunnel_labels=TUNNEL_LABELS, channel_labels=CHANNEL_LABELS, coupon_type_labels=COUPON_TYPE_LABELS,
                valid_type_labels=VALID_TYPE_LABELS, settle_type_labels=SETTLE_TYPE_LABELS,
                status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS, enabled_labels=ENABLED_LABELS,
                discount_label=discount_label, **context)


def _back_to(fallback: str) -> str:
    """Where a form said to return to (a path of this site), else the page it came from, else `fallback`."""
    target = request.form.get("next") or ""
    if target.startswith("/") and not target.startswith("//"):
        return target
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else fallback


# --- the list ---------------------------------------------------------------------------------------

def _sorts(now):
    return {"code": CouponActivity.code, "name": CouponActivity.name, "batch_no": CouponActivity.batch_no,
            "start_at": CouponActivity.start_at, "end_at": CouponActivity.end_at,
            "created_at": CouponActivity.created_at, "updated_at": CouponActivity.updated_at,
            "issued": CouponActivity.issued_count, "status": services.status_order(now)}


def _list_params() -> ListParams:
    params = parse_list_params(request.args, services.LIST_FILTERS, default_sort="created_at")
    params.filters["tunnel"] = services.tunnel_of(params.filters)
    return params


def _matching(params: ListParams, now):
    start, end = local_day_range(parse_day(params.filters.get("from")), parse_day(params.filters.get("to")))
    stmt = services.activities_matching(current_user, params.filters, now, start, end)
    return apply_sort(stmt, params, _sorts(now), CouponActivity.id)


def _row_names(items: list[CouponActivity]) -> dict:
    return dict(themes=services.theme_numbers(a.theme_activity_id for a in items),
                institutions=services.institution_names(a.institution_id for a in items),
                operators=services.operator_names([a.created_by for a in items] + [a.updated_by for a in items]),
                banks=org_names(current_user, {a.org_id for a in items}))


@bp.get("")
@login_required
@permission_required("coupons.view")
def list_activities():
    now = utcnow()
    params = _list_params()
    page = paginate(_matching(params, now), params)
    return render_page("coupons/activities/list.html", "activity_rows", targets=("activity-rows",), **_labels(
        page=page, params=params, now=now, tunnel_counts=services.tunnel_counts(current_user),
        **_row_names(page.items)))


def _export_columns(names: dict, now) -> list[Column]:
    def who(operator_id):
        return names["operators"].get(operator_id, "")

    return [
        Column(_("Code"), lambda a: a.code),
        Column(_("Name"), lambda a: a.name),
        Column(_("Bank"), lambda a: names["banks"].get(a.org_id, "")),
        Column(_("Batch no."), lambda a: a.batch_no),
        Column(_("Tunnel"), lambda a: str(TUNNEL_LABELS[a.tunnel])),
        Column(_("Channel"), lambda a: str(CHANNEL_LABELS[a.channel])),
        Column(_("Coupon type"), lambda a: str(COUPON_TYPE_LABELS[a.coupon_type])),
        Column(_("Face value (yuan)"), lambda a: fen_to_yuan(a.promo_amount_fen)),
        Column(_("Discount"), lambda a: discount_label(a.discount_bp)),
        Column(_("Threshold (yuan)"), lambda a: fen_to_yuan(a.threshold_fen)),
        Column(_("Theme activity id"), lambda a: names["themes"].get(a.theme_activity_id, "")),
        Column(_("Institution"), lambda a: names["institutions"].get(a.institution_id, "")),
        Column(_("Validity"), lambda a: str(VALID_TYPE_LABELS[a.valid_type])),
        Column(_("Valid days"), lambda a: a.valid_days),
        Column(_("Shown in mini-program"), lambda a: _("Yes") if a.show_in_miniprogram else _("No")),
        Column(_("Settled"), lambda a: _("Yes") if a.settled else _("No")),
        Column(_("Issued"), lambda a: a.issued_count),
        Column(_("Issue total"), lambda a: a.issue_total),
        Column(_("Per-customer limit"), lambda a: a.per_member_limit),
        Column(_("Start"), lambda a: format_local(a.start_at)),
        Column(_("End"), lambda a: format_local(a.end_at)),
        Column(_("Created"), lambda a: format_local(a.created_at)),
        Column(_("Creator"), lambda a: who(a.created_by)),
        Column(_("Modified"), lambda a: format_local(a.updated_at)),
        Column(_("Modifier"), lambda a: who(a.updated_by)),
        Column(_("Status"), lambda a: str(STATUS_LABELS[a.status_at(now)])),
        Column(_("In effect"), lambda a: str(ENABLED_LABELS[a.enabled])),
    ]


@bp.get("/export")
@login_required
@permission_required("coupons.view")
def export_activities():
    """The list's rows under its current tab, filters and order, as xlsx (at most 10,000 rows; audited)."""
    now = utcnow()
    params = _list_params()
    stmt = _matching(params, now)
    refused = refuse_oversized_export(services.count(stmt), EXPORT_ROW_LIMIT,
                                      url_for("coupon_activities.list_activities", **params.args(page=None)),
                                      TOO_MANY_ACTIVITIES)
    if refused:
        return refused
    rows = list(rows_for_export(stmt))
    services.record_export(params.filters, len(rows))
    return export_response(EXPORT_NAME, "xlsx", _export_columns(_row_names(rows), now), rows)


# --- switching and terminating ------------------------------------------------------------------------

def _switch_message(result: services.SwitchResult, enabled: bool) -> tuple[str, str]:
    parts = []
    if result.changed:
        parts.append(_("%(n)s coupon activities put in effect.", n=len(result.changed)) if enabled
                     else _("%(n)s coupon activities disabled.", n=len(result.changed)))
    if result.unchanged:
        parts.append(_("%(n)s already so.", n=len(result.unchanged)))
    if result.over:
        parts.append(_("%(n)s ended or terminated, left as they are.", n=len(result.over)))
    if result.theme_paused:
        parts.append(_("%(n)s not enabled: their theme activity is paused or over.", n=len(result.theme_paused)))
    if not parts:
        return _("None of the selected coupon activities could be changed."), "warning"
    return " ".join(parts), "success" if result.changed else "warning"


def _answer_switch(message: str, level: str):
    """Inside the list (htmx): toast and refresh the rows. Without JavaScript: flash and go back."""
    if request.headers.get("HX-Request") and not request.headers.get("HX-Boosted"):
        response = make_response("", 204)
        trigger(response, CHANGED_EVENT)
        return toast(response, message, level)
    flash(message, level)
    return redirect(_back_to(url_for("coupon_activities.list_activities")))


def _wanted_state() -> bool:
    value = request.form.get("enabled")
    if value not in ("0", "1"):
        abort(400)
    return value == "1"


@bp.post("/status")
@login_required
@permission_required("coupons.manage")
def switch_selected():
    """生效 / 失效 for the ticked rows."""
    if not EmptyForm().validate_on_submit():
        abort(400)
    enabled = _wanted_state()
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    if not ids:
        return _answer_switch(_("Tick the coupon activities to change first."), "warning")
    return _answer_switch(*_switch_message(services.set_enabled(current_user, ids, enabled), enabled))


def _posted_to(activity_id: int) -> CouponActivity:
    """The activity a POST names (404 when not visible), after the form's CSRF check (400 when it fails)."""
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    if not EmptyForm().validate_on_submit():
        abort(400)
    return activity


@bp.post("/<int:activity_id>/status")
@login_required
@permission_required("coupons.manage")
def switch_one(activity_id: int):
    activity = _posted_to(activity_id)
    enabled = _wanted_state()
    return _answer_switch(*_switch_message(services.set_enabled(current_user, [activity.id], enabled), enabled))


@bp.post("/<int:activity_id>/terminate")
@login_required
@permission_required("coupons.terminate")
def terminate_activity(activity_id: int):
    activity = _posted_to(activity_id)
    try:
        services.terminate(current_user, activity)
    except services.LifecycleError as exc:
        flash(str(exc), "warning")
    else:
        flash(_("Coupon activity %(name)s terminated. No more coupons will be issued from it.", name=activity.name),
              "success")
    return redirect(_back_to(url_for("coupon_activities.activity_detail", activity_id=activity.id)))


# --- one activity ----------------------------------------------------------------------------------

def _lazy_tabs(activity_id: int) -> list[tuple[str, str, str]]:
    """The issued-coupon and redemption tabs, where the reports have built their endpoints."""
    wanted = [("issues", _("Issued coupons"), f"/coupons/activities/{activity_id}/issues"),
              ("redemptions", _("Redemptions"), f"/coupons/activities/{activity_id}/redemptions")]
    adapter = current_app.url_map.bind("")
    tabs = []
    for key, label, path in wanted:
        try:
            adapter.match(path, method="GET")
        except HTTPException:  # not found (or not for GET): that tab is not built yet
            continue
        tabs.append((key, label, path))
    return tabs


@bp.get("/<int:activity_id>")
@login_required
@permission_required("coupons.view")
def activity_detail(activity_id: int):
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    now = utcnow()
    return render_page("coupons/activities/detail.html", **_labels(
        activity=activity, now=now, status=activity.status_at(now), theme=services.theme_of(activity),
        events=services.history(activity), tabs=_lazy_tabs(activity.id), **_row_names([activity])))


# --- add and edit ----------------------------------------------------------------------------------

def _form_page(form, activity=None, theme=None):
    return render_page("coupons/activities/form.html", "modal_body", targets=("modal-content",), **_labels(
        form=form, activity=activity, theme=theme)), 422 if form.errors else 200


def _parse(form) -> services.ActivityDetails:
    """Read the posted form; errors of fields the choices leave out are dropped (those fields are hidden)."""
    form.validate()
    details = form.details()
    for name in services.not_applicable(details):
        if name in form._fields:
            form._fields[name].errors = []
    return details


def _saved(form, activity: CouponActivity | None) -> CouponActivity | None:
    """Create (or update `activity`) from the posted form; None, with the errors on the form, when refused."""
    details = _parse(form)
    form.add_errors(services.problems(current_user, details, activity))
    if form.errors:
        return None
    try:
        if activity is None:
            return services.create_activity(current_user, details)
        return services.update_activity(current_user, activity, details)
    except services.InvalidActivity as exc:  # a rule another operator's save broke in the meantime
        form.add_errors(exc.errors)
        return None


@bp.route("/new", methods=["GET", "POST"])
@login_required
@permission_required("coupons.manage")
def create_activity():
    form = CouponActivityForm()
    fill_choices(form, services.bank_choices(current_user))
    if not form.is_submitted():
        form.start_at.data, form.end_at.data = default_window()
        if current_user.org.kind == "bank":
            form.org_id.data = current_user.org_id
        return _form_page(form)
    activity = _saved(form, None)
    if activity is None:
        return _form_page(form)
    return done(_("Coupon activity %(name)s created with code %(code)s.", name=activity.name, code=activity.code),
                CHANGED_EVENT, redirect_to=url_for("coupon_activities.activity_detail", activity_id=activity.id))


@bp.route("/<int:activity_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("coupons.manage")
def edit_activity(activity_id: int):
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user)
    theme = services.theme_of(activity)
    form = CouponActivityEditForm.for_activity(activity) if request.method == "GET" else CouponActivityEditForm()
    if request.method == "GET":
        if services.is_over(activity):
            form.add_errors({"name": _("This coupon activity has ended or was terminated: it can only be viewed.")})
        return _form_page(form, activity, theme)
    if _saved(form, activity) is None:
        return _form_page(form, activity, theme)
    return done(_("Coupon activity %(name)s saved.", name=activity.name), CHANGED_EVENT,
                redirect_to=url_for("coupon_activities.activity_detail", activity_id=activity.id))


@bp.post("/validate/<field>")
@login_required
@permission_required("coupons.manage")
def validate_field(field: str):
    """Validation while typing: the message for one field (empty when it is fine), from the same rules as saving."""
    activity_id = request.args.get("activity_id", type=int)
    activity = get_scoped_or_404(CouponActivity, activity_id, current_user) if activity_id else None
    form = CouponActivityEditForm() if activity else CouponActivityForm()
    if field not in form._fields:
        abort(404)
    details = _parse(form)
    if form[field].errors:
        return str(form[field].errors[0])
    return services.problems(current_user, details, activity).get(field, "")


@bp.get("/themes")
@login_required
@permission_required("coupons.manage")
def theme_options():
    """Type-ahead of the theme activities a coupon activity may be linked to (by 10-digit id or name),
    with what the typed text resolves to."""
    text = request.args.get("theme", "")
    themes = services.linkable_themes(current_user, text)
    chosen_no = services.theme_no_in(text)
    chosen = next((t for t in themes if t.theme_no == chosen_no), None)
    return render_block("coupons/activities/form.html", "theme_options", themes=themes, text=text.strip(),
                        chosen=chosen, bank_names=org_names(current_user, {t.org_id for t in themes}))

