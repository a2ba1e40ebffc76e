"""Member and product screens: lists with search, filters and export, the modal forms, a member's page."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block
from sqlalchemy import Select, case, func, or_, select

from app.auth.forms import EmptyForm
from app.core import crypto
from app.core.cache import cached
from app.core.audit import AuditEvent
from app.core.choices import options
from app.core.exports import FORMATS, Column, export_response, refuse_oversized_export, rows_for_export
from app.core.htmx import done, render_page
from app.core.listing import ListParams, apply_sort, paginate, parse_list_params
from app.core.money import fen_to_yuan
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, in_org_subtree, org_choices, org_names, require_visible_org, scoped
from app.core.timeutil import format_local, local_day_range, parse_day
from app.extensions import db
from app.gym.services import member_gym_records
from app.members import services
from app.members.forms import (KIND_LABELS, LEVEL_LABELS, MEMBER_STATUS_LABELS, PRODUCT_STATUS_LABELS, MemberEditForm,
                               MemberForm, ProductEditForm, ProductForm, attribute_form)
from app.members.models import MEMBER_LEVELS, MEMBER_STATUSES, PRODUCT_KINDS, PRODUCT_STATUSES, Member, Product
from app.orgs.models import Organisation

bp = Blueprint("members", __name__)

# Members and products belong to the organisations that serve customers, not to the platform itself.
CUSTOMER_ORG_KINDS = ("bank", "merchant", "store")






def _posted_org(form) -> Organisation | None:
    """The organisation a create form names: 404 when it is not one the operator may act on."""
    raw = (form.org_id.raw_data or [""])[0] if form.is_submitted() else ""
    return require_visible_org(current_user, raw) if raw else None




def _back_to(fallback: str) -> str:
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else fallback


def _count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


def _export_too_large(total: int, endpoint: str, params: ListParams):
    """None if `total` rows may be exported; else a redirect back to the list with the reason."""
    return refuse_oversized_export(total, current_app.config["EXPORT_MAX_ROWS"],
                                   url_for(endpoint, **params.args(page=None)))


def _export_format() -> str:
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        abort(404)
    return fmt


# --- members ----------------------------------------------------------------------------------

MEMBER_FILTERS = ("org_id", "level", "group", "region", "channel", "status", "reg_from", "reg_to")
MEMBER_SORTS = {
    "name": Member.name,
    "level": case({level: rank for rank, level in enumerate(MEMBER_LEVELS)}, value=Member.level, else_=-1),
    "registered_at": Member.registered_at,
}




def _members_matching(params: ListParams) -> Select:
    """The visible members that match the search box and filters.

    The search box takes an exact member number, an exact full phone (found by its keyed hash) or
    the start of a name: each is an indexed look-up (`uq_members_member_no`, `ix_members_phone_hash`,
    `ix_members_org_name`), so the list stays fast with many members. A name is never searched
    with a leading wildcard, which no index can serve.
    """
    stmt = scoped(Member, current_user)
    q = params.q
    if q and services.looks_like_member_no(q):
        stmt = stmt.where(Member.member_no == q.strip().upper())
    elif q and services.looks_like_phone(q):
        stmt = stmt.where(Member.phone_hash == services.phone_lookup_hash(q))
    elif q:
        stmt = stmt.where(Member.name.startswith(q, autoescape=True))
    filters = params.filters
    if filters.get("org_id"):
        stmt = stmt.where(in_org_subtree(current_user, Member.org_id, filters["org_id"]))
    if filters.get("level") in MEMBER_LEVELS:
        stmt = stmt.where(Member.level == filters["level"])
    if filters.get("status") in MEMBER_STATUSES:
        stmt = stmt.where(Member.status == filters["status"])
    for name, column in (("group", Member.group_name), ("region", Member.region), ("channel", Member.source_channel)):
        if filters.get(name):
            stmt = stmt.where(column == filters[name])
    start, end = local_day_range(parse_day(filters.get("reg_from")), parse_day(filters.get("reg_to")))
    if start:
        stmt = stmt.where(Member.registered_at >= start)
    if end:
        stmt = stmt.where(Member.registered_at < end)
    return stmt


FILTER_VALUES_TTL = 120  # a new region or channel shows up in the filter within two minutes


def _member_filter_values(name: str) -> list[str]:
    """The values seen in a column of the visible members, for a filter's choices (called by the page only).

    A DISTINCT over a large member table costs tens of milliseconds, so the choices are cached
    briefly per organisation scope.
    """
    column = {"group": Member.group_name, "region": Member.region, "channel": Member.source_channel}[name]
    stmt = scoped(Member, current_user, select(column).distinct()).where(column.is_not(None)).order_by(column).limit(200)
    return cached(f"member-filter:{current_user.org_id}:{name}", FILTER_VALUES_TTL,
                  lambda: list(db.session.execute(stmt).scalars()))


def shown_phone(member: Member) -> str:
    """The phone as the current operator may see it: in full with members.view_pii, else masked."""
    return (member.phone or "") if current_user.can("members.view_pii") else member.phone_masked


def _member_context(**context):
    return dict(level_labels=LEVEL_LABELS, status_labels=MEMBER_STATUS_LABELS, shown_phone=shown_phone,
                mask_identifier=services.mask_identifier, **context)


@bp.get("/members")
@login_required
@permission_required("members.view")
def list_members():
    params = parse_list_params(request.args, MEMBER_FILTERS, default_sort="registered_at")
    page = paginate(apply_sort(_members_matching(params), params, MEMBER_SORTS, Member.id), params)
    return render_page("members/members.html", "member_rows", targets=("member-rows",), **_member_context(
        page=page, params=params, orgs=org_choices(current_user, CUSTOMER_ORG_KINDS), org_names=org_names(current_user, {m.org_id for m in page.items}),
        filter_values=_member_filter_values))


@bp.get("/members/<int:member_id>")
@login_required
@permission_required("members.view")
def member_detail(member_id: int):
    member = get_scoped_or_404(Member, member_id, current_user)
    events = db.session.execute(
        select(AuditEvent).where(AuditEvent.object_type == "member", AuditEvent.object_id == str(member.id))
        .order_by(AuditEvent.id.desc()).limit(50)).scalars().all()
    return render_page("members/member_detail.html", "member_card", targets=("member-card",), **_member_context(
        member=member, org_name=org_names(current_user, {member.org_id}).get(member.org_id, ""), events=events,
        gym=member_gym_records(member)))


def _member_form_page(form, member=None):
    return render_page("members/member_form.html", "modal_body", targets=("modal-content",), form=form,
                       member=member), 422 if form.errors else 200


@bp.route("/members/new", methods=["GET", "POST"])
@login_required
@permission_required("members.manage")
def create_member():
    form = MemberForm()
    form.org_id.choices = options(org_choices(current_user, CUSTOMER_ORG_KINDS))
    if not form.is_submitted():
        form.org_id.data = current_user.org_id
    org = _posted_org(form)
    if form.validate_on_submit():
        try:
            member = services.create_member(org, form.details())
        except services.MemberError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            return done(_("Member %(name)s created.", name=member.name), "members-changed",
                        redirect_to=url_for("members.member_detail", member_id=member.id))
    return _member_form_page(form)


@bp.route("/members/<int:member_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("members.manage")
def edit_member(member_id: int):
    member = get_scoped_or_404(Member, member_id, current_user)
    form = MemberEditForm.for_member(member, show_phone=current_user.can("members.view_pii"))
    if form.validate_on_submit():
        try:
            services.update_member(member, form.details())
        except services.MemberError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            return done(_("Member %(name)s saved.", name=member.name), "members-changed",
                        redirect_to=url_for("members.member_detail", member_id=member.id))
    return _member_form_page(form, member)


@bp.post("/members/validate/phone")
@login_required
@permission_required("members.manage")
def validate_member_phone():
    """Inline validation while typing: the error for the phone field (empty when it is fine)."""
    raw = request.form.get("phone", "")
    member_id = request.args.get("member_id", type=int)
    if member_id:
        member = get_scoped_or_404(Member, member_id, current_user)
        org_id, keep_blank = member.org_id, True  # blank on edit keeps the phone
    else:
        raw_org = request.form.get("org_id", "")
        org_id, keep_blank = (require_visible_org(current_user, raw_org).id if raw_org else None), False
    if not raw.strip() and keep_blank:
        return ""
    try:
        services.check_phone(org_id, raw, member_id)
    except services.MemberError as exc:
        return str(exc)
    return ""


@bp.post("/members/<int:member_id>/status")
@login_required
@permission_required("members.manage")
def set_member_status(member_id: int):
    member = get_scoped_or_404(Member, member_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in MEMBER_STATUSES:
        services.set_member_status(member, status)
        flash(_("Member %(name)s is now %(status)s.", name=member.name, status=MEMBER_STATUS_LABELS[status]),
              "success")
    return redirect(_back_to(url_for("members.list_members")))


def _member_export_columns(names: dict[int, str]) -> list[Column]:
    """Export columns; personal data is always masked in a file that leaves the console."""
    return [
        Column(_("Member no."), lambda m: m.member_no),
        Column(_("Name"), lambda m: m.name),
        Column(_("Mobile phone"), lambda m: m.phone_masked),
        Column(_("Organisation"), lambda m: names.get(m.org_id, "")),
        Column(_("Level"), lambda m: str(LEVEL_LABELS.get(m.level, m.level))),
        Column(_("Group"), lambda m: m.group_name),
        Column(_("Region"), lambda m: m.region),
        Column(_("Source channel"), lambda m: m.source_channel),
        Column(_("WeChat openid"), lambda m: services.mask_identifier(m.wechat_openid)),
        Column(_("Alipay user id"), lambda m: services.mask_identifier(m.alipay_user_id)),
        Column(_("Registered"), lambda m: format_local(m.registered_at)),
        Column(_("Status"), lambda m: str(MEMBER_STATUS_LABELS.get(m.status, m.status))),
    ]


@bp.get("/members/export")
@login_required
@permission_required("members.view", "members.export")
def export_members():
    fmt = _export_format()
    params = parse_list_params(request.args, MEMBER_FILTERS, default_sort="registered_at")
    stmt = apply_sort(_members_matching(params), params, MEMBER_SORTS, Member.id)
    total = _count(stmt)
    refused = _export_too_large(total, "members.list_members", params)
    if refused:
        return refused
    # The search text may be a phone number: the audit trail keeps it masked.
    q = crypto.mask_phone(crypto.normalise_phone(params.q)) if services.looks_like_phone(params.q) else params.q
    services.record_member_export(fmt, {"q": q, **params.filters} if q else params.filters, total)
    return export_response(_("Members"), fmt, _member_export_columns(org_names(current_user)), rows_for_export(stmt))


# --- products ---------------------------------------------------------------------------------

PRODUCT_FILTERS = ("org_id", "kind", "status")
PRODUCT_SORTS = {"name": Product.name, "price": Product.price_fen, "created_at": Product.created_at}


def _products_matching(params: ListParams) -> Select:
    stmt = scoped(Product, current_user)
    if params.q:
        # An organisation has tens of products, not thousands: a substring match is cheap here.
        stmt = stmt.where(or_(Product.name.icontains(params.q, autoescape=True),
                              Product.code == params.q.strip().upper()))
    if params.filters.get("org_id"):
        stmt = stmt.where(in_org_subtree(current_user, Product.org_id, params.filters["org_id"]))
    if params.filters.get("kind") in PRODUCT_KINDS:
        stmt = stmt.where(Product.kind == params.filters["kind"])
    if params.filters.get("status") in PRODUCT_STATUSES:
        stmt = stmt.where(Product.status == params.filters["status"])
    return stmt


def _product_context(**context):
    return dict(kind_labels=KIND_LABELS, status_labels=PRODUCT_STATUS_LABELS,
                attribute_summary=services.attribute_summary, **context)


@bp.get("/products")
@login_required
@permission_required("products.view")
def list_products():
    params = parse_list_params(request.args, PRODUCT_FILTERS, default_sort="created_at")
    page = paginate(apply_sort(_products_matching(params), params, PRODUCT_SORTS, Product.id), params)
    return render_page("members/products.html", "product_rows", targets=("product-rows",), **_product_context(
        page=page, params=params, orgs=org_choices(current_user, CUSTOMER_ORG_KINDS), org_names=org_names(current_user, {p.org_id for p in page.items})))


def _product_form_page(form, attrs, product=None):
    return render_page("members/product_form.html", "modal_body", targets=("modal-content",), form=form,
                       attrs=attrs, product=product, kind_labels=KIND_LABELS), \
        422 if (form.errors or attrs.errors) else 200


def _submitted_and_valid(form, attrs) -> bool:
    """Validate both the product's fields and its attribute fields, so every error shows at once."""
    if not form.is_submitted():
        return False
    results = [form.validate(), attrs.validate()]
    return all(results)


def _attach_product_error(exc: services.ProductError, form, attrs) -> None:
    target = attrs if exc.field in attrs._fields else form
    (target[exc.field] if exc.field in target._fields else form.name).errors.append(str(exc))


@bp.route("/products/new", methods=["GET", "POST"])
@login_required
@permission_required("products.manage")
def create_product():
    form = ProductForm()
    form.org_id.choices = options(org_choices(current_user, CUSTOMER_ORG_KINDS))
    if not form.is_submitted():
        form.org_id.data = current_user.org_id
        if request.args.get("kind") in PRODUCT_KINDS:
            form.kind.data = request.args["kind"]
    kind = form.kind.data if form.kind.data in PRODUCT_KINDS else PRODUCT_KINDS[0]
    attrs = attribute_form(kind, request.form if form.is_submitted() else None)
    org = _posted_org(form)
    if _submitted_and_valid(form, attrs):
        try:
            product = services.create_product(org, kind, form.details(attrs))
        except services.ProductError as exc:
            _attach_product_error(exc, form, attrs)
        else:
            return done(_("Product %(name)s created.", name=product.name), "products-changed",
                        redirect_to=url_for("members.list_products"))
    return _product_form_page(form, attrs)


@bp.route("/products/<int:product_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("products.manage")
def edit_product(product_id: int):
    product = get_scoped_or_404(Product, product_id, current_user)
    form = ProductEditForm(obj=product)
    attrs = attribute_form(product.kind, request.form if form.is_submitted() else None, stored=product.attributes)
    if _submitted_and_valid(form, attrs):
        try:
            services.update_product(product, form.details(attrs))
        except services.ProductError as exc:
            _attach_product_error(exc, form, attrs)
        else:
            return done(_("Product %(name)s saved.", name=product.name), "products-changed",
                        redirect_to=url_for("members.list_products"))
    return _product_form_page(form, attrs, product)


@bp.get("/products/kind-fields")
@login_required
@permission_required("products.manage")
def product_kind_fields():
    """The attribute fields of the kind chosen in the product form (swapped in when the kind changes)."""
    kind = request.args.get("kind")
    if kind not in PRODUCT_KINDS:
        abort(404)
    return render_block("members/product_form.html", "kind_fields", attrs=attribute_form(kind))


@bp.post("/products/<int:product_id>/status")
@login_required
@permission_required("products.manage")
def set_product_status(product_id: int):
    product = get_scoped_or_404(Product, product_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in PRODUCT_STATUSES:
        services.set_product_status(product, status)
        flash(_("Product %(name)s is now %(status)s.", name=product.name, status=PRODUCT_STATUS_LABELS[status]),
              "success")
    return redirect(_back_to(url_for("members.list_products")))


@bp.get("/products/export")
@login_required
@permission_required("products.view")
def export_products():
    fmt = _export_format()
    params = parse_list_params(request.args, PRODUCT_FILTERS, default_sort="created_at")
    stmt = apply_sort(_products_matching(params), params, PRODUCT_SORTS, Product.id)
    refused = _export_too_large(_count(stmt), "members.list_products", params)
    if refused:
        return refused
    names = org_names(current_user)
    columns = [
        Column(_("Code"), lambda p: p.code),
        Column(_("Name"), lambda p: p.name),
        Column(_("Organisation"), lambda p: names.get(p.org_id, "")),
        Column(_("Kind"), lambda p: str(KIND_LABELS.get(p.kind, p.kind))),
        Column(_("Price (yuan)"), lambda p: fen_to_yuan(p.price_fen)),
        Column(_("Attributes"), lambda p: services.attribute_summary(p.kind, p.attributes)),
        Column(_("Status"), lambda p: str(PRODUCT_STATUS_LABELS.get(p.status, p.status))),
        Column(_("Created"), lambda p: format_local(p.created_at)),
    ]
    return export_response(_("Products"), fmt, columns, rows_for_export(stmt))
