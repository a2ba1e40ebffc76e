"""Screens for the organisation tree and the operators who work in it."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select

from app.auth import services as operator_services
from app.auth.forms import EmptyForm, OperatorEditForm, OperatorForm, ResetPasswordForm
from app.auth.models import Operator, OperatorRole
from app.core.choices import options
from app.core.htmx import done, render_page
from app.core.listing import apply_sort, paginate, parse_list_params
from app.core.permissions import ROLES, assignable_roles, permission_required, role_label
from app.core.tenancy import get_scoped_or_404, org_choices, require_visible_org, scoped, visible_orgs
from app.extensions import db
from app.orgs import services
from app.orgs.forms import KIND_LABELS, OrganisationEditForm, OrganisationForm
from app.orgs.models import CHILD_KINDS, Organisation

bp = Blueprint("orgs", __name__)




# --- organisations --------------------------------------------------------------------------

@bp.get("/orgs")
@login_required
@permission_required("orgs.view")
def list_orgs():
    params = parse_list_params(request.args, ("kind", "status"))
    stmt = scoped(Organisation, current_user).order_by(Organisation.path)
    if params.q:
        like = f"%{params.q}%"
        stmt = stmt.where(or_(Organisation.name.ilike(like), Organisation.code.ilike(like)))
    if "kind" in params.filters:
        stmt = stmt.where(Organisation.kind == params.filters["kind"])
    if "status" in params.filters:
        stmt = stmt.where(Organisation.status == params.filters["status"])
    params.per_page = max(params.per_page, 50)
    page = paginate(stmt, params)
    counts = dict(db.session.execute(
        select(Operator.org_id, func.count()).where(Operator.org_id.in_([o.id for o in page.items]))
        .group_by(Operator.org_id)).all())
    return render_page("orgs/orgs.html", "org_rows", targets=("org-rows",), page=page, params=params,
                       kind_labels=KIND_LABELS, operator_counts=counts, action_form=EmptyForm())


def _org_form_page(form, org=None):
    return render_page("orgs/org_form.html", "modal_body", targets=("modal-content",), form=form, org=org), \
        422 if form.errors else 200


@bp.route("/orgs/new", methods=["GET", "POST"])
@login_required
@permission_required("orgs.manage")
def create_org():
    form = OrganisationForm()
    form.parent_id.choices = options((o.id, label) for o, label in
                                     ((o, "\u3000" * o.depth + o.name) for o in visible_orgs(current_user))
                                     if CHILD_KINDS[o.kind])
    if request.method == "GET" and request.args.get("parent_id", "").isdigit():
        form.parent_id.data = int(request.args["parent_id"])
    if form.validate_on_submit():
        parent = require_visible_org(current_user, form.parent_id.data)
        try:
            org = services.create_organisation(parent, form.kind.data, form.code.data, form.name.data,
                                               form.contact_name.data, form.contact_phone.data)
        except services.OrganisationError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            return done(_("Organisation %(name)s created.", name=org.name), "orgs-changed", redirect_to=url_for("orgs.list_orgs"))
    return _org_form_page(form)


@bp.route("/orgs/<int:org_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("orgs.manage")
def edit_org(org_id: int):
    org = get_scoped_or_404(Organisation, org_id, current_user)
    form = OrganisationEditForm(obj=org)
    if form.validate_on_submit():
        try:
            services.update_organisation(org, form.code.data, form.name.data, form.contact_name.data,
                                         form.contact_phone.data)
        except services.OrganisationError as exc:
            form.code.errors.append(str(exc))
        else:
            return done(_("Organisation %(name)s saved.", name=org.name), "orgs-changed", redirect_to=url_for("orgs.list_orgs"))
    return _org_form_page(form, org)


@bp.post("/orgs/<int:org_id>/status")
@login_required
@permission_required("orgs.manage")
def set_org_status(org_id: int):
    org = get_scoped_or_404(Organisation, org_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in ("active", "disabled"):
        try:
            services.set_organisation_status(current_user.org_id, org, status)
            flash(_("Organisation %(name)s is now %(status)s.", name=org.name,
                    status=_("disabled") if status == "disabled" else _("active")), "success")
        except services.OrganisationError as exc:
            flash(str(exc), "danger")
    return redirect(url_for("orgs.list_orgs"))


# --- operators ------------------------------------------------------------------------------

OPERATOR_SORTS = {
    "username": Operator.username,
    "display_name": Operator.display_name,
    "last_login_at": Operator.last_login_at,
    "created_at": Operator.created_at,
}


@bp.get("/operators")
@login_required
@permission_required("operators.view")
def list_operators():
    params = parse_list_params(request.args, ("org_id", "role", "status"), default_sort="created_at")
    stmt = scoped(Operator, current_user)
    if params.q:
        like = f"%{params.q}%"
        stmt = stmt.where(or_(Operator.username.ilike(like), Operator.display_name.ilike(like)))
    if params.filters.get("org_id", "").isdigit():
        org = require_visible_org(current_user, params.filters["org_id"])
        stmt = stmt.where(Operator.org_id.in_(select(Organisation.id).where(Organisation.path.startswith(org.path))))
    if params.filters.get("role") in ROLES:
        stmt = stmt.where(Operator.id.in_(select(OperatorRole.operator_id).where(OperatorRole.role == params.filters["role"])))
    if params.filters.get("status") in ("active", "disabled"):
        stmt = stmt.where(Operator.status == params.filters["status"])
    page = paginate(apply_sort(stmt, params, OPERATOR_SORTS, Operator.id), params)
    return render_page("orgs/operators.html", "operator_rows", targets=("operator-rows",), page=page,
                       params=params, orgs=org_choices(current_user), roles=[(r, role_label(r)) for r in ROLES],
                       action_form=EmptyForm())


def _prepare_operator_form(form):
    form.org_id.choices = options(org_choices(current_user))
    form.roles.choices = options((r, role_label(r)) for r in assignable_roles(current_user.permissions))
    return form


def _operator_form_page(form, operator=None):
    return render_page("orgs/operator_form.html", "modal_body", targets=("modal-content",), form=form,
                       operator=operator), 422 if form.errors else 200


@bp.route("/operators/new", methods=["GET", "POST"])
@login_required
@permission_required("operators.manage")
def create_operator():
    form = _prepare_operator_form(OperatorForm())
    if form.validate_on_submit():
        org = require_visible_org(current_user, form.org_id.data)
        try:
            operator = operator_services.create_operator(current_user, org, form.username.data,
                                                         form.display_name.data, form.roles.data, form.password.data)
        except operator_services.OperatorError as exc:
            form.username.errors.append(str(exc))
        else:
            return done(_("Operator %(name)s created.", name=operator.username), "operators-changed", redirect_to=url_for("orgs.list_operators"))
    return _operator_form_page(form)


@bp.route("/operators/<int:operator_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("operators.manage")
def edit_operator(operator_id: int):
    operator = get_scoped_or_404(Operator, operator_id, current_user)
    form = _prepare_operator_form(OperatorEditForm(obj=operator))
    if request.method == "GET":
        form.roles.data = operator.roles
    if form.validate_on_submit():
        org = require_visible_org(current_user, form.org_id.data)
        try:
            operator_services.update_operator(current_user, operator, org, form.username.data,
                                              form.display_name.data, form.roles.data)
        except operator_services.OperatorError as exc:
            form.roles.errors.append(str(exc))
        else:
            return done(_("Operator %(name)s saved.", name=operator.username), "operators-changed", redirect_to=url_for("orgs.list_operators"))
    return _operator_form_page(form, operator)


@bp.post("/operators/validate/<field>")
@login_required
@permission_required("operators.manage")
def validate_operator_field(field: str):
    """Inline validation while typing: the error text for one field (empty when it is fine)."""
    form = _prepare_operator_form(OperatorForm(meta={"csrf": False}))
    if field not in ("username", "display_name", "password"):
        return ""
    target = form[field]
    target.validate(form)
    errors = list(target.errors)
    if field == "username" and not errors:
        existing = operator_services.find_by_username(target.data or "")
        editing = request.args.get("operator_id", type=int)
        if existing is not None and existing.id != editing:
            errors.append(_("This username is taken."))
    return str(errors[0]) if errors else ""  # a validator's message may be a lazy string


@bp.route("/operators/<int:operator_id>/password", methods=["GET", "POST"])
@login_required
@permission_required("operators.manage")
def reset_operator_password(operator_id: int):
    operator = get_scoped_or_404(Operator, operator_id, current_user)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        operator_services.reset_password(operator, form.password.data)
        return done(_("The password of %(name)s has been reset; their sessions have ended.", name=operator.username),
                    "operators-changed", redirect_to=url_for("orgs.list_operators"))
    return render_page("orgs/password_form.html", "modal_body", targets=("modal-content",), form=form,
                       operator=operator), 422 if form.errors else 200


@bp.post("/operators/<int:operator_id>/status")
@login_required
@permission_required("operators.manage")
def set_operator_status(operator_id: int):
    operator = get_scoped_or_404(Operator, operator_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in ("active", "disabled"):
        try:
            operator_services.set_operator_status(current_user, operator, status)
            flash(_("Operator %(name)s is now %(status)s.", name=operator.username,
                    status=_("disabled") if status == "disabled" else _("active")), "success")
        except operator_services.OperatorError as exc:
            flash(str(exc), "danger")
    return redirect(request.referrer if request.referrer and request.referrer.startswith(request.host_url)
                    else url_for("orgs.list_operators"))
