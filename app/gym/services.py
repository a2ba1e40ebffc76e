"""The gym's grants and their reversal: cards, coaching lessons, class seats and class credits.

Every grant is made under a caller's `source_ref` (a voucher verification id, a front-desk sale
number): granting the same reference again returns what was granted the first time and grants
nothing more (`gym_grants.source_ref` is unique, and card operations and lesson entries carry
their own (source_ref, kind) keys); `reverse_grant` undoes exactly what that reference granted,
once. Services never touch `request`: the operator is an argument, and each change writes an
audit event as that operator.

Date rules (business dates in Asia/Shanghai):
- A card is valid from `starts_on` through `ends_on` inclusive; a new card starts today and ends
  today + its duration (days, months or years; a month added to the 31st ends on the last day of
  a shorter month: 31 Jan + 1 month = 28 or 29 Feb). A visits card is valid one year.
- A renewal extends the member's current card of the same kind (time card or visits card): from
  its end date while it is still valid, from today once it has lapsed. A visits card renewal
  adds the visits (what was left is kept) and is valid at least one year from today.

Concurrency: grants for one member are serialised by a row lock on the member; a seat is taken by
a conditional UPDATE (seats_taken < capacity) and the database also checks seats_taken <= capacity;
lesson balances change only with a version check.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.auth.models import Operator
from app.core import audit
from app.core.tenancy import can_see_org
from app.core.timeutil import as_utc, business_today, format_local, utcnow
from app.extensions import db
from app.gym.models import (CARD_SOURCES, CardEvent, ClassBooking, ClassCredit, ClassSession, GymGrant, LessonBalance,
                            LessonEntry, MembershipCard)
from app.members.models import Member, Product
from app.orgs.models import Organisation

SOURCE_REF_MAX = 100
VERSION_RETRIES = 3


class GymError(ValueError):
    """A grant or reversal the rules refuse; the message is for the person at the desk."""


class GrantConflict(GymError):
    """The reference was already used for a different member or product, or was reversed."""


class ClassFull(GymError):
    pass


class AlreadyBooked(GymError):
    pass


class GrantNotFound(GymError):
    pass


class ReversalRefused(GymError):
    """The grant cannot be undone as it stands (e.g. its lessons were used); nothing was changed."""


@dataclass(frozen=True)
class Granted:
    """What a `source_ref` granted. `result_type` / `result_id` name the record it made or changed
    (card, lesson_balance, booking, class_credit); `replayed` is True when an earlier call did it."""

    source_ref: str
    kind: str
    summary: str
    result_type: str
    result_id: int
    replayed: bool = False


@dataclass(frozen=True)
class Reversed:
    """What a reversal undid; `already` is True when an earlier call had undone it."""

    source_ref: str
    kind: str
    summary: str
    already: bool = False


@dataclass
class GymRecords:
    """A member's gym records, as the member page shows them."""

    today: date
    cards: list[MembershipCard] = field(default_factory=list)
    lessons: list[LessonBalance] = field(default_factory=list)
    bookings: list[ClassBooking] = field(default_factory=list)
    credits: list[ClassCredit] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.cards or self.lessons or self.bookings or self.credits)


# --- dates ------------------------------------------------------------------------------------

def add_months(day: date, months: int) -> date:
    """`day` plus whole months, clamped to the end of a shorter month (31 Jan + 1 = 28/29 Feb)."""
    year, month0 = divmod(day.month - 1 + months, 12)
    year += day.year
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def add_duration(day: date, value: int, unit: str) -> date:
    if unit == "day":
        return day + timedelta(days=value)
    if unit == "month":
        return add_months(day, value)
    if unit == "year":
        return add_months(day, 12 * value)
    raise GymError(_("Unknown duration unit."))


# --- shared helpers ---------------------------------------------------------------------------

_RESULT_TYPES = {"card_open": "card", "card_renew": "card", "lessons": "lesson_balance",
                 "booking": "booking", "class_credit": "class_credit"}


def _granted(grant: GymGrant, replayed: bool = False) -> Granted:
    result_id = {"card": grant.card_id, "lesson_balance": grant.lesson_balance_id,
                 "booking": grant.booking_id, "class_credit": grant.class_credit_id}[_RESULT_TYPES[grant.kind]]
    return Granted(grant.source_ref, grant.kind, grant.summary, _RESULT_TYPES[grant.kind], result_id, replayed)


def _clean_ref(source_ref: str | None) -> str:
    ref = (source_ref or "").strip()
    if not ref:
        raise GymError(_("A grant needs a reference (e.g. the voucher verification)."))
    if len(ref) > SOURCE_REF_MAX:
        raise GymError(_("The reference may have at most %(n)s characters.", n=SOURCE_REF_MAX))
    return ref


def _serves(org_id: int, member: Member) -> bool:
    """Whether an organisation's products and classes serve a member: its own, or those of an
    organisation above it (a merchant's card types and classes serve the members of its stores)."""
    member_org = db.session.get(Organisation, member.org_id)
    return member_org is not None and org_id in member_org.ancestor_ids()


def _check_pair(member: Member, product: Product, kind: str) -> None:
    if not _serves(product.org_id, member):
        raise GymError(_("The member and the product belong to different organisations."))
    if product.kind != kind:
        raise GymError(_("This product is not of the right kind for this grant."))


def _operator(operator_id: int | None, org_id: int) -> Operator | None:
    """The acting operator, who must see the organisation of the records; None for the system."""
    if operator_id is None:
        return None
    operator = db.session.get(Operator, operator_id)
    org = db.session.get(Organisation, org_id)
    if operator is None or org is None or not can_see_org(operator, org):
        raise GymError(_("This operator may not act for this organisation."))
    return operator


def _record(action: str, object_type: str, object_id, operator: Operator | None, org_id: int, *,
            before: dict | None = None, after: dict | None = None) -> None:
    """An audit event as `operator` (the caller's actor when it is already that operator, or none is given)."""
    actor = audit.current_actor()
    if operator is None or actor.operator_id == operator.id:
        audit.record(action, object_type, object_id, before=before, after=after, org_id=org_id)
        return
    with audit.acting_as(audit.Actor(operator.id, operator.username, operator.org_id, actor.ip)):
        audit.record(action, object_type, object_id, before=before, after=after, org_id=org_id)


def _lock_member(member_id: int) -> None:
    db.session.execute(select(Member.id).where(Member.id == member_id).with_for_update())


def _find_grant(source_ref: str, lock: bool = False) -> GymGrant | None:
    stmt = select(GymGrant).where(GymGrant.source_ref == source_ref).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    return db.session.execute(stmt).scalar_one_or_none()


def _replay(source_ref: str, member_id: int, product_id: int) -> Granted | None:
    grant = _find_grant(source_ref)
    if grant is None:
        return None
    if grant.member_id != member_id or grant.product_id != product_id:
        raise GrantConflict(_("This reference has already been used for another grant."))
    if grant.status == "reversed":
        raise GrantConflict(_("This reference was granted and then reversed; it cannot be granted again."))
    return _granted(grant, replayed=True)


# Unique keys whose violation means a concurrent call with the same reference got there first.
_SAME_REF_KEYS = ("uq_gym_grants_source_ref", "uq_card_events_source_ref_kind", "uq_lesson_entries_source_ref_kind")


def _granting(member: Member, product: Product, kind: str, source_ref: str | None, operator_id: int | None,
              work: Callable[[Operator | None, str], GymGrant]) -> Granted:
    """Run `work` (which makes the grant and its records, unflushed grant returned) in one
    transaction, under the member's row lock, once per `source_ref`."""
    ref = _clean_ref(source_ref)
    _check_pair(member, product, kind)
    member_id, product_id, org_id = member.id, product.id, member.org_id
    try:
        operator = _operator(operator_id, org_id)
        _lock_member(member_id)
        replay = _replay(ref, member_id, product_id)  # read after the lock: sees a grant just committed
        if replay is not None:
            db.session.rollback()
            return replay
        grant = work(operator, ref)
        db.session.add(grant)
        db.session.flush()
        result = _granted(grant)
        db.session.commit()
        return result
    except IntegrityError as exc:
        db.session.rollback()
        message = str(exc.orig)
        if any(key in message for key in _SAME_REF_KEYS):
            replay = _replay(ref, member_id, product_id)
            if replay is not None:
                return replay
        if "uq_class_bookings_live" in message:
            raise AlreadyBooked(_("This member has already booked this class.")) from exc
        raise
    except BaseException:
        db.session.rollback()
        raise


def _new_grant(kind: str, ref: str, member: Member, product: Product, quantity: int, operator: Operator | None,
               summary: str, **links) -> GymGrant:
    return GymGrant(org_id=member.org_id, source_ref=ref, kind=kind, status="granted", member_id=member.id,
                    product_id=product.id, quantity=quantity, summary=summary[:300],
                    operator_id=operator.id if operator else None, created_at=utcnow(), **links)


def _positive(value: int, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GymError(message)
    return value


# --- membership cards -------------------------------------------------------------------------

CARD_AUDITED_FIELDS = ("card_no", "member_id", "product_id", "status", "starts_on", "ends_on", "visits_total",
                       "visits_left", "source", "source_ref", "price_fen", "operator_id")


def _card_terms(product: Product, quantity: int) -> tuple[int | None, tuple[int, str] | None]:
    """(visits, None) for a visits card, (None, (value, unit)) for a time card; times `quantity`."""
    attrs = product.attributes or {}
    if attrs.get("visits"):
        return int(attrs["visits"]) * quantity, None
    value, unit = attrs.get("duration_value"), attrs.get("duration_unit")
    if not value or unit not in ("day", "month", "year"):
        raise GymError(_("This card type has neither a period of validity nor a number of visits."))
    return None, (int(value) * quantity, unit)


def _current_card(member_id: int, visits_card: bool) -> MembershipCard | None:
    """The member's card of this kind that a renewal extends: the one ending last, not closed."""
    kind = MembershipCard.visits_total.is_not(None) if visits_card else MembershipCard.visits_total.is_(None)
    return db.session.execute(
        select(MembershipCard).where(MembershipCard.member_id == member_id, MembershipCard.status != "closed", kind)
        .order_by(MembershipCard.ends_on.desc(), MembershipCard.id.desc()).limit(1)
        .with_for_update().execution_options(populate_existing=True)
    ).scalars().first()


def open_or_renew_card(member: Member, product: Product, source: str, source_ref: str, operator_id: int | None,
                       today: date | None = None, *, quantity: int = 1, price_fen: int | None = None) -> Granted:
    """Open a card of `product` for the member, or renew their current card of the same kind.

    `quantity` multiplies the card type's duration (or visits); `price_fen` is what was paid
    (the product's price times the quantity when not given).
    """
    if source not in CARD_SOURCES:
        raise GymError(_("Unknown card source."))
    quantity = _positive(quantity, _("The quantity must be a whole number of at least 1."))
    day = today or business_today()
    paid = product.price_fen * quantity if price_fen is None else price_fen
    if paid < 0:
        raise GymError(_("The price cannot be negative."))

    def work(operator: Operator | None, ref: str) -> GymGrant:
        visits, duration = _card_terms(product, quantity)
        operator_ref = operator.id if operator else None
        card = _current_card(member.id, visits is not None)
        if card is None:
            ends_on = add_duration(day, 1, "year") if visits is not None else add_duration(day, *duration)
            card = MembershipCard(org_id=member.org_id, member_id=member.id, product_id=product.id, status="active",
                                  starts_on=day, ends_on=ends_on, visits_total=visits, visits_left=visits,
                                  source=source, source_ref=ref, price_fen=paid, operator_id=operator_ref)
            db.session.add(card)
            db.session.flush()
            event = CardEvent(org_id=card.org_id, card_id=card.id, kind="open", old_ends_on=None, new_ends_on=ends_on,
                              old_visits_left=None, new_visits_left=visits, source_ref=ref, operator_id=operator_ref)
            db.session.add(event)
            db.session.flush()
            _record("gym.card_open", "membership_card", card.id, operator, card.org_id,
                    after=audit.snapshot(card, CARD_AUDITED_FIELDS))
            if visits is not None:
                summary = _("Opened card %(card_no)s (%(product)s): %(visits)s visits, valid %(starts)s to %(ends)s.",
                            card_no=card.card_no, product=product.name, visits=visits, starts=day, ends=ends_on)
            else:
                summary = _("Opened card %(card_no)s (%(product)s): valid %(starts)s to %(ends)s.",
                            card_no=card.card_no, product=product.name, starts=day, ends=ends_on)
            return _new_grant("card_open", ref, member, product, quantity, operator, summary, price_fen=paid,
                              card_id=card.id, card_event_id=event.id)

        before = audit.snapshot(card, CARD_AUDITED_FIELDS)
        old_ends, old_visits = card.ends_on, card.visits_left
        if visits is not None:
            base = day
            card.ends_on = max(card.ends_on, add_duration(day, 1, "year"))
            card.visits_total += visits
            card.visits_left += visits
        else:
            base = card.ends_on if card.ends_on >= day else day  # lapsed: from today
            card.ends_on = add_duration(base, *duration)
        card.status = "active"
        event = CardEvent(org_id=card.org_id, card_id=card.id, kind="renew", old_ends_on=old_ends,
                          new_ends_on=card.ends_on, extended_from=base, old_visits_left=old_visits,
                          new_visits_left=card.visits_left, source_ref=ref, operator_id=operator_ref)
        db.session.add(event)
        db.session.flush()
        old, new = audit.changed(before, audit.snapshot(card, CARD_AUDITED_FIELDS))
        new["source_ref"] = ref
        _record("gym.card_renew", "membership_card", card.id, operator, card.org_id, before=old, after=new)
        if visits is not None:
            summary = _("Added %(visits)s visits to card %(card_no)s: %(left)s visits left, valid until %(ends)s.",
                        visits=visits, card_no=card.card_no, left=card.visits_left, ends=card.ends_on)
        else:
            summary = _("Renewed card %(card_no)s (%(product)s): valid until %(old)s, now until %(new)s.",
                        card_no=card.card_no, product=product.name, old=old_ends, new=card.ends_on)
        return _new_grant("card_renew", ref, member, product, quantity, operator, summary, price_fen=paid,
                          card_id=card.id, card_event_id=event.id)

    return _granting(member, product, "membership_card", source_ref, operator_id, work)


def _lock_card(card_id: int) -> MembershipCard:
    return db.session.execute(
        select(MembershipCard).where(MembershipCard.id == card_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _reverse_card(grant: GymGrant, operator: Operator | None) -> str:
    card = _lock_card(grant.card_id)
    event = db.session.get(CardEvent, grant.card_event_id)
    operator_ref = operator.id if operator else None
    before = audit.snapshot(card, CARD_AUDITED_FIELDS)
    old_ends, old_visits = card.ends_on, card.visits_left

    if grant.kind == "card_open":
        renewals = db.session.execute(
            select(GymGrant.source_ref).where(GymGrant.card_id == card.id, GymGrant.kind == "card_renew",
                                              GymGrant.status == "granted")
        ).scalars().all()
        if renewals:
            raise ReversalRefused(_("Card %(card_no)s was renewed after it was opened (%(refs)s); reverse the "
                                    "renewals first. Nothing was changed.", card_no=card.card_no,
                                    refs=", ".join(renewals)))
        if card.visits_total is not None and card.visits_left < card.visits_total:
            raise ReversalRefused(_("Card %(card_no)s has already used %(used)s of its %(total)s visits, so it was "
                                    "not closed. Nothing was changed.", card_no=card.card_no,
                                    used=card.visits_total - card.visits_left, total=card.visits_total))
        card.status = "closed"
        kind, action = "close", "gym.card_close"
        summary = _("Closed card %(card_no)s, which this grant had opened.", card_no=card.card_no)
    else:
        if card.visits_total is not None:
            granted = (event.new_visits_left or 0) - (event.old_visits_left or 0)
            if card.visits_left < granted:
                raise ReversalRefused(_("Card %(card_no)s has only %(left)s visits left of the %(granted)s this grant "
                                        "added; the others have been used. Nothing was changed.",
                                        card_no=card.card_no, left=card.visits_left, granted=granted))
            card.visits_left -= granted
            card.visits_total -= granted
            if card.ends_on == event.new_ends_on:
                card.ends_on = event.old_ends_on
            summary = _("Took %(visits)s visits back from card %(card_no)s: %(left)s left, valid until %(ends)s.",
                        visits=granted, card_no=card.card_no, left=card.visits_left, ends=card.ends_on)
        else:
            if card.ends_on == event.new_ends_on:
                card.ends_on = event.old_ends_on  # nothing changed it since: back to exactly where it was
            else:  # later renewals stacked on top: take off only the days this one added
                card.ends_on = card.ends_on - (event.new_ends_on - event.extended_from)
            card.ends_on = max(card.ends_on, card.starts_on)
            summary = _("Shortened card %(card_no)s from %(old)s back to %(new)s.",
                        card_no=card.card_no, old=old_ends, new=card.ends_on)
        kind, action = "shorten", "gym.card_shorten"
    db.session.add(CardEvent(org_id=card.org_id, card_id=card.id, kind=kind, old_ends_on=old_ends,
                             new_ends_on=card.ends_on, old_visits_left=old_visits, new_visits_left=card.visits_left,
                             source_ref=grant.source_ref, operator_id=operator_ref))
    db.session.flush()
    old, new = audit.changed(before, audit.snapshot(card, CARD_AUDITED_FIELDS))
    new["reversed_ref"] = grant.source_ref
    _record(action, "membership_card", card.id, operator, card.org_id, before=old, after=new)
    return summary


# --- coaching lessons -------------------------------------------------------------------------

def _course_name(product: Product) -> str:
    name = ((product.attributes or {}).get("course_name") or "").strip()
    return name or product.name[:50]


def _balance_for(member: Member, course: str, product: Product) -> LessonBalance:
    """The member's balance of this course, created (empty) if they have none yet."""
    stmt = select(LessonBalance).where(LessonBalance.org_id == member.org_id, LessonBalance.member_id == member.id,
                                       LessonBalance.course_name == course)
    balance = db.session.execute(stmt).scalar_one_or_none()
    if balance is None:
        try:
            with db.session.begin_nested():
                balance = LessonBalance(org_id=member.org_id, member_id=member.id, course_name=course,
                                        product_id=product.id, lessons_total=0, lessons_left=0, version=1)
                db.session.add(balance)
        except IntegrityError:
            balance = db.session.execute(stmt).scalar_one()
    return balance


def _move_lessons(balance: LessonBalance, delta: int) -> LessonBalance:
    """Add `delta` (negative to take back) with a version check, retried on a concurrent change;
    a take-back refuses to leave fewer than zero lessons."""
    for _attempt in range(VERSION_RETRIES):
        current = db.session.execute(
            select(LessonBalance.version, LessonBalance.lessons_left).where(LessonBalance.id == balance.id)
        ).one()
        if current.lessons_left + delta < 0:
            raise ReversalRefused(_("Only %(left)s of the %(n)s lessons of %(course)s are left; the others have "
                                    "been used, so nothing was taken back.", left=current.lessons_left,
                                    n=-delta, course=balance.course_name))
        result = db.session.execute(
            update(LessonBalance)
            .where(LessonBalance.id == balance.id, LessonBalance.version == current.version)
            .values(lessons_left=LessonBalance.lessons_left + delta, lessons_total=LessonBalance.lessons_total + delta,
                    version=LessonBalance.version + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            db.session.refresh(balance)
            return balance
    raise GymError(_("The lesson balance is being changed by someone else; try again."))


def credit_lessons(member: Member, product: Product, lessons: int, source_ref: str, operator_id: int | None,
                   *, price_fen: int | None = None) -> Granted:
    """Credit `lessons` coaching lessons of the product's course to the member, once per `source_ref`."""
    lessons = _positive(lessons, _("The number of lessons must be a whole number of at least 1."))

    def work(operator: Operator | None, ref: str) -> GymGrant:
        course = _course_name(product)
        balance = _balance_for(member, course, product)
        before = {"lessons_left": balance.lessons_left, "lessons_total": balance.lessons_total}
        _move_lessons(balance, lessons)
        db.session.add(LessonEntry(org_id=member.org_id, balance_id=balance.id, delta=lessons, kind="credit",
                                   reason=product.name[:200], source_ref=ref,
                                   operator_id=operator.id if operator else None))
        db.session.flush()
        _record("gym.lessons_credit", "lesson_balance", balance.id, operator, member.org_id, before=before,
                after={"lessons_left": balance.lessons_left, "lessons_total": balance.lessons_total,
                       "course_name": course, "member_id": member.id, "source_ref": ref})
        summary = _("Credited %(n)s lessons of %(course)s: %(left)s left.", n=lessons, course=course,
                    left=balance.lessons_left)
        return _new_grant("lessons", ref, member, product, lessons, operator, summary,
                          price_fen=price_fen, lesson_balance_id=balance.id)

    return _granting(member, product, "coaching_package", source_ref, operator_id, work)


def reverse_lessons(source_ref: str, operator_id: int | None) -> Reversed:
    """The reversal of `credit_lessons` (refused when the lessons have been used)."""
    grant = _find_grant(_clean_ref(source_ref))
    if grant is not None and grant.kind != "lessons":
        raise GymError(_("This reference did not credit lessons."))
    return reverse_grant(source_ref, operator_id)


def _reverse_lessons(grant: GymGrant, operator: Operator | None) -> str:
    balance = db.session.get(LessonBalance, grant.lesson_balance_id)
    before = {"lessons_left": balance.lessons_left, "lessons_total": balance.lessons_total}
    _move_lessons(balance, -grant.quantity)
    db.session.add(LessonEntry(org_id=grant.org_id, balance_id=balance.id, delta=-grant.quantity, kind="reversal",
                               reason=_("Reversal of %(ref)s", ref=grant.source_ref)[:200],
                               source_ref=grant.source_ref, operator_id=operator.id if operator else None))
    db.session.flush()
    _record("gym.lessons_reverse", "lesson_balance", balance.id, operator, grant.org_id, before=before,
            after={"lessons_left": balance.lessons_left, "lessons_total": balance.lessons_total,
                   "reversed_ref": grant.source_ref})
    return _("Took back %(n)s lessons of %(course)s: %(left)s left.", n=grant.quantity, course=balance.course_name,
             left=balance.lessons_left)


# --- group classes ----------------------------------------------------------------------------

def create_class_session(product: Product, starts_at: datetime, operator_id: int | None, *,
                         capacity: int | None = None, ends_at: datetime | None = None) -> ClassSession:
    """Schedule a session of a group_class product (capacity and length default to the product's)."""
    if product.kind != "group_class":
        raise GymError(_("Only a group class can be scheduled."))
    attrs = product.attributes or {}
    capacity = _positive(capacity if capacity is not None else attrs.get("capacity"),
                         _("The capacity must be a whole number of at least 1."))
    if starts_at.tzinfo is None:
        raise GymError(_("The start time needs a time zone."))
    ends_at = ends_at or starts_at + timedelta(minutes=int(attrs.get("duration_minutes") or 60))
    if ends_at <= starts_at:
        raise GymError(_("The class must end after it starts."))
    operator = _operator(operator_id, product.org_id)
    session = ClassSession(org_id=product.org_id, product_id=product.id, course_name=_course_name(product),
                           starts_at=starts_at, ends_at=ends_at, capacity=capacity, seats_taken=0, status="scheduled")
    try:
        db.session.add(session)
        db.session.flush()
        _record("gym.session_create", "class_session", session.id, operator, product.org_id,
                after=audit.snapshot(session, ("product_id", "course_name", "starts_at", "ends_at", "capacity")))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return session


def book_class(member: Member, product: Product, session_id: int | None, source_ref: str, operator_id: int | None,
               *, quantity: int = 1, price_fen: int | None = None) -> Granted:
    """Book the member a seat in a session of the product (refused when full or already booked);
    with no session chosen, leave `quantity` class credits for the product's course instead."""
    quantity = _positive(quantity, _("The quantity must be a whole number of at least 1."))
    if session_id is None:
        return _add_class_credit(member, product, quantity, source_ref, operator_id, price_fen)
    if quantity != 1:
        raise GymError(_("A booking takes one seat; redeem further classes as credits."))

    def work(operator: Operator | None, ref: str) -> GymGrant:
        session = db.session.get(ClassSession, session_id, populate_existing=True)
        if session is None or not _serves(session.org_id, member) or session.product_id != product.id:
            raise GymError(_("No such class session of this product."))
        if session.status != "scheduled":
            raise GymError(_("This class session has been cancelled."))
        if as_utc(session.starts_at) <= utcnow():
            raise GymError(_("This class session has already started."))
        live = db.session.execute(
            select(ClassBooking.id).where(ClassBooking.session_id == session.id, ClassBooking.member_id == member.id,
                                          ClassBooking.status == "booked")
        ).first()
        if live is not None:
            raise AlreadyBooked(_("This member has already booked this class."))
        taken = db.session.execute(
            update(ClassSession)
            .where(ClassSession.id == session.id, ClassSession.status == "scheduled",
                   ClassSession.seats_taken < ClassSession.capacity)
            .values(seats_taken=ClassSession.seats_taken + 1, updated_at=utcnow())
            .returning(ClassSession.seats_taken)
        ).scalar_one_or_none()
        if taken is None:
            raise ClassFull(_("This class is full."))
        booking = ClassBooking(org_id=member.org_id, session_id=session.id, member_id=member.id, status="booked",
                               source_ref=ref, operator_id=operator.id if operator else None)
        db.session.add(booking)
        db.session.flush()
        _record("gym.class_book", "class_booking", booking.id, operator, member.org_id,
                after={"session_id": session.id, "member_id": member.id, "seats_taken": taken, "source_ref": ref})
        summary = _("Booked %(course)s on %(when)s: seat %(taken)s of %(capacity)s.", course=session.course_name,
                    when=format_local(session.starts_at, "%Y-%m-%d %H:%M"), taken=taken, capacity=session.capacity)
        return _new_grant("booking", ref, member, product, 1, operator, summary, price_fen=price_fen,
                          booking_id=booking.id)

    return _granting(member, product, "group_class", source_ref, operator_id, work)


def _credit_for(member: Member, course: str, product: Product) -> ClassCredit:
    stmt = select(ClassCredit).where(ClassCredit.org_id == member.org_id, ClassCredit.member_id == member.id,
                                     ClassCredit.course_name == course)
    credit = db.session.execute(stmt).scalar_one_or_none()
    if credit is None:
        try:
            with db.session.begin_nested():
                credit = ClassCredit(org_id=member.org_id, member_id=member.id, course_name=course,
                                     product_id=product.id, credits_left=0)
                db.session.add(credit)
        except IntegrityError:
            credit = db.session.execute(stmt).scalar_one()
    return credit


def _add_class_credit(member: Member, product: Product, quantity: int, source_ref: str, operator_id: int | None,
                      price_fen: int | None) -> Granted:
    def work(operator: Operator | None, ref: str) -> GymGrant:
        credit = _credit_for(member, _course_name(product), product)
        before = credit.credits_left
        db.session.execute(update(ClassCredit).where(ClassCredit.id == credit.id)
                           .values(credits_left=ClassCredit.credits_left + quantity, updated_at=utcnow())
                           .execution_options(synchronize_session=False))
        db.session.refresh(credit)
        _record("gym.class_credit", "class_credit", credit.id, operator, member.org_id,
                before={"credits_left": before},
                after={"credits_left": credit.credits_left, "course_name": credit.course_name, "source_ref": ref})
        summary = _("Added %(n)s class credits for %(course)s: %(left)s left.", n=quantity,
                    course=credit.course_name, left=credit.credits_left)
        return _new_grant("class_credit", ref, member, product, quantity, operator, summary, price_fen=price_fen,
                          class_credit_id=credit.id)

    return _granting(member, product, "group_class", source_ref, operator_id, work)


def _reverse_booking(grant: GymGrant, operator: Operator | None) -> str:
    booking = db.session.execute(
        select(ClassBooking).where(ClassBooking.id == grant.booking_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    session = db.session.get(ClassSession, booking.session_id)
    when = format_local(session.starts_at, "%Y-%m-%d %H:%M")
    if booking.status != "booked":
        return _("The booking of %(course)s on %(when)s had already been cancelled.", course=session.course_name,
                 when=when)
    booking.status, booking.cancelled_at = "cancelled", utcnow()
    seats = db.session.execute(
        update(ClassSession).where(ClassSession.id == session.id, ClassSession.seats_taken > 0)
        .values(seats_taken=ClassSession.seats_taken - 1, updated_at=utcnow())
        .returning(ClassSession.seats_taken)
    ).scalar_one()
    db.session.flush()
    _record("gym.class_cancel", "class_booking", booking.id, operator, grant.org_id,
            before={"status": "booked"}, after={"status": "cancelled", "seats_taken": seats,
                                                "reversed_ref": grant.source_ref})
    return _("Cancelled the booking of %(course)s on %(when)s and released the seat.", course=session.course_name,
             when=when)


def _reverse_class_credit(grant: GymGrant, operator: Operator | None) -> str:
    credit = db.session.get(ClassCredit, grant.class_credit_id)
    left = db.session.execute(
        update(ClassCredit).where(ClassCredit.id == credit.id, ClassCredit.credits_left >= grant.quantity)
        .values(credits_left=ClassCredit.credits_left - grant.quantity, updated_at=utcnow())
        .returning(ClassCredit.credits_left).execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if left is None:
        db.session.refresh(credit)
        raise ReversalRefused(_("Only %(left)s of the %(n)s class credits for %(course)s are left; the others have "
                                "been used, so nothing was taken back.", left=credit.credits_left, n=grant.quantity,
                                course=credit.course_name))
    db.session.refresh(credit)
    _record("gym.class_credit_reverse", "class_credit", credit.id, operator, grant.org_id,
            before={"credits_left": left + grant.quantity},
            after={"credits_left": left, "reversed_ref": grant.source_ref})
    return _("Took back %(n)s class credits for %(course)s: %(left)s left.", n=grant.quantity,
             course=credit.course_name, left=left)


# --- reversal and the voucher flow's entry points ---------------------------------------------

_REVERSERS: dict[str, Callable[[GymGrant, Operator | None], str]] = {
    "card_open": _reverse_card, "card_renew": _reverse_card, "lessons": _reverse_lessons,
    "booking": _reverse_booking, "class_credit": _reverse_class_credit,
}


def reverse_grant(source_ref: str, operator_id: int | None) -> Reversed:
    """Undo exactly what `source_ref` granted, once; a second call answers what the first did.

    Raises GrantNotFound when nothing was granted under the reference (or the operator may not
    see it), ReversalRefused (nothing changed) when what was granted has since been used.
    """
    ref = _clean_ref(source_ref)
    try:
        grant = _find_grant(ref, lock=True)
        if grant is None:
            raise GrantNotFound(_("Nothing was granted under this reference."))
        try:
            operator = _operator(operator_id, grant.org_id)
        except GymError:
            raise GrantNotFound(_("Nothing was granted under this reference.")) from None
        if grant.status == "reversed":
            result = Reversed(ref, grant.kind, grant.reversal_summary or "", already=True)
            db.session.rollback()
            return result
        summary = _REVERSERS[grant.kind](grant, operator)
        grant.status, grant.reversed_at = "reversed", utcnow()
        grant.reversed_by, grant.reversal_summary = (operator.id if operator else None), summary[:300]
        db.session.flush()
        result = Reversed(ref, grant.kind, summary)
        db.session.commit()
        return result
    except BaseException:
        db.session.rollback()
        raise


def fulfil(member: Member, product: Product, quantity: int, source_ref: str, operator_id: int | None,
           session_id: int | None = None, *, source: str = "front_desk", price_fen: int | None = None,
           today: date | None = None) -> Granted:
    """Grant what `quantity` units of `product` give the member, by the product's kind:
    a card opened or renewed, the package's lessons credited, a class seat booked (or class
    credits when no session is chosen). Idempotent on `source_ref`."""
    quantity = _positive(quantity, _("The quantity must be a whole number of at least 1."))
    if product.kind == "membership_card":
        return open_or_renew_card(member, product, source, source_ref, operator_id, today, quantity=quantity,
                                  price_fen=price_fen)
    if product.kind == "coaching_package":
        lessons = int((product.attributes or {}).get("lessons") or 0)
        if lessons < 1:
            raise GymError(_("This coaching package has no number of lessons."))
        return credit_lessons(member, product, lessons * quantity, source_ref, operator_id, price_fen=price_fen)
    if product.kind == "group_class":
        return book_class(member, product, session_id, source_ref, operator_id, quantity=quantity,
                          price_fen=price_fen)
    raise GymError(_("Products of this kind are not fulfilled by the gym."))


def reverse(source_ref: str, operator_id: int | None) -> Reversed:
    """The voucher flow's undo: see `reverse_grant`."""
    return reverse_grant(source_ref, operator_id)


# --- queries ----------------------------------------------------------------------------------

def member_gym_records(member: Member, today: date | None = None, bookings_limit: int = 50) -> GymRecords:
    """The member's cards (latest end first), lesson balances, bookings (latest session first) and credits."""
    cards = db.session.execute(
        select(MembershipCard).where(MembershipCard.org_id == member.org_id, MembershipCard.member_id == member.id)
        .options(selectinload(MembershipCard.product)).order_by(MembershipCard.ends_on.desc(), MembershipCard.id.desc())
    ).scalars().all()
    lessons = db.session.execute(
        select(LessonBalance).where(LessonBalance.org_id == member.org_id, LessonBalance.member_id == member.id)
        .order_by(LessonBalance.course_name)
    ).scalars().all()
    bookings = db.session.execute(
        select(ClassBooking).join(ClassSession, ClassSession.id == ClassBooking.session_id)
        .where(ClassBooking.org_id == member.org_id, ClassBooking.member_id == member.id)
        .options(selectinload(ClassBooking.session))
        .order_by(ClassSession.starts_at.desc(), ClassBooking.id.desc()).limit(bookings_limit)
    ).scalars().all()
    credits = db.session.execute(
        select(ClassCredit).where(ClassCredit.org_id == member.org_id, ClassCredit.member_id == member.id)
        .order_by(ClassCredit.course_name)
    ).scalars().all()
    return GymRecords(today=today or business_today(), cards=list(cards), lessons=list(lessons),
                      bookings=list(bookings), credits=list(credits))
