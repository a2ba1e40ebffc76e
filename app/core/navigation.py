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
    (_l("Coupons"), [
        NavLink("activities.list_activities", _l("Theme activities"), "flag", "activities.view"),
        NavLink("coupon_activities.list_activities", _l("Coupon activities"), "ticket", "coupons.view"),
        NavLink("coupon_monitor.overview", _l("Issuance monitor"), "activity", "coupons.view"),
        NavLink("coupon_reconciliation.differences", _l("Coupon reconciliation"), "arrow-left-right", "coupons.view"),
        NavLink("coupon_settings.list_tunnels", _l("Coupon tunnels"), "plug", "coupons.configure"),
        NavLink("coupon_settings.list_api_clients", _l("Bank API clients"), "key", "coupons.configure"),
    ]),
    (_l("Data centre"), [
        NavLink("coupon_reports.issue_details", _l("Issue details"), "list-ul", "coupons.view"),
        NavLink("coupon_reports.redemption_details", _l("Redemption details"), "receipt", "coupons.view"),
        NavLink("coupon_reports.daily_issue_summary", _l("Daily issue summary"), "calendar3", "coupons.view"),
        NavLink("coupon_reports.monthly_issue_summary", _l("Monthly issue summary"), "calendar3-range", "coupons.view"),
        NavLink("coupon_reports.daily_redemption_summary", _l("Daily redemption summary"), "bar-chart", "coupons.view"),
        NavLink("coupon_reports.monthly_redemption_summary", _l("Monthly redemption summary"), "graph-up",
                "coupons.view"),
        NavLink("theme_statistics.all_statistics", _l("Theme activity statistics"), "bar-chart-line",
                "activities.view"),
    ]),
    (_l("Master data"), [
        NavLink("masterdata.list_institutions", _l("Institutions"), "building", "masterdata.manage"),
        NavLink("masterdata.list_banks", _l("Banks"), "bank", "masterdata.manage"),
        NavLink("masterdata.list_positions", _l("Position numbers"), "123", "masterdata.manage"),
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
