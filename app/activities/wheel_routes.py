"""The roulette designer screen of a theme activity (blueprint `wheel`): the rows of the wheel with
their order, colour and weight, a live preview redrawn by htmx as each field changes, rows added and
removed, drag to reorder (SortableJS, this page only), the on/off switch, and saving behind a
confirmation.

Thin views over `app.activities.wheel_designer`. Every POST carries the whole design (the form); the
preview answers, for htmx's `#wheel-preview`, only the preview with the rows' chances and messages
(out-of-band); adding or removing a row answers the whole designer (`#wheel-designer`); without
JavaScript each answers the page. The theme activity is fetched with the tenancy helper: another
bank's is 404. Viewers see the wheel read-only.
"""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from app.core.htmx import htmx_targets, render_page, toast
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404

from . import prizes, services, wheel_designer
from .forms import STATUS_COLOURS, STATUS_LABELS
from .models import ThemeActivity
from .wheel_forms import WheelDesignForm

bp = Blueprint("wheel", __name__, url_prefix="/activities")
TEMPLATE = "activities/wheel/designer.html"
VIEW, MANAGE = "activities.view", "activities.manage"


def _theme(theme_id: int) -> ThemeActivity:
    return get_scoped_or_404(ThemeActivity, theme_id, current_user)


def _context(theme: ThemeActivity, checked: wheel_designer.CheckedDesign, **extra) -> dict:
    status = services.effective_status(theme)
    editable = current_user.can(MANAGE) and status != "expired"
    return {"theme": theme, "checked": checked, "status": status, "status_labels": STATUS_LABELS,
            "status_colours": STATUS_COLOURS, "kind_labels": prizes.KIND_LABELS, "editable": editable,
            "presets": wheel_designer.PRESET_COLOURS, "order_max": wheel_designer.ORDER_MAX,
            "choices": wheel_designer.row_choices(theme, checked.design) if editable else [], **extra}


def _designer(theme: ThemeActivity, design: wheel_designer.Design, status: int = 200, **extra):
    """The page, or only the designer when htmx targets it."""
    checked = wheel_designer.check_design(theme, design)
    page = render_page(TEMPLATE, "designer", targets=("wheel-designer",), **_context(theme, checked, **extra))
    return page, status


@bp.get("/<int:theme_id>/wheel")
@login_required
@permission_required(VIEW)
def designer(theme_id: int):
    theme = _theme(theme_id)
    return _designer(theme, wheel_designer.read_wheel(theme))


@bp.post("/<int:theme_id>/wheel/preview")
@login_required
@permission_required(MANAGE)
def preview(theme_id: int):
    """The design as posted, checked and drawn; with `add` or `remove` (a row's key), changed first."""
    theme = _theme(theme_id)
    design = WheelDesignForm().design()
    message = None
    if request.form.get("add"):
        design, message = wheel_designer.add_row(theme, design, request.form["add"])
    elif request.form.get("remove"):
        design, message = wheel_designer.remove_row(theme, design, request.form["remove"])
    if htmx_targets("wheel-preview"):
        checked = wheel_designer.check_design(theme, design)
        context = {**_context(theme, checked), "choices": []}
        return render_block(TEMPLATE, "preview", **context) + render_block(TEMPLATE, "row_updates", **context)
    page, status = _designer(theme, design)
    return toast(page, message, "warning") if message else page


def _saved_message(saved: wheel_designer.Saved, design: wheel_designer.Design) -> str:
    if saved.switched == "on":
        return _("The wheel is saved and on: customers can draw on its %(n)s segments.", n=len(design.rows))
    if saved.switched == "off":
        return _("The wheel is saved and off: customers cannot draw until it is turned on again.")
    if saved.changed_prizes == 0:
        return _("Nothing changed.")
    return _("The wheel is saved (%(n)s prize(s) changed).", n=saved.changed_prizes)


@bp.post("/<int:theme_id>/wheel")
@login_required
@permission_required(MANAGE)
def save(theme_id: int):
    theme = _theme(theme_id)
    design = WheelDesignForm().design()
    try:
        saved = wheel_designer.save_design(current_user, theme, design)
    except wheel_designer.InvalidDesign as exc:
        page = render_page(TEMPLATE, "designer", targets=("wheel-designer",), **_context(theme, exc.checked))
        return toast(page, _("The wheel was not saved: %(problem)s", problem=exc.checked.problems[0]), "warning"), 422
    message = _saved_message(saved, design)
    if htmx_targets("wheel-designer"):
        page, _status = _designer(theme, wheel_designer.read_wheel(theme))
        return toast(page, message)
    flash(message, "success")
    return redirect(url_for("wheel.designer", theme_id=theme.id))
