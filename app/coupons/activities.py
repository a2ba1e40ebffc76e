"""Coupon activities (活动优惠券): the rules for creating, editing, enabling, disabling and
terminating them, their generated codes, the list query with its filters, and the export record.

A coupon activity belongs to a bank's organisation (`org_id`). Linked to a theme activity, it
takes the theme's organisation (it inherits the theme's data permission); without one, the
operator names the bank. Its status is derived from time and `terminated_at` (not started →
running → ended; terminated by hand from running, for good), and `enabled` is the separate
生效 / 失效 switch. Every change is written to the audit trail with what it was before.

Decisions (also in the README design notes):
- names are at most 50 characters and unique across the platform (the database says so);
- a threshold of 0 means "no threshold"; any other threshold must be *above* the face value
  (满 X 减 Y with X > Y), never equal to it;
- the generated code is the channel prefix, the theme's 10-digit id (without a theme: the
  bank's 8-digit partner-bank code, or, for a bank not in the master data, its organisation
  code cut to 26 characters), "_" and the 10-digit Unix seconds of creation; a taken code
  moves on by one second until it is free;
- the per-member limit may only be raised (or kept): customers may already hold the old limit's
  worth, and raising never races the issue API's per-member counter;
- the issue total may not go below what has been issued (the row is locked while it changes);
- a batch no. is used by one coupon activity of a bank at a time (the bank API finds the
  activity by it);
- start times may be in the current minute (a form is filled to the minute).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.exc import IntegrityError

from app.activities.models import ThemeActivity
from app.core import audit
from app.core.activity_window import window_problems
from app.core.money import format_fen
from app.core.tenancy import scoped
from app.core.timeutil import format_local, utcnow
from app.coupons.models import (CHANNEL_PREFIX, CHANNELS, COUPON_TYPES, SETTLE_TYPES, TUNNELS, VALID_TYPES,
                                CouponActivity, Institution, PartnerBank)
from app.extensions import db
from app.orgs.models import Organisation

if TYPE_CHECKING:
    from app.auth.models import Operator

NAME_MAX = 50
DESCRIPTION_MAX = 256
USAGE_RULES_MAX = 2000
FACE_VALUE_MIN_FEN, FACE_VALUE_MAX_FEN = 1, 999_999  # 0.01 – 9,999.99 yuan
THRESHOLD_MAX_FEN = 99_999_999
DISCOUNT_MIN_BP, DISCOUNT_MAX_BP = 100, 9_900  # 1折 – 9.9折
VALID_DAYS_MAX = 3650
ISSUE_TOTAL_MAX = 100_000_000
MAX_COUPON_ACTIVITIES_PER_THEME = 10
CODE_KEY_MAX = 26  # prefix (≤3) + key + "_" + 10 digits fits the 40-character code column

BATCH_NO = re.compile(r"\d{9}")
THEME_NO = re.compile(r"\d{10}")
UPSTREAM_ACTIVITY_ID = re.compile(r"\d{10}")
OWNER_ID = re.compile(r"\d{8}")
PROMOTION_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
STATUSES = ("not_started", "running", "ended", "terminated")

audit.ACTION_LABELS.update({
    "coupon_activity.create": _l("Created a coupon activity"),
    "coupon_activity.update": _l("Edited a coupon activity"),
    "coupon_activity.enable": _l("Enabled a coupon activity"),
    "coupon_activity.disable": _l("Disabled a coupon activity"),
    "coupon_activity.terminate": _l("Terminated a coupon activity"),
    "coupon_activity.export": _l("Exported coupon activities"),
})

AUDITED_FIELDS = ("code", "name", "org_id", "theme_activity_id", "institution_id", "tunnel", "channel", "coupon_type",
                  "batch_no", "upstream_activity_id", "owner_id", "promotion_id", "start_at", "end_at",
                  "promo_amount_fen", "discount_bp", "threshold_fen", "valid_type", "valid_days", "issue_total",
                  "per_member_limit", "show_in_miniprogram", "settled", "settle_type", "settle_rate_bp",
                  "description", "usage_rules", "enabled", "terminated_at")
# What an operator may change on an existing activity; the rest is fixed at creation.
EDITABLE_FIELDS = ("name", "institution_id", "upstream_activity_id", "owner_id", "promotion_id", "start_at", "end_at",
                   "promo_amount_fen", "discount_bp", "threshold_fen", "valid_type", "valid_days", "issue_total",
                   "per_member_limit", "show_in_miniprogram", "settled", "settle_type", "settle_rate_bp",
                   "description", "usage_rules")


class InvalidActivity(ValueError):
    """The rules refuse these details; `errors` maps form field names to messages for the person."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class LifecycleError(ValueError):
    """A lifecycle step the activity's state does not allow (terminate when not running...)."""


@dataclass
class ActivityDetails:
    """What an operator says about a coupon activity, in stored units (fen, basis points, UTC)."""

    name: str | None = None
    theme_no: str | None = None  # the theme activity's 10-digit id, or None
    org_id: int | None = None  # the bank, when no theme activity is linked
    institution_id: int | None = None
    tunnel: str = "yunshuhui"
    channel: str = "wechat"
    coupon_type: str = "threshold"
    batch_no: str | None = None
    upstream_activity_id: str | None = None
    owner_id: str | None = None
    promotion_id: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    promo_amount_fen: int | None = None
    discount_bp: int | None = None
    threshold_fen: int | None = None
    valid_type: str = "absolute"
    valid_days: int | None = None
    issue_total: int | None = None
    per_member_limit: int | None = None
    show_in_miniprogram: bool = True
    settled: bool = False
    settle_type: str | None = None
    settle_rate_bp: int | None = None
    description: str | None = None
    usage_rules: str | None = None

    @classmethod
    def of(cls, activity: CouponActivity, theme_no: str | None) -> "ActivityDetails":
        """The details an existing activity has now (the starting point of an edit)."""
        values = {name: getattr(activity, name) for name in EDITABLE_FIELDS}
        return cls(theme_no=theme_no, org_id=activity.org_id, tunnel=activity.tunnel, channel=activity.channel,
                   coupon_type=activity.coupon_type, batch_no=activity.batch_no, **values)


@dataclass
class _Checked:
    details: ActivityDetails
    org_id: int | None = None
    theme: ThemeActivity | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)


# --- status, derived from time --------------------------------------------------------------------

def status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    """SQL for "the activity has this status at `now`" (the same rules as `CouponActivity.status_at`)."""
    live = CouponActivity.terminated_at.is_(None)
    return {
        "terminated": CouponActivity.terminated_at.is_not(None),
        "not_started": and_(live, CouponActivity.start_at > now),
        "running": and_(live, CouponActivity.start_at <= now, CouponActivity.end_at > now),
        "ended": and_(live, CouponActivity.end_at <= now),
    }[status]


def status_order(now: datetime) -> ColumnElement[int]:
    """A sortable rank of the status at `now`: not started, running, ended, terminated."""
    return case((CouponActivity.terminated_at.is_not(None), 3), (CouponActivity.start_at > now, 0),
                (CouponActivity.end_at <= now, 2), else_=1)


def is_over(activity: CouponActivity, now: datetime | None = None) -> bool:
    """Ended or terminated: from then on the activity is view-only."""
    return activity.status_at(now or utcnow()) in ("ended", "terminated")


# --- the checks -----------------------------------------------------------------------------------

def _clean_text(value: str | None) -> str | None:
    return (value or "").strip() or None


def _cleaned(details: ActivityDetails) -> ActivityDetails:
    texts = {name: _clean_text(getattr(details, name)) for name in (
        "name", "theme_no", "batch_no", "upstream_activity_id", "owner_id", "promotion_id", "description")}
    rules = (details.usage_rules or "").strip() or None
    return replace(details, usage_rules=rules, **texts)


def _visible_theme(actor: "Operator", theme_no: str) -> ThemeActivity | None:
    stmt = scoped(ThemeActivity, actor).where(ThemeActivity.theme_no == theme_no)
    return db.session.execute(stmt).scalar_one_or_none()


def _visible_bank(actor: "Operator", org_id: int) -> Organisation | None:
    return db.session.execute(scoped(Organisation, actor).where(
        Organisation.id == org_id, Organisation.kind == "bank", Organisation.status == "active")).scalar_one_or_none()


def _theme_refusal(theme: ThemeActivity | None, theme_no: str, now: datetime) -> str | None:
    """Why a coupon activity may not be linked to this theme activity, or None when it may."""
    if theme is None:
        return _("No theme activity %(id)s is visible to you.", id=theme_no)
    if theme.status != "active" or theme.end_at <= now:
        return _("Theme activity %(id)s is paused or over: coupon activities can no longer be linked to it.",
                 id=theme_no)
    if theme.wheel_enabled:
        return _("Theme activity %(id)s has its roulette on: no more coupon activities may be linked to it.",
                 id=theme_no)
    linked = db.session.execute(select(func.count()).select_from(CouponActivity).where(
        CouponActivity.theme_activity_id == theme.id)).scalar_one()
    if linked >= MAX_COUPON_ACTIVITIES_PER_THEME:
        return _("Theme activity %(id)s already has %(n)s coupon activities, the most it may have.",
                 id=theme_no, n=MAX_COUPON_ACTIVITIES_PER_THEME)
    return None


def _check_owner(actor: "Operator", c: _Checked, activity: CouponActivity | None, now: datetime) -> None:
    """The theme activity (if any) and the bank the activity belongs to: the theme's bank, else the one chosen."""
    d = c.details
    if activity is not None:  # both are fixed once the activity exists
        c.org_id, c.theme = activity.org_id, theme_of(activity)
    elif d.theme_no and not THEME_NO.fullmatch(d.theme_no):
        c.fail("theme", _("Enter the theme activity's 10-digit id, or pick one from the list."))
    elif d.theme_no:
        theme = _visible_theme(actor, d.theme_no)
        refusal = _theme_refusal(theme, d.theme_no, now)
        if refusal:
            c.fail("theme", refusal)
        else:
            c.theme, c.org_id = theme, theme.org_id
    elif d.org_id is None:
        c.fail("org_id", _("Choose the bank, or link a theme activity (the activity then belongs to its bank)."))
    elif _visible_bank(actor, d.org_id) is None:
        c.fail("org_id", _("Choose one of the banks in the list."))
    else:
        c.org_id = d.org_id


def _check_name(c: _Checked, activity: CouponActivity | None) -> None:
    name = c.details.name
    if not name:
        return c.fail("name", _("Enter the coupon activity's name."))
    if len(name) > NAME_MAX:
        return c.fail("name", _("The name may have at most %(n)s characters.", n=NAME_MAX))
    stmt = select(CouponActivity.id).where(func.lower(CouponActivity.name) == name.lower())
    if activity is not None:
        stmt = stmt.where(CouponActivity.id != activity.id)
    if db.session.execute(stmt.limit(1)).first():
        c.fail("name", _name_taken_message())


def _name_taken_message() -> str:
    return _("Another coupon activity already has this name. Names are unique across the platform.")


def _check_kind(c: _Checked) -> None:
    """Tunnel, channel, coupon type, batch no. and the 云数汇 identifiers."""
    d = c.details
    if d.tunnel not in TUNNELS:
        c.fail("tunnel", _("Choose a tunnel from the list."))
    if d.channel not in CHANNELS:
        c.fail("channel", _("Choose a channel from the list."))
    elif d.tunnel == "direct" and d.channel != "wechat":
        c.fail("channel", _("The direct tunnel issues WeChat Pay coupons only: choose WeChat."))
    if d.coupon_type not in COUPON_TYPES:
        c.fail("coupon_type", _("Choose a coupon type from the list."))
    if not d.batch_no:
        c.fail("batch_no", _("Enter the channel batch no."))
    elif not BATCH_NO.fullmatch(d.batch_no):
        c.fail("batch_no", _("The batch no. is exactly 9 digits."))
    upstream = (("upstream_activity_id", UPSTREAM_ACTIVITY_ID, _("The 云数汇 activity id is exactly 10 digits.")),
                ("owner_id", OWNER_ID, _("The 云数汇 owner id is exactly 8 digits.")),
                ("promotion_id", PROMOTION_ID, _("The promotion id has at most 32 letters, digits, '-' or '_'.")))
    if d.tunnel == "direct":
        upstream = upstream[2:]  # the promotion id is the WeChat Pay stock id the coupons come from
    elif d.tunnel != "yunshuhui":
        return  # the internal and other tunnels do not issue through us
    for name, pattern, message in upstream:
        value = getattr(d, name)
        if value is None:
            c.fail(name, _("Required for the 云数汇 tunnel.") if d.tunnel == "yunshuhui"
                   else _("Required for the direct tunnel: the WeChat Pay stock id."))
        elif not pattern.fullmatch(value):
            c.fail(name, message)


def _check_batch_free(c: _Checked, activity: CouponActivity | None) -> None:
    if c.org_id is None or "batch_no" in c.errors or activity is not None:
        return
    taken = db.session.execute(select(CouponActivity.code).where(
        CouponActivity.org_id == c.org_id, CouponActivity.batch_no == c.details.batch_no).limit(1)).scalar()
    if taken:
        c.fail("batch_no", _("Coupon activity %(code)s of this bank already uses this batch no.", code=taken))


def _check_amounts(c: _Checked) -> None:
    d = c.details
    face = d.promo_amount_fen
    if face is None:
        c.fail("promo_amount", _("Enter the face value in yuan."))
    elif not FACE_VALUE_MIN_FEN <= face <= FACE_VALUE_MAX_FEN:
        c.fail("promo_amount", _("The face value is from 0.01 to 9,999.99 yuan."))
    if d.coupon_type == "discount":
        if d.discount_bp is None:
            c.fail("discount_rate", _("Enter the discount in 折, e.g. 9 (the customer pays 90 percent)."))
        elif not DISCOUNT_MIN_BP <= d.discount_bp <= DISCOUNT_MAX_BP:
            c.fail("discount_rate", _("The discount is from 1 to 9.9 (1折 to 9.9折)."))
    threshold = d.threshold_fen
    if threshold is None:
        c.fail("threshold", _("Enter the threshold in yuan; 0 means no threshold."))
    elif threshold < 0 or threshold > THRESHOLD_MAX_FEN:
        c.fail("threshold", _("The threshold is from 0 to 999,999.99 yuan."))
    elif threshold and face is not None and threshold <= face:
        c.fail("threshold", _("The threshold must be above the face value (%(face)s), or 0 for none.",
                              face=format_fen(face)))


def _check_window(c: _Checked, activity: CouponActivity | None, now: datetime) -> None:
    d = c.details
    problems = window_problems(d.start_at, d.end_at, now, (activity.start_at, activity.end_at) if activity else None)
    for name, message in problems.items():
        c.fail(name, message)
    if "end_at" in problems:
        return
    theme = c.theme
    if theme is not None and d.start_at is not None and (d.start_at < theme.start_at or d.end_at > theme.end_at):
        c.fail("end_at" if d.start_at >= theme.start_at else "start_at",
               _("The time must lie within the theme activity's time, %(start)s to %(end)s.",
                 start=format_local(theme.start_at), end=format_local(theme.end_at)))


def _check_validity_and_limits(c: _Checked, activity: CouponActivity | None) -> None:
    d = c.details
    if d.valid_type not in VALID_TYPES:
        c.fail("valid_type", _("Choose how long a coupon stays valid."))
    elif d.valid_type == "relative" and (d.valid_days is None or not 1 <= d.valid_days <= VALID_DAYS_MAX):
        c.fail("valid_days", _("Enter the days a coupon stays valid after it is claimed, 1 to %(n)s.",
                               n=VALID_DAYS_MAX))
    total, limit = d.issue_total, d.per_member_limit
    if total is None or not 1 <= total <= ISSUE_TOTAL_MAX:
        c.fail("issue_total", _("The issue total is a whole number from 1 to %(n)s.", n=f"{ISSUE_TOTAL_MAX:,}"))
    elif activity is not None and total < activity.issued_count:
        c.fail("issue_total", _("%(n)s coupons have been issued already: the total may not be lower.",
                                n=activity.issued_count))
    if limit is None or limit < 1:
        c.fail("per_member_limit", _("Each customer may claim at least 1 coupon."))
    elif total is not None and limit > total:
        c.fail("per_member_limit", _("The per-customer limit may not exceed the issue total."))
    elif activity is not None and limit < activity.per_member_limit:
        c.fail("per_member_limit", _("The per-customer limit may only be raised (it is %(n)s now).",
                                     n=activity.per_member_limit))


def _check_settlement_and_texts(c: _Checked) -> None:
    d = c.details
    if d.settled and d.settle_type not in SETTLE_TYPES:
        c.fail("settle_type", _("Choose who bears the cost."))
    if d.settled and d.settle_type == "proportional" and (d.settle_rate_bp is None
                                                          or not 0 <= d.settle_rate_bp <= 10_000):
        c.fail("settle_rate", _("Enter the bank's share in percent, from 0 to 100."))
    if d.description and len(d.description) > DESCRIPTION_MAX:
        c.fail("description", _("The usage notes may have at most %(n)s characters.", n=DESCRIPTION_MAX))
    if d.usage_rules and len(d.usage_rules) > USAGE_RULES_MAX:
        c.fail("usage_rules", _("The usage rules may have at most %(n)s characters.", n=USAGE_RULES_MAX))


def not_applicable(d: ActivityDetails) -> set[str]:
    """The form fields the choices made leave out (the form hides them; their values are dropped)."""
    unused = set()
    if d.coupon_type != "discount":
        unused.add("discount_rate")
    if d.valid_type != "relative":
        unused.add("valid_days")
    if not d.settled:
        unused |= {"settle_type", "settle_rate"}
    elif d.settle_type != "proportional":
        unused.add("settle_rate")
    if d.tunnel != "yunshuhui":
        unused |= {"upstream_activity_id", "owner_id"}
    if d.tunnel not in ("yunshuhui", "direct"):
        unused.add("promotion_id")
    return unused


def _normalised(d: ActivityDetails) -> ActivityDetails:
    """Fields that do not apply to the choices made are cleared."""
    unused = not_applicable(d)
    cleared = {"discount_rate": "discount_bp", "valid_days": "valid_days", "settle_type": "settle_type",
               "settle_rate": "settle_rate_bp", "upstream_activity_id": "upstream_activity_id",
               "owner_id": "owner_id", "promotion_id": "promotion_id"}
    return replace(d, **{cleared[name]: None for name in unused})


def _kept(posted: datetime | None, stored: datetime) -> datetime | None:
    """The stored time when the form posted it back unchanged (forms carry whole seconds only)."""
    if posted is not None and posted.replace(microsecond=0) == stored.replace(microsecond=0):
        return stored
    return posted


def _check(actor: "Operator", details: ActivityDetails, activity: CouponActivity | None,
           now: datetime | None) -> _Checked:
    now = now or utcnow()
    details = _cleaned(details)
    if activity is not None:  # the locked fields keep their values whatever was posted
        details = replace(details, tunnel=activity.tunnel, channel=activity.channel,
                          coupon_type=activity.coupon_type, batch_no=activity.batch_no)
        details = replace(details, start_at=_kept(details.start_at, activity.start_at),
                          end_at=_kept(details.end_at, activity.end_at))
    c = _Checked(details=details)
    if activity is not None and is_over(activity, now):
        c.fail("name", _("This coupon activity has ended or was terminated: it can only be viewed."))
        return c
    _check_owner(actor, c, activity, now)
    _check_name(c, activity)
    _check_kind(c)
    _check_batch_free(c, activity)
    _check_amounts(c)
    _check_window(c, activity, now)
    _check_validity_and_limits(c, activity)
    _check_settlement_and_texts(c)
    _check_institution(c, activity)
    c.details = _normalised(details)
    return c


def _check_institution(c: _Checked, activity: CouponActivity | None) -> None:
    """An institution named must exist and be in normal use (one kept unchanged on an edit may be disabled since)."""
    chosen = c.details.institution_id
    if chosen is None or (activity is not None and chosen == activity.institution_id):
        return
    row = db.session.get(Institution, chosen)
    if row is None or row.status != "normal":
        c.fail("institution_id", _("Choose an institution from the list."))


def problems(actor: "Operator", details: ActivityDetails, activity: CouponActivity | None = None,
             now: datetime | None = None) -> dict[str, str]:
    """Every rule these details break (field name → message); empty when they may be saved."""
    return _check(actor, details, activity, now).errors


# --- the generated code ---------------------------------------------------------------------------

def code_key(org_id: int, theme: ThemeActivity | None) -> str:
    """The middle of the code: the theme's id, else the bank's partner-bank code, else its org code."""
    if theme is not None:
        return theme.theme_no
    bank_code = db.session.execute(select(PartnerBank.code).where(PartnerBank.org_id == org_id)).scalar()
    if bank_code:
        return bank_code
    org_code = db.session.execute(select(Organisation.code).where(Organisation.id == org_id)).scalar_one()
    return re.sub(r"[^0-9A-Z]", "", org_code.upper())[:CODE_KEY_MAX]


def _code(channel: str, key: str, seconds: int) -> str:
    return f"{CHANNEL_PREFIX[channel]}{key}_{seconds:010d}"


def next_free_code(channel: str, key: str, seconds: int) -> str:
    """`WX5000000074_1642492800`; when taken, the next second that is free."""
    def taken(code: str) -> bool:
        return db.session.execute(select(CouponActivity.id).where(CouponActivity.code == code)).first() is not None

    while taken(_code(channel, key, seconds)):
        seconds += 1
    return _code(channel, key, seconds)


# --- create, edit, switch, terminate --------------------------------------------------------------

def _snapshot(activity: CouponActivity) -> dict[str, Any]:
    return audit.snapshot(activity, AUDITED_FIELDS)


def _lock_theme(theme: ThemeActivity | None) -> None:
    """Serialise coupon activities being linked to one theme, so its cap of 10 holds."""
    if theme is not None:
        db.session.execute(select(ThemeActivity.id).where(ThemeActivity.id == theme.id).with_for_update())


def create_activity(actor: "Operator", details: ActivityDetails, now: datetime | None = None) -> CouponActivity:
    """Check and save a new coupon activity with its generated code; InvalidActivity when a rule is broken."""
    now = now or utcnow()
    c = _check(actor, details, None, now)
    if not c.errors and c.theme is not None:
        _lock_theme(c.theme)
        c = _check(actor, details, None, now)  # again, now that no one else can link to this theme
    if c.errors:
        db.session.rollback()
        raise InvalidActivity(c.errors)
    d = c.details
    values = {name: getattr(d, name) for name in EDITABLE_FIELDS}
    key = code_key(c.org_id, c.theme)
    seconds = int(now.timestamp())
    for _attempt in range(20):
        activity = CouponActivity(org_id=c.org_id, theme_activity_id=c.theme.id if c.theme else None,
                                  tunnel=d.tunnel, channel=d.channel, coupon_type=d.coupon_type, batch_no=d.batch_no,
                                  code=next_free_code(d.channel, key, seconds),
                                  issued_count=0, enabled=True, created_by=actor.id, updated_by=actor.id, **values)
        try:
            with db.session.begin_nested():
                db.session.add(activity)
                db.session.flush()
        except IntegrityError as exc:
            if "uq_coupon_activities_name" in str(exc.orig):
                db.session.rollback()
                raise InvalidActivity({"name": _name_taken_message()}) from exc
            if "uq_coupon_activities_code" not in str(exc.orig):
                raise
            seconds = int(activity.code.rsplit("_", 1)[1]) + 1  # someone took it a moment ago
            continue
        audit.record("coupon_activity.create", "coupon_activity", activity.id, after=_snapshot(activity),
                     org_id=activity.org_id)
        db.session.commit()
        return activity
    raise RuntimeError("could not find a free coupon activity code")


def _lock(activity: CouponActivity) -> CouponActivity:
    db.session.refresh(activity, with_for_update=True)
    return activity


def update_activity(actor: "Operator", activity: CouponActivity, details: ActivityDetails,
                    now: datetime | None = None) -> CouponActivity:
    """Save the editable fields (the row is locked, so the issued count cannot overtake a new total)."""
    now = now or utcnow()
    _lock(activity)
    c = _check(actor, details, activity, now)
    if c.errors:
        db.session.rollback()
        raise InvalidActivity(c.errors)
    before = _snapshot(activity)
    for name in EDITABLE_FIELDS:
        setattr(activity, name, getattr(c.details, name))
    activity.updated_by = actor.id
    old, new = audit.changed(before, _snapshot(activity))
    if not new:
        db.session.rollback()
        return activity
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        if "uq_coupon_activities_name" in str(exc.orig):
            raise InvalidActivity({"name": _name_taken_message()}) from exc
        raise
    audit.record("coupon_activity.update", "coupon_activity", activity.id, before=old, after=new,
                 org_id=activity.org_id)
    db.session.commit()
    return activity


@dataclass
class SwitchResult:
    changed: list[CouponActivity] = field(default_factory=list)
    unchanged: list[CouponActivity] = field(default_factory=list)  # already so
    over: list[CouponActivity] = field(default_factory=list)  # ended or terminated: left alone
    theme_paused: list[CouponActivity] = field(default_factory=list)  # theme not active: cannot be enabled


def set_enabled(actor: "Operator", ids: Iterable[int], enabled: bool, now: datetime | None = None) -> SwitchResult:
    """Switch the visible activities among `ids` to 生效 (enabled) or 失效 (disabled), each audited.

    Ids the operator cannot see are ignored (as if they did not exist); ended and terminated
    activities are left as they are, and an activity whose theme is paused or expired cannot be
    enabled (the theme's status governs its coupon activities).
    """
    now = now or utcnow()
    result = SwitchResult()
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return result
    rows = db.session.execute(scoped(CouponActivity, actor).where(CouponActivity.id.in_(wanted))
                              .order_by(CouponActivity.id).with_for_update()).scalars().all()
    for activity in rows:
        if is_over(activity, now):
            result.over.append(activity)
        elif activity.enabled == enabled:
            result.unchanged.append(activity)
        elif enabled and _theme_holds_back(activity):
            result.theme_paused.append(activity)
        else:
            activity.enabled, activity.updated_by = enabled, actor.id
            audit.record("coupon_activity.enable" if enabled else "coupon_activity.disable", "coupon_activity",
                         activity.id, before={"enabled": not enabled}, after={"enabled": enabled},
                         org_id=activity.org_id)
            result.changed.append(activity)
    db.session.commit()
    return result


def _theme_holds_back(activity: CouponActivity) -> bool:
    if activity.theme_activity_id is None:
        return False
    theme = db.session.get(ThemeActivity, activity.theme_activity_id)
    return theme is not None and theme.status != "active"


def terminate(actor: "Operator", activity: CouponActivity, now: datetime | None = None) -> CouponActivity:
    """End a running activity by hand, for good: no more coupons are issued from it."""
    now = now or utcnow()
    _lock(activity)
    if activity.status_at(now) != "running":
        db.session.rollback()
        raise LifecycleError(_("Only a running coupon activity can be terminated."))
    activity.terminated_at, activity.updated_by = now, actor.id
    audit.record("coupon_activity.terminate", "coupon_activity", activity.id, before={"terminated_at": None},
                 after={"terminated_at": now}, org_id=activity.org_id)
    db.session.commit()
    return activity


# --- look-ups for the screens ----------------------------------------------------------------------

def theme_no_in(text: str | None) -> str | None:
    """The 10-digit theme id at the start of what the operator typed or picked ("5000000084 · 春节")."""
    match = re.match(r"\s*(\d{10})(?!\d)", text or "")
    return match.group(1) if match else None


def linkable_themes(actor: "Operator", text: str, limit: int = 10, now: datetime | None = None) -> list[ThemeActivity]:
    """Theme activities visible to the actor that a coupon activity may be linked to, by id or name."""
    now = now or utcnow()
    stmt = scoped(ThemeActivity, actor).where(ThemeActivity.status == "active", ThemeActivity.end_at > now,
                                              ThemeActivity.wheel_enabled.is_(False))
    text = (text or "").strip()
    theme_no = theme_no_in(text)
    if theme_no:
        stmt = stmt.where(ThemeActivity.theme_no == theme_no)
    elif text.isdigit():
        stmt = stmt.where(ThemeActivity.theme_no.startswith(text))
    elif text:
        stmt = stmt.where(ThemeActivity.name.icontains(text, autoescape=True))
    return list(db.session.execute(stmt.order_by(ThemeActivity.created_at.desc(), ThemeActivity.id.desc())
                                   .limit(limit)).scalars())


def bank_choices(actor: "Operator") -> list[tuple[int, str]]:
    stmt = scoped(Organisation, actor).where(Organisation.kind == "bank", Organisation.status == "active")
    return [(o.id, o.name) for o in db.session.execute(stmt.order_by(Organisation.name)).scalars()]


LIST_FILTERS = ("tunnel", "channel", "code", "name", "valid_type", "theme_no", "batch_no", "from", "to", "status")


def activities_matching(actor: "Operator", filters: dict[str, str], now: datetime | None = None,
                        start: datetime | None = None, end: datetime | None = None) -> Select:
    """The visible coupon activities of one tunnel matching the list's filters.

    `start`/`end` (UTC, [start, end)) keep the activities whose own time overlaps that range.
    """
    now = now or utcnow()
    stmt = scoped(CouponActivity, actor).where(CouponActivity.tunnel == tunnel_of(filters))
    if filters.get("channel") in CHANNELS:
        stmt = stmt.where(CouponActivity.channel == filters["channel"])
    if filters.get("code"):
        stmt = stmt.where(CouponActivity.code.startswith(filters["code"].upper(), autoescape=True))
    if filters.get("name"):
        stmt = stmt.where(CouponActivity.name.icontains(filters["name"], autoescape=True))
    if filters.get("valid_type") in VALID_TYPES:
        stmt = stmt.where(CouponActivity.valid_type == filters["valid_type"])
    if filters.get("theme_no"):
        stmt = stmt.where(CouponActivity.theme_activity_id.in_(
            select(ThemeActivity.id).where(ThemeActivity.theme_no == filters["theme_no"])))
    if filters.get("batch_no"):
        stmt = stmt.where(CouponActivity.batch_no == filters["batch_no"])
    if filters.get("status") in STATUSES:
        stmt = stmt.where(status_condition(filters["status"], now))
    if start is not None:
        stmt = stmt.where(CouponActivity.end_at > start)
    if end is not None:
        stmt = stmt.where(CouponActivity.start_at < end)
    return stmt


def count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


def tunnel_of(filters: dict[str, str]) -> str:
    tunnel = filters.get("tunnel")
    return tunnel if tunnel in TUNNELS else "yunshuhui"


def tunnel_counts(actor: "Operator") -> dict[str, int]:
    """How many visible activities each tunnel tab holds."""
    stmt = scoped(CouponActivity, actor, select(CouponActivity.tunnel, func.count()).group_by(CouponActivity.tunnel))
    return dict(db.session.execute(stmt).all())


def record_export(filters: dict[str, str], rows: int) -> None:
    """The audit event of an export: what was asked for and how many rows left the console."""
    audit.record("coupon_activity.export", "coupon_activity", None, after={"filters": filters, "rows": rows,
                                                                           "format": "xlsx"})
    db.session.commit()


def theme_numbers(ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(select(ThemeActivity.id, ThemeActivity.theme_no)
                                   .where(ThemeActivity.id.in_(wanted))).all())


def institution_names(ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(select(Institution.id, Institution.name).where(Institution.id.in_(wanted))).all())


def operator_names(ids: Iterable[int | None]) -> dict[int, str]:
    from app.auth.models import Operator

    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(select(Operator.id, Operator.display_name).where(Operator.id.in_(wanted))).all())


def history(activity: CouponActivity, limit: int = 50) -> list[audit.AuditEvent]:
    """The activity's audit events, newest first."""
    return list(db.session.execute(select(audit.AuditEvent).where(
        audit.AuditEvent.object_type == "coupon_activity", audit.AuditEvent.object_id == str(activity.id))
        .order_by(audit.AuditEvent.id.desc()).limit(limit)).scalars())


def theme_of(activity: CouponActivity) -> ThemeActivity | None:
    return db.session.get(ThemeActivity, activity.theme_activity_id) if activity.theme_activity_id else None
