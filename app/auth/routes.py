"""Login, logout, language switch, own password."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from app.auth import services
from app.auth.forms import ChangeOwnPasswordForm, EmptyForm, LoginForm
from app.extensions import limiter

bp = Blueprint("auth", __name__)


def _login_account_key() -> str:
    return "login-account:" + (request.form.get("username") or "").strip().lower()


def _failed(response) -> bool:
    return response.status_code == 422


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after login."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.home")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], methods=["POST"], scope="login-ip")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_login_account_key, deduct_when=_failed, scope="login-account")
def login():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.home"))
    form = LoginForm()
    if form.validate_on_submit():
        result = services.authenticate(form.username.data, form.password.data)
        if result.operator is not None:
            locale = session.get("locale")
            session.clear()  # a fresh session on login
            if locale:
                session["locale"] = locale
            login_user(result.operator)
            session.permanent = True
            now = datetime.now(timezone.utc).timestamp()
            session["auth_at"] = session["seen_at"] = now
            flash(_("Welcome, %(name)s.", name=result.operator.display_name), "success")
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append(result.error)
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    EmptyForm().validate_on_submit()
    logout_user()
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/language", methods=["POST"])
def set_language():
    """Switch the console language (a preference, kept in the session)."""
    form = EmptyForm()
    choice = request.form.get("locale")
    if form.validate_on_submit() and choice in current_app.config["LANGUAGES"]:
        session["locale"] = choice
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = ChangeOwnPasswordForm()
    if form.validate_on_submit():
        try:
            services.change_own_password(current_user, form.current.data, form.password.data)
        except services.OperatorError as exc:
            form.current.errors.append(str(exc))
        else:
            login_user(current_user)  # the session carries the new session version
            flash(_("Your password has been changed."), "success")
            return redirect(url_for("dashboard.home"))
    status = 422 if form.errors else 200
    return render_template("auth/password.html", form=form), status
