"""Screens of theme activities (主题活动管理): the list with its filters, batch pause and export; the
add and edit forms with the background upload and validation while typing; a theme activity's
page with its lazy tabs (batch data, enrolled institutions, linked banks, QR code and link);
pause and enable. Views parse, call `app.activities` services and render.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, abort, flash, make_response, redirect, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import select

from app.activities import backgrounds, entry, lifecycle, links, services
from app.activities.forms import (LINK_OUTCOME_LABELS, STATUS_COLOURS, STATUS_LABELS, WHEEL_LABELS,
                                  ThemeActivityEditForm, ThemeActivityForm)
from app.activities.models import ThemeActivity
from app.auth.forms import EmptyForm
from app.core.activity_window import default_window
from app.core.exports import EXPORT_ROW_LIMIT, Column, export_response, refuse_oversized_export, rows_for_export
from app.core.htmx import done, htmx_targets, render_page, toast, trigger
from app.core.listing import ListParams, apply_sort, paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404
from app.core.timeutil import format_local, local_day_range, parse_day, utcnow
from app.coupons.models import PartnerBank
from app.extensions import db

bp = Blueprint("activities", __name__, url_prefix="/activities")

VIEW, MANAGE = "activities.view", "activities.manage"
CHANGED_EVENT = "theme-activities-changed"
EXPORT_NAME = "主题活动列表"  # the file name §3.1 asks for: 主题活动列表_YYYYMMDD_HHMMSS.xlsx
TABS = ("details", "batches", "institutions", "banks", "entry")
TOO_MANY_THEMES = _l("%(total)s theme activities match, more than the %(limit)s an export may hold. Narrow the "
                     "filters and export again.")


def _labels(**context):
    return dict(status_labels=STATUS_LABELS, status_colours=STATUS_COLOURS, wheel_labels=WHEEL_LABELS,
                effective_status=services.effective_status, **context)


def _return_url(fallback: str) -> str:
    """The `next` path a form posted (a path of this site only), else `fallback`."""
    target = request.form.get("next") or ""
    return target if target.startswith("/") and not target.startswith("//") else fallback


# --- the list ---------------------------------------------------------------------------------------

def _sorts(now):
    return {"theme_no": ThemeActivity.theme_no, "name": ThemeActivity.name, "start_at": ThemeActivity.start_at,
            "end_at": ThemeActivity.end_at, "created_at": ThemeActivity.created_at,
            "updated_at": ThemeActivity.updated_at, "status": services.status_order(now)}


def _list_params() -> ListParams:
    return parse_list_params(request.args, services.LIST_FILTERS, default_sort="created_at")


def _matching(params: ListParams, now):
    start, end = local_day_range(parse_day(params.filters.get("from")), parse_day(params.filters.get("to")))
    stmt = services.themes_matching(current_user, params.filters, now, start, end)
    return apply_sort(stmt, params, _sorts(now), ThemeActivity.id)


@bp.get("")
@login_required
@permission_required(VIEW)
def list_activities():
    now = utcnow()
    params = _list_params()
    page = paginate(_matching(params, now), params)
    return render_page("activities/list.html", "theme_rows", targets=("theme-rows",), **_labels(
        page=page, params=params, now=now, picked_bank=_visible_bank(params.filters.get("partner_bank_id")),
        **services.row_names(page.items)))


def _visible_bank(bank_id) -> PartnerBank | None:
    """The bank a filter or form names, if the operator sees it (for showing it as picked)."""
    return services.visible_bank(current_user, bank_id)


def _export_columns(names: dict, now) -> list[Column]:
    def limit(value):
        return _("No cap") if value is None else value

    return [
        Column(_("Theme activity id"), lambda t: t.theme_no),
        Column(_("Position number"), lambda t: t.position_no),
        Column(_("Theme name"), lambda t: t.name),
        Column(_("Enrolling institution"), lambda t: names["institutions"].get(t.institution_id, "")),
        Column(_("Bank"), lambda t: names["banks"].get(t.partner_bank_id, "")),
        Column(_("Start"), lambda t: format_local(t.start_at)),
        Column(_("End"), lambda t: format_local(t.end_at)),
        Column(_("Participations per customer, in all"), lambda t: limit(t.participation_limit)),
        Column(_("Participations per customer, per day"), lambda t: limit(t.daily_limit)),
        Column(_("Wheel on"), lambda t: _("Yes") if t.wheel_enabled else _("No")),
        Column(_("Status"), lambda t: str(STATUS_LABELS[services.effective_status(t, now)])),
        Column(_("Creator"), lambda t: names["operators"].get(t.created_by, "")),
        Column(_("Created"), lambda t: format_local(t.created_at)),
        Column(_("Last modifier"), lambda t: names["operators"].get(t.updated_by, "")),
        Column(_("Modified"), lambda t: format_local(t.updated_at)),
    ]


@bp.get("/export")
@login_required
@permission_required(VIEW)
def export_activities():
    """The list's rows under its current filters and order, as xlsx (at most 10,000 rows; audited)."""
    now = utcnow()
    params = _list_params()
    stmt = _matching(params, now)
    refused = refuse_oversized_export(services.count(stmt), EXPORT_ROW_LIMIT,
                                      url_for("activities.list_activities", **params.args(page=None)), TOO_MANY_THEMES)
    if refused:
        return refused
    rows = list(rows_for_export(stmt))
    services.record_export(params.filters, len(rows))
    return export_response(EXPORT_NAME, "xlsx", _export_columns(services.row_names(rows), now), rows)


# --- pause and enable ---------------------------------------------------------------------------------

def _switch_message(result: lifecycle.SwitchResult, status: str) -> tuple[str, str]:
    done_text = (_("%(n)s theme activities paused; their coupon activities are disabled until enabled again.",
                   n=len(result.changed)) if status == "paused"
                 else _("%(n)s theme activities enabled; the coupon activities the pause disabled are in effect again.",
                        n=len(result.changed)))
    parts = [done_text] if result.changed else []
    if result.skipped:
        parts.append(_("%(n)s skipped: only active ones can be paused.", n=len(result.skipped)) if status == "paused"
                     else _("%(n)s skipped: only paused ones can be enabled.", n=len(result.skipped)))
    if not parts:
        return _("None of the selected theme activities could be changed."), "warning"
    return " ".join(parts), "success" if result.changed else "warning"


def _answer_switch(message: str, level: str):
    """From the list or the page (htmx): toast, refresh, clear the selection. Without JavaScript: flash and go back."""
    if htmx_targets("theme-rows", "theme-detail"):
        response = make_response("", 204)
        trigger(response, CHANGED_EVENT)
        trigger(response, "selection-cleared", "theme-activities")
        return toast(response, message, level)
    flash(message, level)
    return redirect(_return_url(url_for("activities.list_activities")))


def _wanted_status() -> str:
    status = request.form.get("status")
    if status not in lifecycle.TRANSITIONS or not EmptyForm().validate_on_submit():
        abort(400)
    return status


@bp.post("/status")
@login_required
@permission_required(MANAGE)
def switch_selected():
    """Batch pause (or enable) of the ticked rows, on every page of the list."""
    status = _wanted_status()
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    if not ids:
        return _answer_switch(_("Tick the theme activities to change first."), "warning")
    return _answer_switch(*_switch_message(lifecycle.switch(current_user, ids, status), status))


@bp.post("/<int:theme_id>/status")
@login_required
@permission_required(MANAGE)
def switch_one(theme_id: int):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    status = _wanted_status()
    return _answer_switch(*_switch_message(lifecycle.switch(current_user, [theme.id], status), status))


# --- add and edit ------------------------------------------------------------------------------------

def _form_page(form: ThemeActivityForm, theme: ThemeActivity | None = None):
    picked_bank = _visible_bank(form.partner_bank_id.data) if form.partner_bank_id is not None else None
    names = services.row_names([theme]) if theme else {}
    page = render_page("activities/form.html", "modal_body", targets=("modal-content",), **_labels(
        form=form, theme=theme, picked_bank=picked_bank, **names))
    return page, 422 if form.has_errors else 200


def _take_upload(form: ThemeActivityForm) -> None:
    """A background posted with the form is checked and kept as pending; the form then refers to it."""
    upload = request.files.get("background")
    if upload is None or not upload.filename:
        return
    try:
        form.background_ref.data = backgrounds.store_pending(upload.stream)
    except backgrounds.InvalidImage as exc:
        form.background_error = str(exc)


def _posted(form: ThemeActivityForm) -> services.ThemeDetails:
    form.validate()
    _take_upload(form)
    return form.details()


def _own_bank_id() -> int | None:
    """A bank operator's own bank, chosen in advance on the add form."""
    return db.session.execute(select(PartnerBank.id).where(PartnerBank.org_id == current_user.org_id,
                                                              PartnerBank.status == "normal")).scalar()


@bp.route("/new", methods=["GET", "POST"])
@login_required
@permission_required(MANAGE)
def create_activity():
    form = ThemeActivityForm()
    if not form.is_submitted():
        form.start_at.data, form.end_at.data = default_window()
        form.partner_bank_id.data = _own_bank_id()
        return _form_page(form)
    details = _posted(form)
    form.add_errors(services.problems(current_user, details))
    if not form.has_errors:
        try:
            theme = services.create_theme(current_user, details)
        except services.InvalidTheme as exc:
            form.add_errors(exc.errors)
        else:
            return done(_("Theme activity %(name)s created with id %(id)s.", name=theme.name, id=theme.theme_no),
                        CHANGED_EVENT, redirect_to=url_for("activities.activity_detail", theme_id=theme.id))
    return _form_page(form)


@bp.route("/<int:theme_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required(MANAGE)
def edit_activity(theme_id: int):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    if request.method == "GET":
        form = ThemeActivityEditForm.for_theme(theme)
        if services.is_view_only(theme):
            form.add_errors({"name": _("This theme activity has expired: it can only be viewed.")})
        return _form_page(form, theme)
    form = ThemeActivityEditForm()
    details = _posted(form)
    form.add_errors(services.problems(current_user, details, theme))
    if not form.has_errors:
        try:
            services.update_theme(current_user, theme, details)
        except services.InvalidTheme as exc:
            form.add_errors(exc.errors)
        else:
            return done(_("Theme activity %(name)s saved.", name=theme.name), CHANGED_EVENT,
                        redirect_to=url_for("activities.activity_detail", theme_id=theme.id))
    return _form_page(form, theme)


@bp.post("/validate/<field>")
@login_required
@permission_required(MANAGE)
def validate_field(field: str):
    """Validation while typing: the message for one field (empty when it is fine), from the same rules as saving."""
    theme_id = request.args.get("theme_id", type=int)
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user) if theme_id else None
    form = ThemeActivityEditForm() if theme else ThemeActivityForm()
    if field not in form._fields or field == "background_ref":
        abort(404)
    form.validate()
    if form[field].errors:
        return str(form[field].errors[0])
    return services.problems(current_user, form.details(), theme).get(field, "")


@bp.post("/backgrounds")
@login_required
@permission_required(MANAGE)
def upload_background():
    """The image chosen in the form, checked and kept as pending at once; answers the field with its preview."""
    theme_id = request.args.get("theme_id", type=int)
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user) if theme_id else None
    form = ThemeActivityForm()
    _take_upload(form)
    return render_block("activities/form.html", "background_field", form=form, theme=theme,
                        ref=form.background_ref.data or None, error=form.background_error)


@bp.get("/backgrounds/<path:ref>")
@login_required
@permission_required(MANAGE)
def pending_background(ref: str):
    """A pending image, shown in the form that chose it (its random name is the only way to it)."""
    if not backgrounds.is_ref(ref, pending=True) or not backgrounds.exists(ref):
        abort(404)
    return send_file(backgrounds.path_of(ref), mimetype=backgrounds.mimetype_of(ref), max_age=0)


@bp.get("/<int:theme_id>/background")
@login_required
@permission_required(VIEW)
def background(theme_id: int):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    if not backgrounds.exists(theme.background_image):
        abort(404)
    return send_file(backgrounds.path_of(theme.background_image), mimetype=backgrounds.mimetype_of(
        theme.background_image), max_age=3600)


# --- one theme activity and its tabs -------------------------------------------------------------------

def _tab_context(theme: ThemeActivity, tab: str, **extra) -> dict:
    """What the page needs with `tab` open (only the open tab's data is read)."""
    now = utcnow()
    context = _labels(theme=theme, tab=tab, now=now, status=services.effective_status(theme, now),
                      link_kinds=links.KINDS, outcome_labels=LINK_OUTCOME_LABELS, **extra)
    context.update(services.row_names([theme]))
    if tab == "details":
        context["events"] = services.history(theme)
    elif tab == "batches":
        context["batches"] = services.batch_data(theme)
    elif tab in links.KINDS:
        context.setdefault("link_rows", links.list_links(links.KINDS[tab], theme))
    elif tab == "entry":
        context["entry_url"] = entry.entry_url(theme, request.host_url)
    return context


def _show(theme: ThemeActivity, tab: str, status: int = 200, **extra):
    block = "link_tab" if tab in links.KINDS else f"tab_{tab}"
    page = render_page("activities/detail.html", block, targets=(f"tab-{tab}",), **_tab_context(theme, tab, **extra))
    return make_response(page, status)


@bp.get("/<int:theme_id>")
@login_required
@permission_required(VIEW)
def activity_detail(theme_id: int):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    tab = request.args.get("tab", "details")
    return _show(theme, tab if tab in TABS else "details")


@bp.get("/<int:theme_id>/<any(batches, institutions, banks, entry):tab>")
@login_required
@permission_required(VIEW)
def activity_tab(theme_id: int, tab: str):
    """A lazy tab: only its content for the page's htmx request, the whole page with it open otherwise."""
    return _show(get_scoped_or_404(ThemeActivity, theme_id, current_user), tab)


@bp.get("/<int:theme_id>/qr.png")
@login_required
@permission_required(VIEW)
def qr_code(theme_id: int):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    png = entry.qr_png(entry.entry_url(theme, request.host_url))
    response = make_response(png)
    response.mimetype = "image/png"
    if request.args.get("download"):
        response.headers["Content-Disposition"] = f'attachment; filename="theme_{theme.theme_no}_qr.png"'
    return response


# --- the enrolled institutions and linked banks ---------------------------------------------------------

def _kind(name: str) -> links.LinkKind:
    return links.KINDS[name]


def _answer_links(theme: ThemeActivity, kind: str, message: str, level: str, status: int = 200, **extra):
    """Inside the tab (htmx): the tab again with a toast. Without JavaScript: flash and back to the tab."""
    if htmx_targets(f"tab-{kind}"):
        return toast(_show(theme, kind, status, **extra), message, level)
    flash(message, level)
    return redirect(url_for("activities.activity_tab", theme_id=theme.id, tab=kind))


@bp.post("/<int:theme_id>/<any(institutions, banks):kind>")
@login_required
@permission_required(MANAGE)
def add_link(theme_id: int, kind: str):
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        party = links.add_link(current_user, _kind(kind), theme, request.form.get("party_id", type=int))
    except links.LinkError as exc:
        return _answer_links(theme, kind, str(exc), "warning", 422)
    return _answer_links(theme, kind, _("%(name)s added.", name=party.name), "success")


@bp.post("/<int:theme_id>/<any(institutions, banks):kind>/delete")
@login_required
@permission_required(MANAGE)
def remove_links(theme_id: int, kind: str):
    """Delete one or the ticked rows; rows with linked data stay, and the answer says why."""
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    if not EmptyForm().validate_on_submit():
        abort(400)
    ids = [int(i) for i in request.form.getlist("link_ids") if i.isdigit()]
    if not ids:
        return _answer_links(theme, kind, _("Tick the rows to delete first."), "warning")
    try:
        result = links.remove_links(current_user, _kind(kind), theme, ids)
    except links.LinkError as exc:
        return _answer_links(theme, kind, str(exc), "warning", 422)
    parts = [_("%(n)s deleted.", n=len(result.removed))] if result.removed else []
    parts += [_("%(code)s kept: %(why)s", code=code, why=why) for code, why in result.kept]
    return _answer_links(theme, kind, " ".join(parts) or _("Nothing was deleted."),
                         "success" if result.removed and not result.kept else "warning")


@bp.get("/<int:theme_id>/<any(institutions, banks):kind>/template")
@login_required
@permission_required(VIEW)
def link_template(theme_id: int, kind: str):
    get_scoped_or_404(ThemeActivity, theme_id, current_user)
    link_kind = _kind(kind)
    response = make_response(links.template_workbook(link_kind))
    response.mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response.headers["Content-Disposition"] = (f"attachment; filename=\"template.xlsx\"; "
                                               f"filename*=UTF-8''{quote(link_kind.template_name)}.xlsx")
    return response


@bp.post("/<int:theme_id>/<any(institutions, banks):kind>/import")
@login_required
@permission_required(MANAGE)
def import_links(theme_id: int, kind: str):
    """Import the filled-in template; the tab shows each row's outcome (with or without JavaScript)."""
    theme = get_scoped_or_404(ThemeActivity, theme_id, current_user)
    if not EmptyForm().validate_on_submit():
        abort(400)
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise links.ImportFileError(_("Choose the filled-in template (.xlsx)."))
        codes = links.read_codes(upload.stream)
        results = links.import_links(current_user, _kind(kind), theme, codes)
    except (links.ImportFileError, links.LinkError) as exc:
        return toast(_show(theme, kind, 422, import_error=str(exc)), str(exc), "warning")
    added = sum(1 for r in results if r.outcome == "added")
    failed = sum(1 for r in results if not r.ok)
    message = _("%(added)s added, %(failed)s not imported, of %(n)s rows.", added=added, failed=failed, n=len(results))
    return toast(_show(theme, kind, import_results=results), message, "warning" if failed else "success")
