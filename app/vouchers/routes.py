"""Screens of the voucher line: platform accounts and deal mappings."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from app.auth.forms import EmptyForm
from app.core.choices import options
from app.core.htmx import done, render_page
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, org_choices, require_visible_org, scoped, visible_orgs
from app.extensions import db
from app.members.models import Product
from app.vouchers import platforms
from app.vouchers.forms import DealMappingForm, PlatformAccountForm
from app.vouchers.models import DealMapping, PlatformAccount

bp = Blueprint("vouchers", __name__, url_prefix="/vouchers")




@bp.get("/platforms")
@login_required
@permission_required("vouchers.configure")
def platform_settings():
    accounts = db.session.execute(scoped(PlatformAccount, current_user).order_by(PlatformAccount.org_id,
                                                                                 PlatformAccount.platform)).scalars().all()
    mappings = db.session.execute(scoped(DealMapping, current_user).order_by(DealMapping.platform,
                                                                             DealMapping.deal_id)).scalars().all()
    org_names = {o.id: o.name for o in visible_orgs(current_user)}
    return render_page("vouchers/platforms.html", "platform_tables", targets=("platform-tables",),
                       accounts=accounts, mappings=mappings, org_names=org_names,
                       labels=platforms.PLATFORM_LABELS, action_form=EmptyForm())


def _account_form_page(form, account=None):
    return render_page("vouchers/account_form.html", "modal_body", targets=("modal-content",), form=form,
                       account=account, fields=platforms.PLATFORM_FIELDS), 422 if form.errors else 200


@bp.route("/platforms/new", methods=["GET", "POST"])
@bp.route("/platforms/<int:account_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("vouchers.configure")
def edit_account(account_id: int | None = None):
    account = get_scoped_or_404(PlatformAccount, account_id, current_user) if account_id else None
    form = PlatformAccountForm(obj=account)
    form.org_id.choices = options(org_choices(current_user, ("merchant", "store")))
    if form.validate_on_submit():
        org = require_visible_org(current_user, account.org_id if account else form.org_id.data)
        try:
            platforms.save_account(org, account.platform if account else form.platform.data, form.base_url.data,
                                   form.app_id.data, form.store_ref.data, form.store_name.data, form.secrets(),
                                   account)
        except platforms.PlatformConfigError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            return done(_("Platform account saved."), "platforms-changed",
                        redirect_to=url_for("vouchers.platform_settings"))
    return _account_form_page(form, account)


@bp.post("/platforms/<int:account_id>/test")
@login_required
@permission_required("vouchers.configure")
def test_account(account_id: int):
    account = get_scoped_or_404(PlatformAccount, account_id, current_user)
    if EmptyForm().validate_on_submit():
        result = platforms.check_connection(account)
        flash(result.message, "success" if result.ok else "danger")
    return redirect(url_for("vouchers.platform_settings"))


def _mapping_form_page(form, mapping=None):
    return render_page("vouchers/mapping_form.html", "modal_body", targets=("modal-content",), form=form,
                       mapping=mapping), 422 if form.errors else 200


@bp.route("/mappings/new", methods=["GET", "POST"])
@bp.route("/mappings/<int:mapping_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("vouchers.configure")
def edit_mapping(mapping_id: int | None = None):
    mapping = get_scoped_or_404(DealMapping, mapping_id, current_user) if mapping_id else None
    form = DealMappingForm(obj=mapping)
    form.org_id.choices = options(org_choices(current_user, ("merchant", "store")))
    products = db.session.execute(scoped(Product, current_user).where(
        Product.kind.in_(("membership_card", "coaching_package", "group_class"))).order_by(Product.name)).scalars()
    form.product_id.choices = options((p.id, p.name) for p in products)
    if form.validate_on_submit():
        org = require_visible_org(current_user, mapping.org_id if mapping else form.org_id.data)
        product = get_scoped_or_404(Product, form.product_id.data, current_user)
        try:
            platforms.save_mapping(org, mapping.platform if mapping else form.platform.data, form.deal_id.data,
                                   form.title.data, product, form.quantity.data, mapping)
        except platforms.PlatformConfigError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            return done(_("Deal mapping saved."), "platforms-changed",
                        redirect_to=url_for("vouchers.platform_settings"))
    return _mapping_form_page(form, mapping)


@bp.post("/mappings/<int:mapping_id>/delete")
@login_required
@permission_required("vouchers.configure")
def delete_mapping(mapping_id: int):
    mapping = get_scoped_or_404(DealMapping, mapping_id, current_user)
    if EmptyForm().validate_on_submit():
        platforms.delete_mapping(mapping)
        flash(_("Deal mapping deleted."), "success")
    return redirect(url_for("vouchers.platform_settings"))
