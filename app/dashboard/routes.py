"""The home page."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user, login_required

from app.core.permissions import permission_required
from app.dashboard import services

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    return redirect(url_for("dashboard.home"))


@bp.get("/dashboard")
@login_required
@permission_required("dashboard.view")
def home():
    return render_template("dashboard/home.html", figures=services.home_figures(current_user),
                           trend=services.registrations_by_day(current_user))
