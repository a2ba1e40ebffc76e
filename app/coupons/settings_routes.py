"""Coupon settings screens (/coupons/settings/...): the banks' tunnel accounts (云数汇, WeChat Pay
direct) and the banks' API clients. Everything needs `coupons.configure`; a bank's admin sees and
changes only their bank's rows (tenancy), the platform's admin every bank's.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import Select

from app.auth.forms import EmptyForm
from app.core.choices import options
from app.core.htmx import htmx_targets, render_page, toast, trigger
from app.core.listing import apply_sort, paginate, parse_list_params
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404, in_org_subtree, org_choices, org_names, require_visible_org, scoped
from app.coupons import settings
from app.coupons.models import BankApiClient, TunnelAccount
from app.coupons.settings import STATUS_LABELS, TUNNEL_LABELS
from app.coupons.settings_forms import (ApiClientEditForm, ApiClientForm, SandboxConnectForm, TunnelAccountEditForm,
                                        TunnelAccountForm)

bp = Blueprint("coupon_settings", __name__, url_prefix="/coupons/settings")

CONFIGURE = "coupons.configure"
BANKS = ("bank",)
SANDBOX_BLUEPRINTS = {"yunshuhui": "sandbox_yunshuhui", "direct": "sandbox_wechatpay"}


def _attach(form, exc: settings.SettingsError) -> None:
    field = form[exc.field] if exc.field in form._fields else form[next(iter(form._fields))]
    field.errors = [*field.errors, str(exc)]


def _form_status(form) -> int:
    return 422 if form.errors else 200


def _saved(message: str, event: str, redirect_to: str, template: str | None = None, **context):
    """A successful save: in the modal, either close it (toast, refresh the list) or, when there is
    something to hand over (our new certificate), show it in the modal; without JS, flash and redirect."""
    if not htmx_targets("modal-content"):
        flash(message, "success")
        return redirect(redirect_to)
    if template:
        response = current_app.make_response(render_page(template, "modal_body", targets=("modal-content",), **context))
    else:
        response = trigger(current_app.make_response(("", 204)), "modal:close")
    return toast(trigger(response, event), message)


def _pem_download(pem: str) -> Response:
    body, filename = settings.certificate_file(pem)
    return Response(body, mimetype="application/x-pem-file",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _back_to(fallback: str) -> str:
    referrer = request.referrer
    return referrer if referrer and referrer.startswith(request.host_url) else fallback


# --- tunnel accounts --------------------------------------------------------------------------

TUNNEL_FILTERS = ("org_id", "tunnel", "status")


def _tunnels_matching(params) -> Select:
    stmt = scoped(TunnelAccount, current_user)
    if params.filters.get("org_id"):
        stmt = stmt.where(in_org_subtree(current_user, TunnelAccount.org_id, params.filters["org_id"]))
    if params.filters.get("tunnel") in TUNNEL_LABELS:
        stmt = stmt.where(TunnelAccount.tunnel == params.filters["tunnel"])
    if params.filters.get("status") in STATUS_LABELS:
        stmt = stmt.where(TunnelAccount.status == params.filters["status"])
    return stmt


def sandboxes() -> dict[str, str]:
    """Tunnels whose sandbox can be connected to here: {tunnel: label}."""
    if not current_app.config["SANDBOXES_ENABLED"]:
        return {}
    return {tunnel: TUNNEL_LABELS[tunnel] for tunnel, name in SANDBOX_BLUEPRINTS.items()
            if name in current_app.blueprints and settings.sandbox_provisioner(tunnel)}


@bp.get("/tunnels")
@login_required
@permission_required(CONFIGURE)
def list_tunnels():
    params = parse_list_params(request.args, TUNNEL_FILTERS)
    page = paginate(apply_sort(_tunnels_matching(params), params, {}, TunnelAccount.id), params)
    return render_page("coupons/settings/tunnels.html", "tunnel_rows", targets=("tunnel-rows",), page=page,
                       params=params, banks=org_choices(current_user, BANKS),
                       org_names=org_names(current_user, {a.org_id for a in page.items}),
                       tunnel_labels=TUNNEL_LABELS, status_labels=STATUS_LABELS, sandboxes=sandboxes(),
                       summary=settings.secrets_summary, describe=settings.describe_certificate)


def _tunnel_form_page(form, tunnel: str, account=None):
    form.use_words_of(tunnel)
    page = render_page("coupons/settings/tunnel_form.html", "modal_body", targets=("modal-content",), form=form,
                       account=account, tunnel=tunnel, tunnel_labels=TUNNEL_LABELS,
                       summary=settings.secrets_summary(account) if account else None,
                       describe=settings.describe_certificate)
    return page, _form_status(form)


def _tunnel_saved(saved: settings.SavedTunnel):
    message = _("%(tunnel)s account saved.", tunnel=TUNNEL_LABELS[saved.account.tunnel])
    template = "coupons/settings/tunnel_saved.html" if saved.generated else None
    return _saved(message, "tunnels-changed", url_for("coupon_settings.list_tunnels"), template,
                  account=saved.account, certificate=settings.describe_certificate(settings.our_certificate(saved.account)),
                  tunnel_labels=TUNNEL_LABELS)


@bp.route("/tunnels/new", methods=["GET", "POST"])
@login_required
@permission_required(CONFIGURE)
def create_tunnel():
    # Switching the tunnel re-renders the form with only the bank carried over (never secrets in a URL).
    form = TunnelAccountForm() if request.method == "POST" else TunnelAccountForm(
        data={"org_id": request.args.get("org_id", type=int), "tunnel": request.args.get("tunnel", "yunshuhui")})
    form.org_id.choices = options(org_choices(current_user, BANKS))
    tunnel = form.tunnel.data if form.tunnel.data in TUNNEL_LABELS else "yunshuhui"
    if form.validate_on_submit():
        org = require_visible_org(current_user, form.org_id.data)
        try:
            return _tunnel_saved(settings.save_tunnel_account(org, tunnel, form.details()))
        except settings.SettingsError as exc:
            _attach(form, exc)
    return _tunnel_form_page(form, tunnel)


@bp.route("/tunnels/<int:account_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required(CONFIGURE)
def edit_tunnel(account_id: int):
    account = get_scoped_or_404(TunnelAccount, account_id, current_user)
    form = TunnelAccountEditForm(obj=account)
    if request.method == "GET":
        form.platform_certs.data = form.notify_cert.data = form.our_cert.data = ""
    if form.validate_on_submit():
        org = require_visible_org(current_user, account.org_id)
        try:
            return _tunnel_saved(settings.save_tunnel_account(org, account.tunnel, form.details(), account))
        except settings.SettingsError as exc:
            _attach(form, exc)
    return _tunnel_form_page(form, account.tunnel, account)


@bp.post("/tunnels/<int:account_id>/status")
@login_required
@permission_required(CONFIGURE)
def set_tunnel_status(account_id: int):
    account = get_scoped_or_404(TunnelAccount, account_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in STATUS_LABELS:
        settings.set_status(account, status)
        flash(_("The %(tunnel)s account is now %(status)s.", tunnel=TUNNEL_LABELS[account.tunnel],
                status=STATUS_LABELS[status]), "success")
    return redirect(_back_to(url_for("coupon_settings.list_tunnels")))


@bp.post("/tunnels/<int:account_id>/certificates/remove")
@login_required
@permission_required(CONFIGURE)
def remove_tunnel_certificate(account_id: int):
    account = get_scoped_or_404(TunnelAccount, account_id, current_user)
    if EmptyForm().validate_on_submit():
        try:
            settings.remove_platform_certificate(account, request.form.get("serial", ""))
            flash(_("Platform certificate removed."), "success")
        except settings.SettingsError as exc:
            flash(str(exc), "danger")
    return redirect(_back_to(url_for("coupon_settings.list_tunnels")))


@bp.get("/tunnels/<int:account_id>/certificate")
@login_required
@permission_required(CONFIGURE)
def download_tunnel_certificate(account_id: int):
    """Our certificate of the account's key (public), to give to 云数汇 or WeChat Pay."""
    account = get_scoped_or_404(TunnelAccount, account_id, current_user)
    pem = settings.our_certificate(account)
    if not pem:
        abort(404)
    return _pem_download(pem)


@bp.post("/tunnels/<int:account_id>/test")
@login_required
@permission_required(CONFIGURE)
def test_tunnel(account_id: int):
    account = get_scoped_or_404(TunnelAccount, account_id, current_user)
    if EmptyForm().validate_on_submit():
        result = settings.check_connection(account)
        flash(result.message, "success" if result.ok else "danger")
    return redirect(_back_to(url_for("coupon_settings.list_tunnels")))


@bp.route("/tunnels/sandbox", methods=["GET", "POST"])
@login_required
@permission_required(CONFIGURE)
def connect_sandbox():
    """Connect a bank to a built-in sandbox in one step (only where the sandboxes are on)."""
    available = sandboxes()
    if not available:
        abort(404)
    form = SandboxConnectForm()
    form.org_id.choices = options(org_choices(current_user, BANKS))
    form.tunnel.choices = options(available.items())
    if form.validate_on_submit():
        org = require_visible_org(current_user, form.org_id.data)
        tunnel = form.tunnel.data
        try:
            saved = settings.connect_to_sandbox(org, tunnel, request.url_root)
        except settings.SettingsError as exc:
            _attach(form, exc)
        else:
            return _saved(_("%(bank)s is connected to the %(tunnel)s sandbox.", bank=org.name,
                            tunnel=TUNNEL_LABELS[tunnel]), "tunnels-changed",
                          url_for("coupon_settings.list_tunnels"), None, account=saved.account)
    page = render_page("coupons/settings/sandbox_form.html", "modal_body", targets=("modal-content",), form=form)
    return page, _form_status(form)


# --- bank API clients -------------------------------------------------------------------------

CLIENT_FILTERS = ("org_id", "status")


def _clients_matching(params) -> Select:
    stmt = scoped(BankApiClient, current_user)
    if params.q:
        stmt = stmt.where(BankApiClient.name.icontains(params.q, autoescape=True) | (BankApiClient.app_id == params.q))
    if params.filters.get("org_id"):
        stmt = stmt.where(in_org_subtree(current_user, BankApiClient.org_id, params.filters["org_id"]))
    if params.filters.get("status") in STATUS_LABELS:
        stmt = stmt.where(BankApiClient.status == params.filters["status"])
    return stmt


@bp.get("/api-clients")
@login_required
@permission_required(CONFIGURE)
def list_api_clients():
    params = parse_list_params(request.args, CLIENT_FILTERS)
    page = paginate(apply_sort(_clients_matching(params), params, {}, BankApiClient.id), params)
    return render_page("coupons/settings/api_clients.html", "client_rows", targets=("client-rows",), page=page,
                       params=params, banks=org_choices(current_user, BANKS),
                       org_names=org_names(current_user, {c.org_id for c in page.items}), status_labels=STATUS_LABELS)


def _client_page(client: BankApiClient, template: str = "coupons/settings/api_client.html", block: str = "client_card"):
    return render_page(template, block, targets=("client-card",), client=client,
                       org_name=org_names(current_user, {client.org_id}).get(client.org_id, ""),
                       example=settings.signing_example(client), status_labels=STATUS_LABELS,
                       our_cert=settings.describe_certificate(client.our_cert),
                       their_cert=settings.describe_certificate(client.client_cert),
                       fingerprint=settings.key_fingerprint)


@bp.get("/api-clients/<int:client_id>")
@login_required
@permission_required(CONFIGURE)
def api_client(client_id: int):
    return _client_page(get_scoped_or_404(BankApiClient, client_id, current_user))


def _client_form_page(form, client=None):
    page = render_page("coupons/settings/api_client_form.html", "modal_body", targets=("modal-content",), form=form,
                       client=client)
    return page, _form_status(form)


@bp.route("/api-clients/new", methods=["GET", "POST"])
@login_required
@permission_required(CONFIGURE)
def create_api_client():
    form = ApiClientForm()
    form.org_id.choices = options(org_choices(current_user, BANKS))
    if form.validate_on_submit():
        org = require_visible_org(current_user, form.org_id.data)
        try:
            client = settings.create_api_client(org, form.details())
        except settings.SettingsError as exc:
            _attach(form, exc)
        else:
            return _saved(_("API client %(name)s created: appid %(app_id)s.", name=client.name, app_id=client.app_id),
                          "api-clients-changed", url_for("coupon_settings.api_client", client_id=client.id),
                          "coupons/settings/api_client_created.html", client=client,
                          our_cert=settings.describe_certificate(client.our_cert))
    return _client_form_page(form)


@bp.route("/api-clients/<int:client_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required(CONFIGURE)
def edit_api_client(client_id: int):
    client = get_scoped_or_404(BankApiClient, client_id, current_user)
    form = ApiClientEditForm(obj=client)
    if request.method == "GET":
        form.client_cert.data = ""
        form.allowed_hosts.data = "\n".join(client.allowed_hosts or [])
    if form.validate_on_submit():
        try:
            settings.update_api_client(client, form.details())
        except settings.SettingsError as exc:
            _attach(form, exc)
        else:
            return _saved(_("API client %(name)s saved.", name=client.name), "api-clients-changed",
                          url_for("coupon_settings.api_client", client_id=client.id))
    return _client_form_page(form, client)


@bp.post("/api-clients/<int:client_id>/status")
@login_required
@permission_required(CONFIGURE)
def set_api_client_status(client_id: int):
    client = get_scoped_or_404(BankApiClient, client_id, current_user)
    status = request.form.get("status")
    if EmptyForm().validate_on_submit() and status in STATUS_LABELS:
        settings.set_status(client, status)
        flash(_("API client %(name)s is now %(status)s.", name=client.name, status=STATUS_LABELS[status]), "success")
    return redirect(_back_to(url_for("coupon_settings.list_api_clients")))


@bp.post("/api-clients/<int:client_id>/rotate")
@login_required
@permission_required(CONFIGURE)
def rotate_api_client_key(client_id: int):
    client = get_scoped_or_404(BankApiClient, client_id, current_user)
    if EmptyForm().validate_on_submit():
        settings.rotate_our_key(client)
        flash(_("A new key pair is in use for %(name)s. Send the bank our new certificate (serial %(serial)s).",
                name=client.name, serial=client.our_serial_no), "success")
    return redirect(url_for("coupon_settings.api_client", client_id=client.id))


@bp.get("/api-clients/<int:client_id>/certificate")
@login_required
@permission_required(CONFIGURE)
def download_api_client_certificate(client_id: int):
    """Our certificate for this client: the bank checks our answers and notifications with it."""
    return _pem_download(get_scoped_or_404(BankApiClient, client_id, current_user).our_cert)
