"""Theme activities (主题活动管理): the rules for adding and editing them, their generated ids, the
list query with its filters, the batch data of their coupon activities, and the export record.

A theme activity belongs to its bank's organisation (`org_id` is the chosen partner bank's
organisation), so a bank's operators see only their bank's theme activities; the platform sees
all. Its status is stored (ACTIVE / PAUSED / EXPIRED) but a passed end counts as EXPIRED at once,
before the expiry job has written it (`effective_status`). Pausing, enabling and expiring are in
`app.activities.lifecycle`; the enrolled institutions and linked banks in `app.activities.links`.
Every change is written to the audit trail with what it was before.

Decisions (also in the README design notes):
- the name has at most 100 characters (§3.1 and the column; §7 also mentions 50), not blank, and
  need not be unique;
- the rules text has at most 1,000 characters (§3.1; §7 also mentions 500); line breaks are kept;
- participation limits follow §1.1's meanings in the form: empty = no cap, 0 = nobody may take
  part (an activity being prepared), 1–999 = the cap (§3.1's range); the daily limit may not
  exceed the total; on an edit both may only be raised (no cap counts as the highest), so no
  customer ever finds they have already gone past a new limit;
- the start may not be in the past (the current minute counts: forms are filled to the minute),
  and once the activity has started its start is fixed; the end must be after the start and, when
  changed, in the future;
- an edit may not move the window so that a coupon already issued from a linked coupon activity
  (any issue not failed, at its issue time, else the time it was asked for) falls outside it;
- the institution and the bank are fixed once the activity exists (its data permission and its
  coupon activities depend on the bank);
- a position number is optional; a newly chosen one must be "available" in the master data (one
  number may serve several theme activities: nothing says otherwise);
- ids are 10 digits counted up from 5000000001 (a counter row, never handed out twice); an id
  already taken (e.g. by imported data) is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.activities import backgrounds
from app.activities.models import (FIRST_THEME_NO, ThemeActivity, ThemeActivityBank, ThemeActivityInstitution,
                                   ThemeNumberCounter)
from app.core import audit
from app.core.activity_window import window_problems
from app.core.tenancy import scoped
from app.core.timeutil import as_utc, format_local, utcnow
from app.coupons.models import CouponActivity, CouponIssue, Institution, PartnerBank, PositionNumber
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import Operator

NAME_MAX = 100
RULES_MAX = 1000
LIMIT_MAX = 999
STATUSES = ("active", "paused", "expired")
LIST_FILTERS = ("theme_no", "name", "position_no", "institution_id", "partner_bank_id", "wheel", "status", "from", "to")
# Issues that are, or may still become, coupons in a customer's hands.
LIVE_ISSUE_STATUSES = ("queued", "processing", "succeeded")

audit.ACTION_LABELS.update({
    "theme_activity.create": _l("Created a theme activity"),
    "theme_activity.update": _l("Edited a theme activity"),
    "theme_activity.pause": _l("Paused a theme activity"),
    "theme_activity.enable": _l("Enabled a theme activity"),
    "theme_activity.expire": _l("A theme activity expired"),
    "theme_activity.export": _l("Exported theme activities"),
    "theme_activity.link_institution": _l("Enrolled an institution in a theme activity"),
    "theme_activity.unlink_institution": _l("Removed an institution from a theme activity"),
    "theme_activity.link_bank": _l("Linked a bank to a theme activity"),
    "theme_activity.unlink_bank": _l("Removed a bank from a theme activity"),
    "theme_activity.import_institutions": _l("Imported institutions into a theme activity"),
    "theme_activity.import_banks": _l("Imported banks into a theme activity"),
})

AUDITED_FIELDS = ("theme_no", "name", "org_id", "institution_id", "partner_bank_id", "position_no", "start_at",
                  "end_at", "rules", "participation_limit", "daily_limit", "background_image", "wheel_enabled",
                  "status")
EDITABLE_FIELDS = ("name", "position_no", "start_at", "end_at", "rules", "participation_limit", "daily_limit")


class InvalidTheme(ValueError):
    """The rules refuse these details; `errors` maps form field names to messages for the person."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class ThemeDetails:
    """What an operator says about a theme activity, in stored units (UTC times)."""

    name: str | None = None
    position_no: str | None = None
    institution_id: int | None = None
    partner_bank_id: int | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    rules: str | None = None
    participation_limit: int | None = None
    daily_limit: int | None = None
    background_ref: str | None = None  # a pending upload, or the stored image kept

    @classmethod
    def of(cls, theme: ThemeActivity) -> "ThemeDetails":
        """The details an existing theme activity has now (the starting point of an edit)."""
        return cls(institution_id=theme.institution_id, partner_bank_id=theme.partner_bank_id,
                   background_ref=theme.background_image, **{name: getattr(theme, name) for name in EDITABLE_FIELDS})


@dataclass
class _Checked:
    details: ThemeDetails
    bank: PartnerBank | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)


# --- status ---------------------------------------------------------------------------------------

def effective_status(theme: ThemeActivity, now: datetime | None = None) -> str:
    """ACTIVE / PAUSED as stored, but EXPIRED as soon as the end has passed."""
    if theme.status == "expired" or as_utc(theme.end_at) <= as_utc(now or utcnow()):
        return "expired"
    return theme.status


def _expired(now: datetime) -> ColumnElement[bool]:
    return or_(ThemeActivity.status == "expired", ThemeActivity.end_at <= now)


def status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    """SQL for "the theme activity's effective status at `now` is `status`"."""
    if status == "expired":
        return _expired(now)
    return and_(ThemeActivity.status == status, ThemeActivity.end_at > now)


def status_order(now: datetime) -> ColumnElement[int]:
    """A sortable rank of the effective status: active, paused, expired."""
    return case((_expired(now), 2), (ThemeActivity.status == "paused", 1), else_=0)


def is_view_only(theme: ThemeActivity, now: datetime | None = None) -> bool:
    return effective_status(theme, now) == "expired"


# --- the checks -----------------------------------------------------------------------------------

def _cleaned(d: ThemeDetails) -> ThemeDetails:
    rules = (d.rules or "").replace("\r\n", "\n").replace("\r", "\n").strip() or None
    return replace(d, name=(d.name or "").strip() or None, position_no=(d.position_no or "").strip() or None,
                   rules=rules, background_ref=(d.background_ref or "").strip() or None)


def _check_text(c: _Checked, name: str, limit: int, missing: str, too_long: str) -> None:
    value = getattr(c.details, name)
    if not value:
        c.fail(name, missing)
    elif len(value) > limit:
        c.fail(name, too_long)


def _check_position(c: _Checked, theme: ThemeActivity | None) -> None:
    number = c.details.position_no
    if number is None or (theme is not None and number == theme.position_no):
        return
    row = db.session.execute(select(PositionNumber).where(PositionNumber.number == number)).scalar_one_or_none()
    if row is None or row.status != "available":
        c.fail("position_no", _("Choose an available position number from the list, or leave it empty."))


def _check_parties(actor: "Operator", c: _Checked, theme: ThemeActivity | None) -> None:
    """The enrolling institution and the bank: in normal use, and the bank one the operator may act for."""
    if theme is not None:  # both are fixed once the activity exists
        c.bank = db.session.get(PartnerBank, theme.partner_bank_id) if theme.partner_bank_id else None
        return
    d = c.details
    institution = db.session.get(Institution, d.institution_id) if d.institution_id else None
    if d.institution_id is None:
        c.fail("institution_id", _("Choose the enrolling institution."))
    elif institution is None or institution.status != "normal":
        c.fail("institution_id", _("Choose an institution in normal use from the list."))
    if d.partner_bank_id is None:
        return c.fail("partner_bank_id", _("Choose the bank."))
    bank = db.session.execute(scoped(PartnerBank, actor).where(PartnerBank.id == d.partner_bank_id)).scalar_one_or_none()
    if bank is None or bank.status != "normal":
        return c.fail("partner_bank_id", _("Choose a bank in normal use from the list."))
    c.bank = bank


def issued_span(theme: ThemeActivity) -> tuple[datetime | None, datetime | None]:
    """The first and last issue times of coupons issued from the theme's coupon activities."""
    when = func.coalesce(CouponIssue.issued_at, CouponIssue.created_at)
    linked = select(CouponActivity.id).where(CouponActivity.theme_activity_id == theme.id)
    first, last = db.session.execute(select(func.min(when), func.max(when)).where(
        CouponIssue.coupon_activity_id.in_(linked), CouponIssue.status.in_(LIVE_ISSUE_STATUSES))).one()
    return first, last


def _check_window(c: _Checked, theme: ThemeActivity | None, now: datetime) -> None:
    d = c.details
    for name, message in window_problems(d.start_at, d.end_at, now,
                                         (theme.start_at, theme.end_at) if theme else None).items():
        c.fail(name, message)
    if theme is None or d.start_at is None or d.end_at is None:
        return
    first, last = issued_span(theme)
    if first is not None and d.start_at > first:
        c.fail("start_at", _("Coupons of this theme were issued from %(time)s: the start may not be later.",
                             time=format_local(first)))
    if last is not None and d.end_at <= last:
        c.fail("end_at", _("Coupons of this theme were issued until %(time)s: the end must be later.",
                           time=format_local(last)))


def _raised(new: int | None, old: int | None) -> bool:
    """Whether `new` keeps or raises `old` (None, no cap, is the highest)."""
    if old is None:
        return new is None
    return new is None or new >= old


def _limit_text(value: int | None) -> str:
    return _("no cap") if value is None else str(value)


def _check_limits(c: _Checked, theme: ThemeActivity | None) -> None:
    d = c.details
    for name in ("participation_limit", "daily_limit"):
        value = getattr(d, name)
        if value is not None and not 0 <= value <= LIMIT_MAX:
            c.fail(name, _("Enter a whole number from 0 to %(n)s, or leave it empty for no cap.", n=LIMIT_MAX))
        elif theme is not None and not _raised(value, getattr(theme, name)):
            c.fail(name, _("The limit may only be raised (it is %(now)s now).", now=_limit_text(getattr(theme, name))))
    total, daily = d.participation_limit, d.daily_limit
    if "daily_limit" not in c.errors and total is not None and daily is not None and daily > total:
        c.fail("daily_limit", _("The daily limit may not exceed the total limit (%(n)s).", n=total))


def _check_background(c: _Checked, theme: ThemeActivity | None) -> None:
    ref = c.details.background_ref
    if ref is None:
        return c.fail("background", _("Choose the background image (JPG, PNG or GIF, at most 5 MB)."))
    kept = theme is not None and ref == theme.background_image
    if not kept and not (backgrounds.is_ref(ref, pending=True) and backgrounds.exists(ref)):
        c.fail("background", _("The chosen image is no longer there. Choose it again."))


def _kept(posted: datetime | None, stored: datetime) -> datetime | None:
    """The stored time when the form posted it back unchanged (forms carry whole seconds only)."""
    if posted is not None and posted.replace(microsecond=0) == stored.replace(microsecond=0):
        return stored
    return posted


def _check(actor: "Operator", details: ThemeDetails, theme: ThemeActivity | None, now: datetime | None) -> _Checked:
    now = now or utcnow()
    details = _cleaned(details)
    if theme is not None:  # the locked fields keep their values whatever was posted
        details = replace(details, institution_id=theme.institution_id, partner_bank_id=theme.partner_bank_id,
                          start_at=_kept(details.start_at, theme.start_at), end_at=_kept(details.end_at, theme.end_at))
    c = _Checked(details=details)
    if theme is not None and is_view_only(theme, now):
        c.fail("name", _("This theme activity has expired: it can only be viewed."))
        return c
    _check_text(c, "name", NAME_MAX, _("Enter the theme's name."),
                _("The name may have at most %(n)s characters.", n=NAME_MAX))
    _check_position(c, theme)
    _check_parties(actor, c, theme)
    _check_window(c, theme, now)
    _check_text(c, "rules", RULES_MAX, _("Enter the participation rules customers will read."),
                _("The rules may have at most %(n)s characters.", n=RULES_MAX))
    _check_limits(c, theme)
    _check_background(c, theme)
    return c


def problems(actor: "Operator", details: ThemeDetails, theme: ThemeActivity | None = None,
             now: datetime | None = None) -> dict[str, str]:
    """Every rule these details break (field name → message); empty when they may be saved."""
    return _check(actor, details, theme, now).errors


# --- the generated id ------------------------------------------------------------------------------

def _taken(theme_no: str) -> bool:
    return db.session.execute(select(ThemeActivity.id).where(ThemeActivity.theme_no == theme_no)).first() is not None


def _start_counter() -> None:
    """Create the counter row (the migration does; an emptied table gets it back) above every id in use."""
    highest = db.session.execute(select(func.max(ThemeActivity.theme_no))).scalar()
    start = max(FIRST_THEME_NO, int(highest) if highest and highest.isdigit() else 0)
    try:
        with db.session.begin_nested():
            db.session.add(ThemeNumberCounter(id=1, last_no=start))
    except IntegrityError:
        pass  # another transaction created it first; the next UPDATE waits for it


def next_theme_no() -> str:
    """The next 10-digit theme activity id. The counter row stays locked until the caller's
    transaction ends, so two creations never get the same number; numbers already taken are skipped."""
    while True:
        moved = db.session.execute(update(ThemeNumberCounter).where(ThemeNumberCounter.id == 1)
                                   .values(last_no=ThemeNumberCounter.last_no + 1))
        if moved.rowcount == 0:
            _start_counter()
            continue
        number = str(db.session.execute(select(ThemeNumberCounter.last_no).where(ThemeNumberCounter.id == 1)).scalar_one())
        if len(number) != 10:
            raise RuntimeError("theme activity ids are used up")
        if not _taken(number):
            return number


# --- create and edit -------------------------------------------------------------------------------

def _snapshot(theme: ThemeActivity) -> dict[str, Any]:
    return audit.snapshot(theme, AUDITED_FIELDS)


def _adopted_background(ref: str) -> str:
    return backgrounds.adopt(ref) if backgrounds.is_ref(ref, pending=True) else ref


def create_theme(actor: "Operator", details: ThemeDetails, now: datetime | None = None) -> ThemeActivity:
    """Check and save a new theme activity with a generated id; its institution and bank are enrolled
    in its link lists. InvalidTheme when a rule is broken."""
    now = now or utcnow()
    c = _check(actor, details, None, now)
    if c.errors:
        db.session.rollback()
        raise InvalidTheme(c.errors)
    d = c.details
    image = _adopted_background(d.background_ref)
    try:
        theme = ThemeActivity(theme_no=next_theme_no(), org_id=c.bank.org_id, institution_id=d.institution_id,
                              partner_bank_id=d.partner_bank_id, background_image=image, status="active",
                              wheel_enabled=False, paused_coupon_ids=[], created_by=actor.id, updated_by=actor.id,
                              **{name: getattr(d, name) for name in EDITABLE_FIELDS})
        db.session.add(theme)
        db.session.flush()
        db.session.add_all([
            ThemeActivityInstitution(theme_activity_id=theme.id, institution_id=d.institution_id, enrolled_at=now,
                                     enrolled_by=actor.id),
            ThemeActivityBank(theme_activity_id=theme.id, partner_bank_id=d.partner_bank_id, linked_at=now,
                              linked_by=actor.id)])
        audit.record("theme_activity.create", "theme_activity", theme.id, after=_snapshot(theme), org_id=theme.org_id)
        db.session.commit()
    except Exception:
        db.session.rollback()
        backgrounds.discard(image)
        raise
    return theme


def lock_theme(theme: ThemeActivity) -> ThemeActivity:
    """Lock the row (and read it afresh) until the transaction ends: changes of one theme queue up."""
    db.session.refresh(theme, with_for_update=True)
    return theme


def update_theme(actor: "Operator", theme: ThemeActivity, details: ThemeDetails,
                 now: datetime | None = None) -> ThemeActivity:
    """Save the editable fields and a newly chosen background (the row is locked while it changes)."""
    now = now or utcnow()
    lock_theme(theme)
    c = _check(actor, details, theme, now)
    if c.errors:
        db.session.rollback()
        raise InvalidTheme(c.errors)
    before = _snapshot(theme)
    old_image, image = theme.background_image, _adopted_background(c.details.background_ref)
    for name in EDITABLE_FIELDS:
        setattr(theme, name, getattr(c.details, name))
    theme.background_image = image
    old, new = audit.changed(before, _snapshot(theme))
    if not new:
        db.session.rollback()
        return theme
    theme.updated_by = actor.id
    try:
        audit.record("theme_activity.update", "theme_activity", theme.id, before=old, after=new, org_id=theme.org_id)
        db.session.commit()
    except Exception:
        db.session.rollback()
        if image != old_image:
            backgrounds.discard(image)
        raise
    if image != old_image:
        backgrounds.discard(old_image)
    return theme


# --- the list --------------------------------------------------------------------------------------

def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def themes_matching(actor: "Operator", filters: dict[str, str], now: datetime | None = None,
                    start: datetime | None = None, end: datetime | None = None) -> Select:
    """The visible theme activities matching the list's filters.

    `start`/`end` (UTC, [start, end)) keep the activities whose own time overlaps that range.
    """
    now = now or utcnow()
    stmt = scoped(ThemeActivity, actor)
    if filters.get("theme_no"):
        stmt = stmt.where(ThemeActivity.theme_no == filters["theme_no"])
    if filters.get("name"):
        stmt = stmt.where(ThemeActivity.name.icontains(filters["name"], autoescape=True))
    if filters.get("position_no"):
        stmt = stmt.where(ThemeActivity.position_no.contains(filters["position_no"], autoescape=True))
    for name, column in (("institution_id", ThemeActivity.institution_id),
                         ("partner_bank_id", ThemeActivity.partner_bank_id)):
        if name in filters:
            stmt = stmt.where(column == (_int_or_none(filters[name]) or 0))
    if filters.get("wheel") in ("yes", "no"):
        stmt = stmt.where(ThemeActivity.wheel_enabled.is_(filters["wheel"] == "yes"))
    if filters.get("status") in STATUSES:
        stmt = stmt.where(status_condition(filters["status"], now))
    if start is not None:
        stmt = stmt.where(ThemeActivity.end_at > start)
    if end is not None:
        stmt = stmt.where(ThemeActivity.start_at < end)
    return stmt


def count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


def record_export(filters: dict[str, str], rows: int) -> None:
    """The audit event of an export: what was asked for and how many rows left the console."""
    audit.record("theme_activity.export", "theme_activity", None,
                 after={"filters": filters, "rows": rows, "format": "xlsx"})
    db.session.commit()


def _names(model: type, label, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(db.session.execute(select(model.id, label).where(model.id.in_(wanted))).all())


def institution_names(ids: Iterable[int | None]) -> dict[int, str]:
    return _names(Institution, Institution.name, ids)


def bank_names(ids: Iterable[int | None]) -> dict[int, str]:
    return _names(PartnerBank, PartnerBank.name, ids)


def visible_bank(actor: "Operator", bank_id: Any) -> PartnerBank | None:
    """The bank a filter or form names, if the operator sees it (for showing it as picked)."""
    if not str(bank_id or "").isdigit():
        return None
    return db.session.execute(scoped(PartnerBank, actor).where(PartnerBank.id == int(bank_id))).scalar()


def operator_names(ids: Iterable[int | None]) -> dict[int, str]:
    from app.auth.models import Operator

    return _names(Operator, Operator.display_name, ids)


def row_names(themes: list[ThemeActivity]) -> dict[str, dict[int, str]]:
    """The names a list of theme activities shows: institutions, banks, creators and modifiers."""
    return dict(institutions=institution_names(t.institution_id for t in themes),
                banks=bank_names(t.partner_bank_id for t in themes),
                operators=operator_names([t.created_by for t in themes] + [t.updated_by for t in themes]))


# --- one theme activity ----------------------------------------------------------------------------

@dataclass
class BatchRow:
    """A coupon activity of the theme with its counts (the view's batch data tab)."""

    activity: CouponActivity
    issued: int
    redeemed: int


def batch_data(theme: ThemeActivity) -> list[BatchRow]:
    """The theme's coupon activities: batch no., face value, coupons issued and redeemed."""
    issued = func.count(CouponIssue.id).filter(CouponIssue.status == "succeeded")
    redeemed = func.count(CouponIssue.id).filter(CouponIssue.redemption_status == "used")
    counts = dict((row[0], (row[1], row[2])) for row in db.session.execute(
        select(CouponIssue.coupon_activity_id, issued, redeemed)
        .join(CouponActivity, CouponActivity.id == CouponIssue.coupon_activity_id)
        .where(CouponActivity.theme_activity_id == theme.id).group_by(CouponIssue.coupon_activity_id)))
    activities = db.session.execute(select(CouponActivity).where(CouponActivity.theme_activity_id == theme.id)
                                    .order_by(CouponActivity.created_at, CouponActivity.id)).scalars()
    return [BatchRow(a, *counts.get(a.id, (0, 0))) for a in activities]


def history(theme: ThemeActivity, limit: int = 50) -> list[audit.AuditEvent]:
    """The theme activity's audit events, newest first."""
    return list(db.session.execute(select(audit.AuditEvent).where(
        audit.AuditEvent.object_type == "theme_activity", audit.AuditEvent.object_id == str(theme.id))
        .order_by(audit.AuditEvent.id.desc()).limit(limit)).scalars())
