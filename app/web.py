"""The steps of `create_app`: extensions, models, blueprints, errors, security, Jinja, CLI, workers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Flask, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, logout_user
from flask_wtf.csrf import CSRFError, generate_csrf
from werkzeug.routing import IntegerConverter

from app.core.tenancy import MAX_ID
from app.extensions import init_extensions, login_manager


def register_extensions(app: Flask) -> None:
    init_extensions(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = _l("Please log in to continue.")
    login_manager.login_message_category = "warning"

    @login_manager.user_loader
    def load_operator(session_id: str):
        from app.auth.models import Operator
        from app.extensions import db

        operator_id, _, version = session_id.partition(":")
        operator = db.session.get(Operator, int(operator_id)) if operator_id.isdigit() else None
        if operator is None or str(operator.session_version) != version or not operator.is_active:
            return None  # signed out: password reset, account or organisation disabled
        return operator


def register_models() -> None:
    """Import every model module so the metadata (and Alembic) knows all tables."""
    import app.activities.models  # noqa: F401
    import app.activities.fulfilment  # noqa: F401  (registers the activities.fulfil_prize outbox handler)
    import app.activities.prize_models  # noqa: F401
    import app.auth.models  # noqa: F401
    import app.core.audit  # noqa: F401
    import app.core.idempotency  # noqa: F401
    import app.core.jobruns  # noqa: F401
    import app.core.outbox  # noqa: F401
    import app.core.webhooks  # noqa: F401  (registers the generic HTTP outbox handler)
    import app.coupons.issuance  # noqa: F401  (registers the coupons.issue and coupons.notify_bank outbox handlers)
    import app.coupons.models  # noqa: F401
    import app.gym.models  # noqa: F401
    import app.members.models  # noqa: F401
    import app.orgs.models  # noqa: F401
    import app.sandbox.douyin_models  # noqa: F401
    import app.sandbox.meituan_models  # noqa: F401
    import app.sandbox.yunshuhui_models  # noqa: F401
    import app.sandbox.wechatpay_models  # noqa: F401
    import app.vouchers.models  # noqa: F401


class RowIdConverter(IntegerConverter):
    """`<int:…>` in our URLs names a row: a number above BIGINT is no row (404 at routing), where
    SQLite could not even compare it."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = RowIdConverter  # before any rule is added
    from app.activities.draw_api import bp as draw_api_bp
    from app.activities.h5 import bp as h5_activities_bp
    from app.activities.prize_routes import bp as prizes_bp
    from app.activities.records_routes import bp as activity_records_bp
    from app.activities.routes import bp as activities_bp
    from app.activities.statistics_routes import bp as theme_statistics_bp
    from app.activities.wheel_routes import bp as wheel_bp
    from app.auth.routes import bp as auth_bp
    from app.coupons.activity_routes import bp as coupon_activities_bp
    from app.coupons.api import bp as coupon_api_bp
    from app.coupons.callbacks import bp as coupon_callbacks_bp
    from app.coupons.masterdata_routes import bp as masterdata_bp
    from app.coupons.monitor_routes import bp as coupon_monitor_bp
    from app.coupons.reconciliation_routes import bp as coupon_reconciliation_bp
    from app.coupons.report_routes import bp as coupon_reports_bp
    from app.coupons.settings_routes import bp as coupon_settings_bp
    from app.dashboard.routes import bp as dashboard_bp
    from app.members.routes import bp as members_bp
    from app.orgs.routes import bp as orgs_bp
    from app.system.routes import bp as system_bp
    from app.vouchers.desk import bp as desk_bp
    from app.vouchers.records import bp as voucher_records_bp
    from app.vouchers.routes import bp as vouchers_bp

    for blueprint in (
        auth_bp, dashboard_bp, orgs_bp, members_bp, system_bp,
        vouchers_bp, desk_bp, voucher_records_bp,  # front-desk vouchers
        masterdata_bp, coupon_settings_bp, coupon_activities_bp, coupon_reports_bp, coupon_monitor_bp,
        coupon_reconciliation_bp, coupon_api_bp, coupon_callbacks_bp,  # coupons through 云数汇
        activities_bp, prizes_bp, wheel_bp, activity_records_bp, theme_statistics_bp, draw_api_bp,  # theme activities
        h5_activities_bp,  # the theme activities' H5 game, for bank customers
    ):
        app.register_blueprint(blueprint)
    if app.config["SANDBOXES_ENABLED"]:
        from app.sandbox import blueprints as sandbox_blueprints

        for blueprint in sandbox_blueprints():
            app.register_blueprint(blueprint)


def register_errors(app: Flask) -> None:
    from app.core.htmx import htmx_targets

    def error_page(status: int, title: str, message: str):
        template = "errors/error.html"
        if request.headers.get("HX-Request") and not request.headers.get("HX-Boosted"):
            from jinja2_fragments.flask import render_block

            return render_block(template, "error_fragment", status=status, title=title, message=message), status
        return render_template(template, status=status, title=title, message=message), status

    @app.errorhandler(403)
    def forbidden(error):
        return error_page(403, _("No permission"), _("Your role does not allow this. Ask an administrator if you need it."))

    def api_error(error):
        """Banks' systems get the API's JSON error, even for an address or method the API does not have
        (routing errors reach the app's handlers, not the API blueprints')."""
        from app.coupons.api import http_error

        return http_error(error)

    @app.errorhandler(404)
    def not_found(error):
        if request.path.startswith(API_PREFIX):
            return api_error(error)
        return error_page(404, _("Not found"), _("The page or record does not exist, or is not visible to you."))

    @app.errorhandler(405)
    def method_not_allowed(error):
        if request.path.startswith(API_PREFIX):
            return api_error(error)
        return error_page(405, _("Not allowed"), _("This address does not accept that kind of request."))

    @app.errorhandler(429)
    def too_many(error):
        if request.endpoint == "auth.login":
            from app.auth.forms import LoginForm

            message = _("Too many login attempts. Please wait 15 minutes and try again.")
            return render_template("auth/login.html", form=LoginForm(), limited=message), 429
        return error_page(429, _("Too many attempts"), _("Too many attempts. Please wait a few minutes and try again."))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return error_page(400, _("Form expired"), _("The form has expired or was not sent from this site. Reload the page and try again."))

    @app.errorhandler(500)
    def server_error(error):
        from app.extensions import db

        db.session.rollback()
        return error_page(500, _("Something went wrong"), _("The error has been logged. Please try again; nothing was changed."))

    app.jinja_env.globals["htmx_targets"] = htmx_targets


API_PREFIX = "/api/"  # the banks' JSON API (app.coupons.api, app.activities.draw_api)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
    ),
}


def register_security(app: Flask) -> None:
    """Session timeouts, the audit actor of each request, security headers, Vary: HX-Request."""
    from app.core import audit
    from app.extensions import client_ip

    @app.before_request
    def enforce_session_timeouts():
        if not current_user.is_authenticated:
            return None
        now = datetime.now(timezone.utc).timestamp()
        started = session.get("auth_at", now)
        seen = session.get("seen_at", now)
        idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"]).total_seconds()
        absolute = timedelta(hours=app.config["SESSION_ABSOLUTE_HOURS"]).total_seconds()
        if now - seen > idle or now - started > absolute:
            logout_user()
            session.clear()
            flash(_("Your session has expired. Please log in again."), "warning")
            return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))
        session["seen_at"] = now
        return None

    @app.before_request
    def set_audit_actor():
        if current_user.is_authenticated:
            actor = audit.Actor(current_user.id, current_user.username, current_user.org_id, client_ip())
        else:
            actor = audit.Actor(None, "anonymous", None, client_ip())
        audit.set_actor(actor)

    @app.after_request
    def add_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.vary.add("HX-Request")
        if app.config["SESSION_COOKIE_SECURE"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response


def register_jinja(app: Flask) -> None:
    from app.core import audit, crypto, money, timeutil
    from app.core.navigation import navigation
    from app.core.permissions import role_label

    app.jinja_env.filters.update(
        money=money.format_fen,
        dt=timeutil.format_local,
        date=lambda value: timeutil.format_local(value, "%Y-%m-%d"),
        mask_phone=crypto.mask_phone,
        role_label=role_label,
        audit_action=audit.action_label,
    )
    app.jinja_env.globals.update(csrf_token=generate_csrf, navigation=navigation)
    app.jinja_env.add_extension("jinja2.ext.do")

    @app.context_processor
    def inject_languages():
        from app.extensions import select_locale

        return {"languages": app.config["LANGUAGES"], "current_locale": select_locale()}


def register_cli(app: Flask) -> None:
    from app.core.cli import audit_cli
    from app.coupons.cli import coupons_cli
    from app.demo import demo_cli
    from app.vouchers.cli import vouchers_cli

    app.cli.add_command(audit_cli)
    app.cli.add_command(coupons_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(vouchers_cli)


def register_proxy_fix(app: Flask) -> None:
    """Behind PROXY_FIX_HOPS reverse proxies, take the client's address and scheme from their headers."""
    hops = app.config["PROXY_FIX_HOPS"]
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


def register_embedded_workers(app: Flask) -> None:
    """In the embedded default, the first request starts the job worker and cron threads."""
    if not app.config["EMBEDDED_WORKERS"]:
        return

    @app.before_request
    def start_workers_once():
        from jobs.embedded import start_embedded_workers

        start_embedded_workers(app)
