"""The columns of the coupon reports: what each report can show, in which words, which columns
show by default, and how a cell reads on screen (`kind`) and in the xlsx export (`export_value`).

A column's `value(row, lookups)` gives the raw value (fen, a datetime, a percentage, a status
key); the template formats it by `kind`, the export turns it into yuan, Shanghai time or words.
The column picker names columns by `key` (`cols=serial,openid,...` in the URL).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.core.money import fen_to_yuan
from app.core.timeutil import format_local
from app.coupons.forms import CHANNEL_LABELS, COUPON_TYPE_LABELS, TUNNEL_LABELS, discount_label
from app.coupons.models import COUPON_TYPES, CouponIssue
from app.coupons.reports import DetailLookups, Period, issue_state

STATE_LABELS = {"issuing": _l("Issuing"), "issued": _l("Issued"), "used": _l("Used"), "expired": _l("Expired"),
                "failed": _l("Failed")}
STATE_COLOURS = {"issuing": "info", "issued": "primary", "used": "success", "expired": "secondary",
                 "failed": "danger"}
REDEMPTION_LABELS = {"used": _l("Redeemed")}

KINDS = ("text", "code", "money", "count", "rate", "growth", "time", "day", "month", "state", "redemption")
NUMERIC_KINDS = ("money", "count", "rate", "growth")


@dataclass(frozen=True)
class ReportColumn:
    key: str
    label: Any
    kind: str
    value: Callable[[Any, Any], Any]
    default: bool = True

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS


def face_value(issue: CouponIssue) -> Any:
    """The coupon's amount: fen, or the discount's words ("9折") for a percentage discount."""
    activity = issue.activity
    if activity.coupon_type == "discount":
        return discount_label(activity.discount_bp)
    return activity.promo_amount_fen


def threshold(issue: CouponIssue) -> Any:
    """满 X 元可用 in fen, or words when the coupon has no threshold."""
    return issue.activity.threshold_fen or _("No threshold")


def _issue(key: str, label: Any, kind: str, value: Callable[[CouponIssue, DetailLookups], Any],
           default: bool = False) -> ReportColumn:
    return ReportColumn(key, label, kind, value, default)


_SERIAL = _issue("serial", _l("Issue serial"), "code", lambda i, _: i.order_no, True)
_BANK_SERIAL = _issue("bank_serial", _l("Bank serial"), "code", lambda i, _: i.call_trade_no)
_PLATFORM_SERIAL = _issue("platform_serial", _l("Platform serial"), "code", lambda i, _: i.trade_no)
_COUPON_ID = _issue("coupon_id", _l("Coupon id"), "code", lambda i, _: i.third_coupon_id)
_THEME = _issue("theme_no", _l("Theme activity id"), "code", lambda i, n: n.theme_nos.get(i.coupon_activity_id), True)
_CODE = _issue("code", _l("Coupon activity code"), "code", lambda i, _: i.activity.code, True)
_ACTIVITY = _issue("activity", _l("Coupon activity"), "text", lambda i, _: i.activity.name)
_OPENID = _issue("openid", _l("OpenID"), "code", lambda i, _: i.openid_masked, True)
_MEMBER = _issue("member_id", _l("Member id"), "code", lambda i, _: i.bank_member_id)
_INSTITUTION = _issue("institution", _l("Institution"), "text", lambda i, n: n.institutions.get(i.coupon_activity_id))
_BANK = _issue("bank", _l("Bank"), "text", lambda i, n: n.banks.get(i.org_id))
_TYPE = _issue("coupon_type", _l("Coupon type"), "text", lambda i, _: COUPON_TYPE_LABELS[i.activity.coupon_type], True)
_TUNNEL = _issue("tunnel", _l("Tunnel"), "text", lambda i, _: TUNNEL_LABELS[i.activity.tunnel])
_CHANNEL = _issue("channel", _l("Channel"), "text", lambda i, _: CHANNEL_LABELS[i.activity.channel])
_ISSUED_AT = _issue("issued_at", _l("Issue time"), "time", lambda i, _: i.created_at, True)

ISSUE_COLUMNS: tuple[ReportColumn, ...] = (
    _SERIAL, _BANK_SERIAL, _PLATFORM_SERIAL, _COUPON_ID, _THEME, _CODE, _ACTIVITY, _OPENID, _MEMBER, _INSTITUTION,
    _BANK, _TYPE,
    _issue("face_value", _l("Amount"), "money", lambda i, _: face_value(i), True),
    _issue("threshold", _l("Threshold"), "money", lambda i, _: threshold(i), True),
    _TUNNEL, _CHANNEL, _ISSUED_AT,
    _issue("state", _l("Status"), "state", lambda i, _: issue_state(i), True),
    _issue("result", _l("Result"), "text", lambda i, _: " ".join(filter(None, (i.res_code, i.fail_msg)))),
)

REDEMPTION_COLUMNS: tuple[ReportColumn, ...] = (
    _SERIAL,
    _issue("trade_serial", _l("Transaction serial"), "code", lambda i, _: i.redemption_trade_no, True),
    _COUPON_ID, _THEME, _CODE, _ACTIVITY, _OPENID, _TYPE,
    _issue("redeemed_fen", _l("Redeemed amount"), "money",
           lambda i, _: i.promo_amount_fen if i.promo_amount_fen is not None else i.activity.promo_amount_fen, True),
    _issue("order_fen", _l("Order amount"), "money", lambda i, _: i.total_amount_fen, True),
    _issue("paid_fen", _l("Paid amount"), "money", lambda i, _: i.org_amount_fen),
    _issue("merchant", _l("Merchant"), "text",
           lambda i, _: " ".join(filter(None, (i.merchant_no, i.merchant_name))) or None, True),
    replace(_ISSUED_AT, default=False),
    _issue("used_at", _l("Redemption time"), "time", lambda i, _: i.used_at, True),
    _MEMBER, _BANK_SERIAL, _PLATFORM_SERIAL, _INSTITUTION, _BANK, _TUNNEL, _CHANNEL,
    _issue("redemption", _l("Status"), "redemption", lambda i, _: i.redemption_status, True),
)


def _period(key: str, label: Any, kind: str, value: Callable[[Period], Any], default: bool = True) -> ReportColumn:
    return ReportColumn(key, label, kind, lambda p, _: value(p), default)


def _per_type(attribute: str, label: Any, default: bool) -> list[ReportColumn]:
    return [_period(f"{attribute}_{t}", _l("%(what)s: %(type)s", what=label, type=COUPON_TYPE_LABELS[t]), "count",
                    lambda p, t=t: getattr(p, attribute)[t], default) for t in COUPON_TYPES]


def _first_columns(monthly: bool, grain: str, counts: list[ReportColumn], growth_of: Any) -> list[ReportColumn]:
    """The period, the counts and, by month, the month-on-month growth of the main (last) count."""
    columns = [_period("period", _l("Month") if monthly else _l("Day"), grain, lambda p: p.start), *counts]
    if monthly:
        columns.append(_period("growth", _l("Month on month (%(what)s)", what=growth_of), "growth",
                               lambda p: p.growth_pct))
    return columns


def _amount_growth(monthly: bool, amount_of: Any) -> list[ReportColumn]:
    return [_period("amount_growth", _l("Month on month (%(what)s)", what=amount_of), "growth",
                    lambda p: p.amount_growth_pct, default=False)] if monthly else []


def _issue_period_columns(grain: str) -> tuple[ReportColumn, ...]:
    """Per period: requests, issued, failed, success rate, face value, issued per type (by day) or
    month-on-month growth (by month)."""
    monthly = grain == "month"
    return (
        *_first_columns(monthly, grain, [_period("requested", _l("Issue requests"), "count", lambda p: p.requested),
                                         _period("issued", _l("Issued"), "count", lambda p: p.issued)], _l("issued")),
        _period("failed", _l("Failed"), "count", lambda p: p.failed),
        _period("pending", _l("Still issuing"), "count", lambda p: p.pending, default=False),
        _period("success_pct", _l("Success rate"), "rate", lambda p: p.success_pct),
        _period("face_fen", _l("Face value issued"), "money", lambda p: p.face_fen),
        *_amount_growth(monthly, _l("face value")),
        *_per_type("issued_by_type", _l("Issued"), default=not monthly),
    )


def _redemption_period_columns(grain: str) -> tuple[ReportColumn, ...]:
    """Per period: redeemed, amounts, the redemption rate, redeemed per type (by day) or
    month-on-month growth (by month)."""
    monthly = grain == "month"
    redeemed = _period("redeemed", _l("Redeemed"), "count", lambda p: p.redeemed)
    return (
        *_first_columns(monthly, grain, [redeemed], _l("redeemed")),
        _period("redeemed_fen", _l("Redeemed amount"), "money", lambda p: p.redeemed_fen),
        *_amount_growth(monthly, _l("amount")),
        _period("order_fen", _l("Order amount"), "money", lambda p: p.order_fen, default=False),
        _period("issued", _l("Issued"), "count", lambda p: p.issued, default=False),
        _period("redemption_pct", _l("Redemption rate"), "rate", lambda p: p.redemption_pct),
        *_per_type("redeemed_by_type", _l("Redeemed"), default=not monthly),
    )


ISSUE_DAY_COLUMNS = _issue_period_columns("day")
ISSUE_MONTH_COLUMNS = _issue_period_columns("month")
REDEMPTION_DAY_COLUMNS = _redemption_period_columns("day")
REDEMPTION_MONTH_COLUMNS = _redemption_period_columns("month")


def ordered(columns: Iterable[ReportColumn], keys: Iterable[str]) -> tuple[ReportColumn, ...]:
    """The columns named by `keys` in that order, then the others in their own order."""
    by_key = {c.key: c for c in columns}
    first = [by_key[key] for key in keys if key in by_key]
    return tuple(first + [c for c in by_key.values() if c not in first])


def chosen(columns: Iterable[ReportColumn], keys: list[str] | None) -> list[ReportColumn]:
    """The columns the picker chose (in the report's own order), or the defaults when none valid was named."""
    columns = list(columns)
    wanted = set(keys or ())
    picked = [c for c in columns if c.key in wanted]
    return picked or [c for c in columns if c.default]


def is_default_choice(columns: Iterable[ReportColumn], picked: list[ReportColumn]) -> bool:
    return [c.key for c in picked] == [c.key for c in columns if c.default]


def state_label(kind: str, value: str | None) -> str:
    labels = STATE_LABELS if kind == "state" else REDEMPTION_LABELS
    return str(labels.get(value, value or ""))


def export_header(column: ReportColumn) -> str:
    """The export's header: money is in yuan, rates and growth are numbers of percent."""
    if column.kind == "money":
        return _("%(label)s (yuan)", label=column.label)
    if column.kind in ("rate", "growth"):
        return _("%(label)s (%%)", label=column.label)
    return str(column.label)


def export_value(column: ReportColumn, row: Any, lookups: Any) -> Any:
    """A cell of the xlsx export: yuan and percentages as numbers, Shanghai times and words as text."""
    value = column.value(row, lookups)
    if value is None:
        return ""
    if column.kind == "money":
        return fen_to_yuan(value) if isinstance(value, int) else str(value)
    if column.kind == "time":
        return format_local(value)
    if column.kind == "day":
        return value.isoformat()
    if column.kind == "month":
        return value.strftime("%Y-%m")
    if column.kind in ("state", "redemption"):
        return state_label(column.kind, value)
    if column.kind in ("count", "rate", "growth"):
        return value
    return str(value)
