"""Tenancy: an operator reaches the rows of their organisation and its descendants, nothing else.

Every query for a tenant-owned model goes through `scoped()`; every fetch by id through
`get_scoped_or_404()`; every organisation chosen in a form through `require_visible_org()`.
An out-of-scope row answers 404, never 403, so its existence is not revealed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from flask import abort
from sqlalchemy import Select, select

from app.extensions import db
from app.orgs.models import Organisation

if TYPE_CHECKING:
    from app.auth.models import Operator

M = TypeVar("M")


def sees_everything(actor: "Operator") -> bool:
    """Operators of the root organisation (the platform) see every row, including rows of no organisation."""
    return actor.org.parent_id is None


def visible_org_ids(actor: "Operator") -> list[int]:
    """The ids of the actor's organisation and all below it (read once per actor object, i.e. per request).

    A literal list rather than a sub-select, so the planner can use (org_id, ...) indexes for
    ordering and counting when the actor sees a single organisation.
    """
    cached = actor.__dict__.get("_visible_org_ids")
    if cached is None:
        cached = list(db.session.execute(
            select(Organisation.id).where(Organisation.path.startswith(actor.org.path, autoescape=True))
        ).scalars())
        actor.__dict__["_visible_org_ids"] = cached
    return cached


def can_see_org(actor: "Operator", org: Organisation) -> bool:
    return org.path.startswith(actor.org.path)


def scoped(model: type[M], actor: "Operator", stmt: Select | None = None) -> Select:
    """`select(model)` (or the given statement) limited to the actor's organisations."""
    stmt = select(model) if stmt is None else stmt
    if model is Organisation:
        return stmt.where(Organisation.path.startswith(actor.org.path, autoescape=True))
    if sees_everything(actor):
        return stmt
    return stmt.where(model.org_id.in_(visible_org_ids(actor)))  # type: ignore[attr-defined]


MAX_ID = 2**63 - 1  # BIGINT


def get_scoped_or_404(model: type[M], ident: int | str | None, actor: "Operator") -> M:
    """Fetch one row by primary key, or 404 when it is missing or outside the actor's organisations."""
    try:
        key = int(ident)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        abort(404)
    if not 0 < key <= MAX_ID:  # no row has it, and SQLite cannot even compare a larger number
        abort(404)
    row = db.session.execute(scoped(model, actor).where(model.id == key)).scalar_one_or_none()  # type: ignore[attr-defined]
    if row is None:
        abort(404)
    return row


def require_visible_org(actor: "Operator", org_id: int | str | None) -> Organisation:
    """The organisation a form names, if the actor may act on it; 404 otherwise."""
    return get_scoped_or_404(Organisation, org_id, actor)


def org_choices(actor: "Operator", kinds: tuple[str, ...] | None = None) -> list[tuple[int, str]]:
    """(id, name indented by depth) of the organisations an actor may pick, for a select field."""
    return [(o.id, "\u3000" * max(o.depth, 0) + o.name) for o in visible_orgs(actor, kinds)]


def org_names(actor: "Operator", ids: set[int] | None = None) -> dict[int, str]:
    """Names of the organisations the actor sees (only `ids`, when given)."""
    stmt = scoped(Organisation, actor, select(Organisation.id, Organisation.name))
    if ids is not None:
        if not ids:
            return {}
        stmt = stmt.where(Organisation.id.in_(ids))
    return dict(db.session.execute(stmt).all())


def in_org_subtree(actor: "Operator", column, org_id: int | str):
    """A filter: `column` is the chosen organisation or one below it (404 when the actor may not choose it)."""
    org = require_visible_org(actor, org_id)
    return column.in_(select(Organisation.id).where(Organisation.path.startswith(org.path, autoescape=True)))


def visible_orgs(actor: "Operator", kinds: tuple[str, ...] | None = None) -> list[Organisation]:
    """Organisations the actor may pick in a form, in tree order."""
    stmt = scoped(Organisation, actor).where(Organisation.status == "active").order_by(Organisation.path)
    if kinds:
        stmt = stmt.where(Organisation.kind.in_(kinds))
    return list(db.session.execute(stmt).scalars())
