"""Roles and named permissions, and the decorators that check them.

A role is a fixed, named set of permissions defined here in code; an operator holds one or more
roles. Views check permissions, never role names, so a role can change without touching views.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable, Iterable

from flask import abort
from flask_babel import lazy_gettext as _l
from flask_login import current_user

PERMISSIONS: dict[str, str] = {
    "dashboard.view": _l("View the dashboard"),
    "orgs.view": _l("View organisations"),
    "orgs.manage": _l("Create and edit organisations"),
    "operators.view": _l("View operators"),
    "operators.manage": _l("Create, edit and disable operators"),
    "members.view": _l("View members"),
    "members.manage": _l("Create and edit members"),
    "members.view_pii": _l("See members' full phone numbers"),
    "members.export": _l("Export members"),
    "products.view": _l("View products"),
    "products.manage": _l("Create and edit products"),
    "audit.view": _l("View the audit trail"),
    "system.outbox": _l("View and retry outbox deliveries"),
    "system.jobs": _l("View and start background jobs"),
    "approvals.decide": _l("Approve or reject requests"),
    "frontdesk.verify": _l("Verify vouchers at the front desk"),
    "vouchers.configure": _l("Configure voucher platforms and deal mappings"),
    "vouchers.view": _l("View vouchers, verifications and voucher statistics"),
    "vouchers.undo": _l("Undo a voucher verification"),
    "vouchers.sync": _l("Start voucher sync and reconciliation"),
    "coupons.view": _l("View coupon activities, issued coupons and coupon reports"),
    "coupons.manage": _l("Create, edit, enable and disable coupon activities; retry failed issues"),
    "coupons.terminate": _l("Terminate coupon activities (cannot be undone)"),
    "coupons.configure": _l("Configure coupon tunnels and banks' API clients"),
    "masterdata.manage": _l("Manage institutions, banks and position numbers"),
    "activities.view": _l("View theme activities"),
    "activities.manage": _l("Create, edit, pause and enable theme activities; manage their institutions and banks"),
    "platform.manage": _l("Manage the whole platform (partner platforms, sandboxes, all organisations)"),
}

_VIEW_ONLY = {"dashboard.view", "orgs.view", "operators.view", "members.view", "products.view", "vouchers.view",
              "coupons.view", "activities.view"}

ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "platform_admin": (_l("Platform admin"), frozenset(PERMISSIONS)),
    # Everything within the admin's own organisation subtree; tenancy keeps them inside it.
    "org_admin": (_l("Organisation admin"), frozenset(PERMISSIONS) - {"platform.manage", "masterdata.manage"}),
    "operator": (
        _l("Operator"),
        frozenset(_VIEW_ONLY | {"members.manage", "members.export", "products.manage", "system.jobs",
                                "vouchers.sync", "vouchers.undo", "coupons.manage",
                                "activities.manage"}),
    ),
    "approver": (_l("Approver"), frozenset(_VIEW_ONLY | {"approvals.decide", "audit.view"})),
    "front_desk": (_l("Front desk"), frozenset({"dashboard.view", "members.view", "frontdesk.verify", "vouchers.view"})),
    "viewer": (_l("Viewer"), frozenset(_VIEW_ONLY)),
}


def permissions_of(role_names: Iterable[str]) -> frozenset[str]:
    granted: set[str] = set()
    for name in role_names:
        if name in ROLES:
            granted |= ROLES[name][1]
    return frozenset(granted)


def role_label(name: str) -> str:
    return str(ROLES[name][0]) if name in ROLES else name


def assignable_roles(actor_permissions: frozenset[str]) -> list[str]:
    """Roles an actor may hand out: those that grant nothing the actor lacks."""
    return [name for name, (_, perms) in ROLES.items() if perms <= actor_permissions]


def permission_required(*needed: str) -> Callable:
    """Decorate a view: 403 unless the logged-in operator has every permission named."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                from app.extensions import login_manager

                return login_manager.unauthorized()
            if not all(current_user.can(p) for p in needed):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = needed  # type: ignore[attr-defined]
        return wrapped

    return decorator
