"""Master data screens (/masterdata/...): institutions and banks (one set of views serves both,
configured by `PartyScreen`), position numbers, exports, and the type-ahead pickers that the
activity forms embed (`templates/macros/pickers.html`).

Changing master data needs `masterdata.manage`; the pickers answer anyone who works with coupon
or theme activities (`coupons.view`, `coupons.manage`) as well.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import Select, func, select

from app.auth.forms import EmptyForm
from app.core.choices import options
from app.core.exports import (EXPORT_ROW_LIMIT, FORMATS, Column, export_response, refuse_oversized_export,
                              rows_for_export)
from app.core.htmx import done, render_page, toast, trigger
from app.core.listing import ListParams, apply_sort, paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import org_choices, org_names, require_visible_org, scoped
from app.core.timeutil import format_local
from app.coupons import masterdata
from app.coupons.masterdata import KIND_LABELS, POSITION_STATUS_LABELS, STATUS_LABELS
from app.coupons.masterdata_forms import (BankForm, InstitutionForm, PositionBulkForm, PositionNoteForm,
                                          PositionNumberForm)
from app.coupons.models import Institution, PartnerBank, PositionNumber
from app.extensions import db

bp = Blueprint("masterdata", __name__, url_prefix="/masterdata")

MANAGE = "masterdata.manage"
PICKER_PERMISSIONS = ("coupons.view", "coupons.manage", "activities.view", "activities.manage", MANAGE)
_PICKER_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def picker_allowed(view: Callable) -> Callable:
    """Like `permission_required`, but any one of PICKER_PERMISSIONS will do."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not any(current_user.can(p) for p in PICKER_PERMISSIONS):
            abort(403)
        return view(*args, **kwargs)

    return login_required(wrapped)


def _status_code(form) -> int:
    """409 when a field holds a duplicate (code, organisation, number), else 422 for other errors."""
    if not form.errors:
        return 200
    return 409 if getattr(form, "conflict", False) else 422


def _attach(form, exc: masterdata.MasterDataError) -> None:
    field = form[exc.field] if exc.field in form._fields else next(iter(form))
    field.errors = [*field.errors, str(exc)]
    form.conflict = getattr(form, "conflict", False) or exc.conflict


def _export_limit() -> int:
    """§3: an export holds at most 10,000 rows (less if the deployment sets a lower EXPORT_MAX_ROWS)."""
    return min(EXPORT_ROW_LIMIT, current_app.config["EXPORT_MAX_ROWS"])


def _export_format() -> str:
    fmt = request.args.get("format", "xlsx")
    if fmt not in FORMATS:
        abort(404)
    return fmt


def _count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


def _export(model: type, stmt: Select, params: ListParams, list_endpoint: str, name: str, columns: list[Column]):
    """The export of a list page with its current filters: refused above the limit, else audited and sent."""
    fmt = _export_format()
    total = _count(stmt)
    refused = refuse_oversized_export(total, _export_limit(), url_for(list_endpoint, **params.args(page=None)))
    if refused:
        return refused
    masterdata.record_export(model, fmt, {"q": params.q, **params.filters} if params.q else params.filters, total)
    return export_response(name, fmt, columns, rows_for_export(stmt))


# --- institutions and banks -------------------------------------------------------------------

@dataclass(frozen=True)
class PartyScreen:
    """How the institution and bank screens differ: model, form, words and endpoint names."""

    plural: str  # URL segment and endpoint suffix: "institutions" / "banks"
    singular: str
    model: type
    form: type
    title: Any
    new_label: Any
    export_name: Any

    def endpoint(self, action: str) -> str:
        plural_actions = {"list", "export", "search"}
        noun = self.plural if action in plural_actions else self.singular
        name = {"status": f"set_{noun}_status", "validate": f"validate_{noun}_code"}.get(action, f"{action}_{noun}")
        return f"masterdata.{name}"


SCREENS = {
    "institutions": PartyScreen("institutions", "institution", Institution, InstitutionForm, _l("Institutions"),
                                _l("New institution"), _l("Institutions")),
    "banks": PartyScreen("banks", "bank", PartnerBank, BankForm, _l("Banks"), _l("New bank"), _l("Banks")),
}
PARTY_FILTERS = ("kind", "status")


def _party_sorts(model: type) -> dict:
    return {"code": model.code, "name": model.name, "created_at": model.created_at}


def _party_context(screen: PartyScreen, **context) -> dict:
    return dict(screen=screen, kind_labels=KIND_LABELS, status_labels=STATUS_LABELS, **context)


def list_parties(screen_key: str):
    screen = SCREENS[screen_key]
    params = parse_list_params(request.args, PARTY_FILTERS, default_sort="code", default_direction="asc")
    stmt = apply_sort(masterdata.parties_matching(screen.model, params), params, _party_sorts(screen.model),
                      screen.model.id)
    page = paginate(stmt, params)
    names = org_names(current_user, {row.org_id for row in page.items}) if screen.model is PartnerBank else {}
    return render_page("coupons/masterdata/parties.html", "party_rows", targets=("party-rows",),
                       **_party_context(screen, page=page, params=params, org_names=names))


def _party_form(screen: PartyScreen, row=None):
    form = screen.form(obj=row)
    if screen.model is PartnerBank:
        form.org_id.choices = options(org_choices(current_user, ("bank",)))
    return form


def _posted_org(form):
    """The organisation a bank form names (404 if it is not one the operator may choose)."""
    if "org_id" not in form._fields or not form.org_id.data:
        return None
    return require_visible_org(current_user, form.org_id.data)


def _party_form_page(screen: PartyScreen, form, row=None):
    page = render_page("coupons/masterdata/party_form.html", "modal_body", targets=("modal-content",),
                       **_party_context(screen, form=form, row=row))
    return page, _status_code(form)


def edit_party(screen_key: str, row_id: int | None = None):
    screen = SCREENS[screen_key]
    row = db.get_or_404(screen.model, row_id) if row_id is not None else None
    form = _party_form(screen, row)
    if form.validate_on_submit():
        try:
            if row is None:
                row = masterdata.create_party(screen.model, form.details(), _posted_org(form))
                message = _("%(name)s added.", name=row.name)
            else:
                masterdata.update_party(row, form.details(), _posted_org(form))
                message = _("%(name)s saved.", name=row.name)
        except masterdata.MasterDataError as exc:
            _attach(form, exc)
        else:
            return done(message, f"{screen_key}-changed", redirect_to=url_for(screen.endpoint("list")))
    elif form.is_submitted() and form.code.data and not form.code.errors:
        _check_code_too(screen, form, row)
    return _party_form_page(screen, form, row)


def _check_code_too(screen: PartyScreen, form, row) -> None:
    """When other fields fail, say at once if the code is taken too (not only after they are fixed)."""
    try:
        masterdata.check_code(screen.model, form.code.data, row.id if row else None)
    except masterdata.MasterDataError as exc:
        _attach(form, exc)


def validate_party_code(screen_key: str):
    """Inline validation while typing: the code field's error, or nothing when it is fine."""
    screen = SCREENS[screen_key]
    try:
        masterdata.check_code(screen.model, request.form.get("code"), request.args.get("id", type=int))
    except masterdata.MasterDataError as exc:
        return str(exc)
    return ""


def set_party_status(screen_key: str, row_id: int):
    screen = SCREENS[screen_key]
    row = db.get_or_404(screen.model, row_id)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in STATUS_LABELS:
        masterdata.set_status(row, status)
        flash(_("%(name)s is now %(status)s.", name=row.name, status=STATUS_LABELS[status]), "success")
    return redirect(_back_to(url_for(screen.endpoint("list"))))


def _back_to(fallback: str) -> str:
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else fallback


def _party_columns(screen: PartyScreen) -> list[Column]:
    columns = [
        Column(_("Code"), lambda r: r.code),
        Column(_("Name"), lambda r: r.name),
        Column(_("Type"), lambda r: str(KIND_LABELS.get(r.kind, r.kind))),
    ]
    if screen.model is PartnerBank:
        names = org_names(current_user)
        columns += [Column(_("Standard code"), lambda r: r.standard_code),
                    Column(_("Organisation"), lambda r: names.get(r.org_id, ""))]
    return columns + [
        Column(_("Contact person"), lambda r: r.contact_name),
        Column(_("Contact phone"), lambda r: r.contact_phone),
        Column(_("Status"), lambda r: str(STATUS_LABELS.get(r.status, r.status))),
        Column(_("Created"), lambda r: format_local(r.created_at)),
        Column(_("Modified"), lambda r: format_local(r.updated_at)),
    ]


def export_parties(screen_key: str):
    screen = SCREENS[screen_key]
    params = parse_list_params(request.args, PARTY_FILTERS, default_sort="code", default_direction="asc")
    stmt = apply_sort(masterdata.parties_matching(screen.model, params), params, _party_sorts(screen.model),
                      screen.model.id)
    return _export(screen.model, stmt, params, screen.endpoint("list"), str(screen.export_name), _party_columns(screen))


# --- pickers ----------------------------------------------------------------------------------

def _typed() -> str:
    """What was typed: `q` from scripts, `picker_q` from a picker's text input (named so that it never
    collides with a list page's own search box)."""
    return request.args.get("q") or request.args.get("picker_q", "")


def _picker_args() -> tuple[str, str]:
    """The form field name and element id a picker sent (echoed into the fragment, so checked)."""
    field, picker = request.args.get("field", ""), request.args.get("picker", "")
    if not (_PICKER_ID.fullmatch(field) and _PICKER_ID.fullmatch(picker)):
        abort(400)
    return field, picker


def _picked(kind: str, row) -> dict:
    if kind == "position":
        return {"id": row.id, "value": row.number, "code": row.number, "name": row.note or "", "label": row.number}
    return {"id": row.id, "value": str(row.id), "code": row.code, "name": row.name, "label": row.name}


PICKER_MODELS = {"institution": Institution, "bank": PartnerBank, "position": PositionNumber}


@bp.app_template_global("picker_choice")
def picker_choice(kind: str, selected: Any) -> dict | None:
    """What a picker shows as chosen when its form opens: from a row, an id, or a position number."""
    if selected is None or selected == "":
        return None
    if isinstance(selected, dict):
        return selected
    model = PICKER_MODELS[kind]
    if isinstance(selected, model):
        return _picked(kind, selected)
    if kind == "position":
        number = str(selected)
        row = db.session.execute(select(PositionNumber).where(PositionNumber.number == number)).scalar_one_or_none()
        return _picked(kind, row) if row else {"id": None, "value": number, "code": number, "name": "", "label": number}
    row = db.session.get(model, int(selected)) if str(selected).isdigit() else None
    return _picked(kind, row) if row else None


def search_results(kind: str, rows: list):
    """JSON for scripts and other services; the list of options for a picker's htmx request."""
    if not request.headers.get("HX-Request"):
        return jsonify(results=[_picked(kind, row) for row in rows])
    field, picker = _picker_args()
    return render_block("coupons/masterdata/picker_results.html", "picker_results", kind=kind,
                        options=[_picked(kind, row) for row in rows], field=field, picker=picker)


def pick_result(kind: str, row):
    """The picker's control with `row` chosen (or cleared when `row` is None)."""
    field, picker = _picker_args()
    return render_block("coupons/masterdata/picker_results.html", "picker_control", kind=kind, field=field,
                        picker=picker, selected=_picked(kind, row) if row is not None else None)


def _pickable(model: type) -> Select:
    """Every institution may be picked; a bank only by operators who see its organisation
    (a bank's operators pick their own bank, the platform picks any)."""
    return scoped(PartnerBank, current_user) if model is PartnerBank else select(model)


def search_parties(screen_key: str):
    screen = SCREENS[screen_key]
    rows = masterdata.pickable_parties(screen.model, _typed(), _pickable(screen.model))
    return search_results(screen.singular, rows)


def pick_party(screen_key: str):
    screen = SCREENS[screen_key]
    row_id = request.args.get("id", type=int)
    row = None
    if row_id:
        stmt = _pickable(screen.model).where(screen.model.id == row_id, screen.model.status == "normal")
        row = db.session.execute(stmt).scalar_one_or_none() or abort(404)
    return pick_result(screen.singular, row)


def _for_screen(view: Callable, screen_key: str) -> Callable:
    """`view` with its screen fixed (a bound argument, not a URL default: the URL stays free of it)."""

    @wraps(view)
    def bound(*args, **kwargs):
        return view(screen_key, *args, **kwargs)

    return bound


def _register_party_screens() -> None:
    manage = [login_required, permission_required(MANAGE)]
    rules: list[tuple[str, str, Callable, tuple[str, ...], list]] = [
        ("", "list", list_parties, ("GET",), manage),
        ("/new", "create", edit_party, ("GET", "POST"), manage),
        ("/<int:row_id>/edit", "edit", edit_party, ("GET", "POST"), manage),
        ("/<int:row_id>/status", "status", set_party_status, ("POST",), manage),
        ("/validate/code", "validate", validate_party_code, ("POST",), manage),
        ("/export", "export", export_parties, ("GET",), manage),
        ("/search", "search", search_parties, ("GET",), [picker_allowed]),
        ("/pick", "pick", pick_party, ("GET",), [picker_allowed]),
    ]
    for screen in SCREENS.values():
        for path, action, view, methods, decorators in rules:
            wrapped = _for_screen(view, screen.plural)
            for decorator in reversed(decorators):
                wrapped = decorator(wrapped)
            bp.add_url_rule(f"/{screen.plural}{path}", screen.endpoint(action).split(".", 1)[1], wrapped,
                            methods=list(methods))


_register_party_screens()


# --- position numbers -------------------------------------------------------------------------

POSITION_FILTERS = ("status",)
POSITION_SORTS = {"number": PositionNumber.number, "created_at": PositionNumber.created_at}


def _positions(params: ListParams) -> Select:
    return apply_sort(masterdata.positions_matching(params), params, POSITION_SORTS, PositionNumber.id)


def _position_params() -> ListParams:
    return parse_list_params(request.args, POSITION_FILTERS, default_sort="created_at")


@bp.get("/positions")
@login_required
@permission_required(MANAGE)
def list_positions():
    params = _position_params()
    return render_page("coupons/masterdata/positions.html", "position_rows", targets=("position-rows",),
                       page=paginate(_positions(params), params), params=params, status_labels=POSITION_STATUS_LABELS)


def _position_form_page(form, row=None):
    page = render_page("coupons/masterdata/position_form.html", "modal_body", targets=("modal-content",),
                       form=form, row=row)
    return page, _status_code(form)


@bp.route("/positions/new", methods=["GET", "POST"])
@login_required
@permission_required(MANAGE)
def create_position():
    form = PositionNumberForm()
    if form.validate_on_submit():
        try:
            row = masterdata.add_position_number(form.number.data, form.note.data)
        except masterdata.MasterDataError as exc:
            _attach(form, exc)
        else:
            return done(_("Position number %(number)s added.", number=row.number), "positions-changed",
                        redirect_to=url_for("masterdata.list_positions"))
    return _position_form_page(form)


@bp.route("/positions/<int:row_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required(MANAGE)
def edit_position(row_id: int):
    row = db.get_or_404(PositionNumber, row_id)
    form = PositionNoteForm(obj=row)
    if form.validate_on_submit():
        try:
            masterdata.update_position_note(row, form.note.data)
        except masterdata.MasterDataError as exc:
            _attach(form, exc)
        else:
            return done(_("Position number %(number)s saved.", number=row.number), "positions-changed",
                        redirect_to=url_for("masterdata.list_positions"))
    return _position_form_page(form, row)


@bp.route("/positions/bulk", methods=["GET", "POST"])
@login_required
@permission_required(MANAGE)
def bulk_add_positions():
    """Paste many numbers; the answer lists each line's result (the form stays open to read it)."""
    form = PositionBulkForm()
    results = None
    if form.validate_on_submit():
        try:
            results = masterdata.add_position_numbers(form.numbers.data, form.note.data)
            # What was not added stays in the box, to be corrected and added again.
            form.numbers.data = "\n".join(r.text for r in results if not r.added)
        except masterdata.MasterDataError as exc:
            _attach(form, exc)
    added = sum(1 for r in results or () if r.added)
    page = render_page("coupons/masterdata/position_bulk.html", "modal_body", targets=("modal-content",),
                       form=form, results=results, added=added)
    response = current_app.make_response((page, _status_code(form)))
    if added:
        response = toast(trigger(response, "positions-changed"),
                         _("%(n)s position numbers added.", n=added))
    return response


@bp.post("/positions/<int:row_id>/status")
@login_required
@permission_required(MANAGE)
def set_position_status(row_id: int):
    row = db.get_or_404(PositionNumber, row_id)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in POSITION_STATUS_LABELS:
        masterdata.set_status(row, status)
        flash(_("Position number %(number)s is now %(status)s.", number=row.number,
                status=POSITION_STATUS_LABELS[status]), "success")
    return redirect(_back_to(url_for("masterdata.list_positions")))


@bp.get("/positions/export")
@login_required
@permission_required(MANAGE)
def export_positions():
    params = _position_params()
    columns = [
        Column(_("Position number"), lambda r: r.number),
        Column(_("Note"), lambda r: r.note),
        Column(_("Status"), lambda r: str(POSITION_STATUS_LABELS.get(r.status, r.status))),
        Column(_("Created"), lambda r: format_local(r.created_at)),
    ]
    return _export(PositionNumber, _positions(params), params, "masterdata.list_positions", _("Position numbers"),
                   columns)


@bp.get("/positions/search")
@picker_allowed
def search_positions():
    return search_results("position", masterdata.pickable_positions(_typed()))


@bp.get("/positions/pick")
@picker_allowed
def pick_position():
    row_id = request.args.get("id", type=int)
    row = None
    if row_id:
        stmt = select(PositionNumber).where(PositionNumber.id == row_id, PositionNumber.status == "available")
        row = db.session.execute(stmt).scalar_one_or_none() or abort(404)
    return pick_result("position", row)
