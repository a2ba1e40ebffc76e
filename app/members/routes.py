"""Member and product screens."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("members", __name__)


# Interim pages, replaced by the members/products screens being built in this session.
from flask import render_template_string  # noqa: E402
from flask_login import login_required  # noqa: E402

_INTERIM = "{% extends 'base.html' %}{% block content %}<h1 class='h4'>{{ title }}</h1>{% endblock %}"


@bp.get("/members")
@login_required
def list_members():
    return render_template_string(_INTERIM, title="Members")


@bp.get("/products")
@login_required
def list_products():
    return render_template_string(_INTERIM, title="Products")
