"""The console's left menu: sections of links, each shown only to operators with its permission."""
from __future__ import annotations

from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from flask_login import current_user


@dataclass(frozen=True)
class NavLink:
    endpoint: str
    label: str
    icon: str
    permission: str


MENU: list[tuple[str, list[NavLink]]] = [
    (_l("Overview"), [NavLink("dashboard.home", _l("Dashboard"), "speedometer2", "dashboard.view")]),
    (_l("Customers"), [
        NavLink("members.list_members", _l("Members"), "people", "members.view"),
        NavLink("members.list_products", _l("Products"), "box-seam", "products.view"),
    ]),
    (_l("Vouchers"), [
        NavLink("desk.desk", _l("Front desk"), "upc-scan", "frontdesk.verify"),
        NavLink("voucher_records.list_vouchers", _l("Voucher list"), "ticket-perforated", "vouchers.view"),
        NavLink("voucher_records.voucher_statistics", _l("Voucher statistics"), "pie-chart", "vouchers.view"),
        NavLink("voucher_records.reconciliation", _l("Reconciliation"), "arrow-left-right", "vouchers.view"),
        NavLink("vouchers.platform_settings", _l("Voucher platforms"), "plug", "vouchers.configure"),
    ]),
    (_l("Organisation"), [
        NavLink("orgs.list_orgs", _l("Organisations"), "diagram-3", "orgs.view"),
        NavLink("orgs.list_operators", _l("Operators"), "person-badge", "operators.view"),
    ]),
    (_l("System"), [
        NavLink("system.audit_log", _l("Audit trail"), "journal-check", "audit.view"),
        NavLink("system.outbox", _l("Outbox deliveries"), "send", "system.outbox"),
        NavLink("system.job_runs", _l("Background jobs"), "hourglass-split", "system.jobs"),
    ]),
]


def navigation() -> list[tuple[str, list[NavLink]]]:
    """The menu sections the current operator may see (sections with no visible link are dropped)."""
    if not current_user.is_authenticated:
        return []
    sections = []
    for title, links in MENU:
        visible = [link for link in links if current_user.can(link.permission)]
        if visible:
            sections.append((title, visible))
    return sections
