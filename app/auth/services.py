"""Operator accounts: authentication, creation, edits, roles, passwords, disabling."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import func, select

from app.auth.models import Operator
from app.core import audit
from app.core.permissions import assignable_roles
from app.core.timeutil import utcnow
from app.extensions import db
from app.orgs.models import Organisation

AUDITED_FIELDS = ("username", "display_name", "org_id", "status", "roles")


class OperatorError(ValueError):
    """A change to an operator that the rules refuse; the message is for the person."""


@dataclass
class LoginResult:
    operator: Operator | None
    error: str | None = None


def find_by_username(username: str) -> Operator | None:
    return db.session.execute(
        select(Operator).where(func.lower(Operator.username) == username.strip().lower())
    ).scalar_one_or_none()


def authenticate(username: str, password: str) -> LoginResult:
    """Check a login; the same message for an unknown user and a wrong password."""
    operator = find_by_username(username)
    if operator is None or not operator.check_password(password):
        audit.record("auth.login_failed", "operator", operator.id if operator else None,
                     after={"username": username[:50]}, org_id=operator.org_id if operator else None)
        db.session.commit()
        return LoginResult(None, _("Wrong username or password."))
    if not operator.is_active:
        return LoginResult(None, _("This account or its organisation is disabled."))
    operator.last_login_at = utcnow()
    with audit.acting_as(audit.Actor(operator.id, operator.username, operator.org_id, audit.current_actor().ip)):
        audit.record("auth.login", "operator", operator.id)
    db.session.commit()
    return LoginResult(operator)


def _check_roles(actor: Operator, roles: list[str]) -> None:
    allowed = set(assignable_roles(actor.permissions))
    refused = [r for r in roles if r not in allowed]
    if refused:
        raise OperatorError(_("You may not grant these roles: %(roles)s", roles=", ".join(refused)))


def _check_username_free(username: str, operator_id: int | None = None) -> None:
    existing = find_by_username(username)
    if existing is not None and existing.id != operator_id:
        raise OperatorError(_("This username is taken."))


def create_operator(actor: Operator, org: Organisation, username: str, display_name: str, roles: list[str],
                    password: str) -> Operator:
    _check_roles(actor, roles)
    _check_username_free(username)
    operator = Operator(username=username.strip(), display_name=display_name.strip(), org_id=org.id, org=org,
                        password_changed_at=utcnow())
    operator.set_password(password)
    operator.set_roles(roles)
    db.session.add(operator)
    db.session.flush()
    audit.record("operator.create", "operator", operator.id, after=audit.snapshot(operator, AUDITED_FIELDS),
                 org_id=org.id)
    db.session.commit()
    return operator


def update_operator(actor: Operator, operator: Operator, org: Organisation, username: str, display_name: str,
                    roles: list[str]) -> Operator:
    _check_roles(actor, roles)
    _check_username_free(username, operator.id)
    if operator.id == actor.id and set(roles) != set(operator.roles):
        raise OperatorError(_("You cannot change your own roles."))
    before = audit.snapshot(operator, AUDITED_FIELDS)
    operator.username = username.strip()
    operator.display_name = display_name.strip()
    operator.org_id = org.id
    operator.org = org
    operator.set_roles(roles)
    _before, after = audit.changed(before, audit.snapshot(operator, AUDITED_FIELDS))
    if after:
        audit.record("operator.update", "operator", operator.id, before={k: before[k] for k in after}, after=after,
                     org_id=org.id)
    db.session.commit()
    return operator


def set_operator_status(actor: Operator, operator: Operator, status: str) -> Operator:
    if operator.id == actor.id:
        raise OperatorError(_("You cannot disable your own account."))
    action = f"operator.{'disable' if status == 'disabled' else 'enable'}"
    if audit.change_status(operator, "operator", status, action, operator.org_id):
        if status == "disabled":
            operator.session_version += 1  # sign the operator out everywhere
        db.session.commit()
    return operator


def reset_password(operator: Operator, new_password: str) -> None:
    """Set a new password and end the operator's other sessions."""
    operator.set_password(new_password)
    operator.password_changed_at = utcnow()
    operator.session_version += 1
    audit.record("operator.reset_password", "operator", operator.id, org_id=operator.org_id)
    db.session.commit()


def change_own_password(operator: Operator, current: str, new_password: str) -> None:
    if not operator.check_password(current):
        raise OperatorError(_("The current password is wrong."))
    reset_password(operator, new_password)
