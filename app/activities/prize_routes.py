"""The prize pool screen of a theme activity (blueprint `prizes`): the prizes with their stock and
chance, inline editing, stock added while the activity runs, and a form to add a prize.

Thin views over `app.activities.prizes`. With htmx a change answers the pool's table (the chances
move with every change) and a toast; without JavaScript it redirects back to the page. The theme
activity is fetched with the tenancy helper, its prize only within it: another bank's is 404.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from jinja2_fragments.flask import render_block

from app.core.htmx import htmx_targets, render_page, toast
from app.core.permissions import permission_required
from app.core.tenancy import get_scoped_or_404

from . import prizes, services
from .forms import STATUS_COLOURS, STATUS_LABELS
from .models import ThemeActivity
from .prize_forms import PrizeForm, StockForm

bp = Blueprint("prizes", __name__, url_prefix="/activities")
TEMPLATE = "activities/prizes/pool.html"


def _theme(theme_id: int) -> ThemeActivity:
    return get_scoped_or_404(ThemeActivity, theme_id, current_user)


def _prize(theme: ThemeActivity, prize_id: int):
    prize = prizes.prize_in(theme, prize_id)
    if prize is None:
        abort(404)
    return prize


def _prize_form(theme: ThemeActivity, **kwargs) -> PrizeForm:
    form = PrizeForm(**kwargs)
    form.offer_coupons(prizes.coupon_choices(theme))
    return form


def _next_order(theme: ThemeActivity) -> int:
    taken = {p.sort_order for p in prizes.prizes_of(theme)}
    return next((n for n in range(1, prizes.ORDER_MAX + 1) if n not in taken), prizes.ORDER_MAX)


def _context(theme: ThemeActivity, add_form: PrizeForm | None = None, **extra) -> dict:
    if add_form is None:
        add_form = _prize_form(theme, formdata=None, data={"sort_order": _next_order(theme), "weight": 10})
    status = services.effective_status(theme)
    return {"theme": theme, "rows": prizes.pool(theme), "add_form": add_form, "stock_form": StockForm(formdata=None),
            "status": status, "status_labels": STATUS_LABELS, "status_colours": STATUS_COLOURS,
            "kind_labels": prizes.KIND_LABELS, "view_only": status == "expired",
            "manage": current_user.can("activities.manage"), **extra}


def _pool(theme: ThemeActivity, status: int = 200, **extra):
    return render_page(TEMPLATE, "pool", targets=("prize-pool",), **_context(theme, **extra)), status


def _changed(theme: ThemeActivity, message: str):
    """After a change: the pool's table and a toast (htmx), or back to the page."""
    if htmx_targets("prize-pool"):
        return toast(render_block(TEMPLATE, "pool", **_context(theme)), message)
    flash(message, "success")
    return redirect(url_for("prizes.pool", theme_id=theme.id))


@bp.get("/<int:theme_id>/prizes")
@login_required
@permission_required("activities.view")
def pool(theme_id: int):
    return _pool(_theme(theme_id))


@bp.post("/<int:theme_id>/prizes")
@login_required
@permission_required("activities.manage")
def add_prize(theme_id: int):
    theme = _theme(theme_id)
    form = _prize_form(theme)
    if form.validate_on_submit():
        try:
            prize = prizes.add_prize(current_user, theme, form.details())
        except prizes.InvalidPrize as exc:
            form.show_errors(exc.errors)
            return _pool(theme, 422, add_form=form, add_error=exc.errors.get("__all__"), add_open=True)
        return _changed(theme, _("Prize %(name)s added.", name=prize.name))
    return _pool(theme, 422, add_form=form, add_open=True)


@bp.route("/<int:theme_id>/prizes/<int:prize_id>/edit", methods=["GET", "POST"])
@login_required
@permission_required("activities.manage")
def edit_prize(theme_id: int, prize_id: int):
    theme = _theme(theme_id)
    prize = _prize(theme, prize_id)
    form = _prize_form(theme)
    if form.is_submitted():
        if form.validate():
            try:
                prizes.update_prize(current_user, theme, prize, form.details())
                return _changed(theme, _("Prize %(name)s saved.", name=prize.name))
            except prizes.InvalidPrize as exc:
                form.show_errors(exc.errors)
                return _edit_row(theme, prize, form, exc.errors.get("__all__"), 422)
        return _edit_row(theme, prize, form, None, 422)
    form.fill(prize)
    return _edit_row(theme, prize, form, None, 200)


def _edit_row(theme: ThemeActivity, prize, form: PrizeForm, error: str | None, status: int):
    """The prize's row as a form: alone for the Edit button, else within the pool (or the page)."""
    context = _context(theme, editing=prize.id, edit_form=form, edit_error=error)
    if htmx_targets(f"prize-{prize.id}"):
        row = next(r for r in context["rows"] if r.prize.id == prize.id)
        return render_block(TEMPLATE, "edit_row", row=row, **context), status
    return render_page(TEMPLATE, "pool", targets=("prize-pool",), **context), status


@bp.post("/<int:theme_id>/prizes/<int:prize_id>/stock")
@login_required
@permission_required("activities.manage")
def add_stock(theme_id: int, prize_id: int):
    theme = _theme(theme_id)
    prize = _prize(theme, prize_id)
    form = StockForm()
    try:
        if not form.validate_on_submit():
            raise prizes.InvalidPrize({"amount": (form.amount.errors or [_("Add at least one unit.")])[0]})
        prizes.add_stock(current_user, theme, prize, form.amount.data)
    except prizes.InvalidPrize as exc:
        message = next(iter(exc.errors.values()))
        if htmx_targets("prize-pool"):
            return toast(render_block(TEMPLATE, "pool", **_context(theme)), message, "warning"), 422
        flash(message, "warning")
        return redirect(url_for("prizes.pool", theme_id=theme.id))
    return _changed(theme, _("%(n)s unit(s) added to %(name)s.", n=form.amount.data, name=prize.name))
