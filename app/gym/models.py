"""Tables of the gym: cards and their operation log, lesson balances and their ledger, class
sessions, bookings and credits, and the grants that tie each of them to a caller's reference.

Invariants the database itself holds (so no code path, and no race, can break them):
- a `source_ref` is granted at most once (`uq_gym_grants_source_ref`), a card operation and a
  lesson ledger entry at most once per (source_ref, kind);
- seats taken never exceed a session's capacity nor go below zero, balances never go below zero;
- a member holds at most one live booking per session: a partial unique index over the rows
  whose status is 'booked' (not a key with a nullable column, whose NULLs would be distinct).
"""
from __future__ import annotations

from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import audit
from app.core.models import TenantOwned, Timestamped, public_code
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import Member, Product

CARD_STATUSES = ("active", "expired", "closed")
CARD_SOURCES = ("front_desk", "meituan", "douyin", "mini_program", "other")
CARD_EVENT_KINDS = ("open", "renew", "shorten", "close", "reopen")
LESSON_ENTRY_KINDS = ("credit", "reversal")
SESSION_STATUSES = ("scheduled", "cancelled")
BOOKING_STATUSES = ("booked", "cancelled")
GRANT_KINDS = ("card_open", "card_renew", "lessons", "booking", "class_credit")
GRANT_STATUSES = ("granted", "reversed")

audit.ACTION_LABELS.update({
    "gym.card_open": _l("Opened a membership card"),
    "gym.card_renew": _l("Renewed a membership card"),
    "gym.card_shorten": _l("Shortened a membership card"),
    "gym.card_close": _l("Closed a membership card"),
    "gym.lessons_credit": _l("Credited coaching lessons"),
    "gym.lessons_reverse": _l("Removed credited coaching lessons"),
    "gym.session_create": _l("Scheduled a class session"),
    "gym.class_book": _l("Booked a class"),
    "gym.class_cancel": _l("Cancelled a class booking"),
    "gym.class_credit": _l("Added a class credit"),
    "gym.class_credit_reverse": _l("Removed a class credit"),
})


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _card_no() -> str:
    return public_code("C", 11)


class MembershipCard(TenantOwned, Timestamped, db.Model):
    """A member's card; its type is a Product of kind membership_card. Valid through `ends_on`
    (inclusive, a Shanghai date); a visits card also needs visits left."""

    __tablename__ = "membership_cards"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(CARD_STATUSES)})", name="status"),
        CheckConstraint(f"source IN ({_in(CARD_SOURCES)})", name="source"),
        CheckConstraint("ends_on >= starts_on", name="dates_in_order"),
        CheckConstraint("visits_left IS NULL OR (visits_left >= 0 AND visits_left <= visits_total)",
                        name="visits_in_range"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
        Index("ix_membership_cards_member", "member_id", "ends_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_no: Mapped[str] = mapped_column(String(20), unique=True, nullable=False, default=_card_no)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), nullable=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    starts_on: Mapped[date] = mapped_column(Date, nullable=False)
    ends_on: Mapped[date] = mapped_column(Date, nullable=False)
    visits_total: Mapped[int | None] = mapped_column(Integer)
    visits_left: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(20), nullable=False, default="front_desk")
    source_ref: Mapped[str | None] = mapped_column(String(100))
    price_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))

    member: Mapped[Member] = relationship(Member, lazy="select", viewonly=True)
    product: Mapped[Product] = relationship(Product, lazy="select", viewonly=True)

    @property
    def is_visits_card(self) -> bool:
        return self.visits_total is not None

    def status_on(self, today: date) -> str:
        """The status as the desk should see it: an active card past its end date is expired."""
        if self.status == "active" and self.ends_on < today:
            return "expired"
        return self.status


class CardEvent(TenantOwned, db.Model):
    """The operation log of a card: what each open, renewal, shortening or closing changed."""

    __tablename__ = "card_events"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(CARD_EVENT_KINDS)})", name="kind"),
        UniqueConstraint("source_ref", "kind", name="uq_card_events_source_ref_kind"),
        Index("ix_card_events_card", "card_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("membership_cards.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    old_ends_on: Mapped[date | None] = mapped_column(Date)
    new_ends_on: Mapped[date | None] = mapped_column(Date)
    # The date a renewal counted from: the old end date, or the renewal day when the card had lapsed.
    extended_from: Mapped[date | None] = mapped_column(Date)
    old_visits_left: Mapped[int | None] = mapped_column(Integer)
    new_visits_left: Mapped[int | None] = mapped_column(Integer)
    source_ref: Mapped[str | None] = mapped_column(String(100))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class LessonBalance(TenantOwned, Timestamped, db.Model):
    """A member's coaching lessons of one course; changed only with a version check."""

    __tablename__ = "lesson_balances"
    __table_args__ = (
        UniqueConstraint("org_id", "member_id", "course_name", name="uq_lesson_balances_org_member_course"),
        CheckConstraint("lessons_left >= 0 AND lessons_left <= lessons_total", name="lessons_in_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True, nullable=False)
    course_name: Mapped[str] = mapped_column(String(50), nullable=False)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    lessons_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lessons_left: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class LessonEntry(TenantOwned, db.Model):
    """One movement of a lesson balance; (source_ref, kind) is its business key, so a retry
    cannot credit (or take back) twice."""

    __tablename__ = "lesson_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(LESSON_ENTRY_KINDS)})", name="kind"),
        CheckConstraint("delta <> 0", name="delta_not_zero"),
        UniqueConstraint("source_ref", "kind", name="uq_lesson_entries_source_ref_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    balance_id: Mapped[int] = mapped_column(ForeignKey("lesson_balances.id"), index=True, nullable=False)
    delta: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(200), nullable=False)
    source_ref: Mapped[str] = mapped_column(String(100), nullable=False)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class ClassSession(TenantOwned, Timestamped, db.Model):
    """A scheduled group class of a group_class product; seats are taken by a conditional update."""

    __tablename__ = "class_sessions"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(SESSION_STATUSES)})", name="status"),
        CheckConstraint("capacity >= 1", name="capacity_positive"),
        CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity", name="seats_in_range"),
        CheckConstraint("ends_at > starts_at", name="times_in_order"),
        Index("ix_class_sessions_org_starts", "org_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True, nullable=False)
    course_name: Mapped[str] = mapped_column(String(50), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    capacity: Mapped[int] = mapped_column(Integer, nullable=False)
    seats_taken: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="scheduled")


class ClassBooking(TenantOwned, Timestamped, db.Model):
    __tablename__ = "class_bookings"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(BOOKING_STATUSES)})", name="status"),
        # One live booking per member and session; cancelled rows do not count.
        Index("uq_class_bookings_live", "session_id", "member_id", unique=True,
              postgresql_where=text("status = 'booked'"), sqlite_where=text("status = 'booked'")),
        Index("ix_class_bookings_member", "member_id", "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("class_sessions.id"), nullable=False)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="booked")
    source_ref: Mapped[str | None] = mapped_column(String(100))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    session: Mapped[ClassSession] = relationship(ClassSession, lazy="select", viewonly=True)


class ClassCredit(TenantOwned, Timestamped, db.Model):
    """Classes a member may still book for a course (a class voucher redeemed with no session chosen)."""

    __tablename__ = "class_credits"
    __table_args__ = (
        UniqueConstraint("org_id", "member_id", "course_name", name="uq_class_credits_org_member_course"),
        CheckConstraint("credits_left >= 0", name="credits_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True, nullable=False)
    course_name: Mapped[str] = mapped_column(String(50), nullable=False)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    credits_left: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class GymGrant(TenantOwned, db.Model):
    """What one `source_ref` was granted, so that a retry grants nothing more and a reversal
    undoes exactly that. Unique on `source_ref` across all organisations."""

    __tablename__ = "gym_grants"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(GRANT_KINDS)})", name="kind"),
        CheckConstraint(f"status IN ({_in(GRANT_STATUSES)})", name="status"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        Index("ix_gym_grants_member", "member_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_ref: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="granted")
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), nullable=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), nullable=False)
    # Cards: units of the product's duration, or visits; lessons; seats (1) or class credits.
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    price_fen: Mapped[int | None] = mapped_column(Integer)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("membership_cards.id"))
    card_event_id: Mapped[int | None] = mapped_column(ForeignKey("card_events.id"))
    lesson_balance_id: Mapped[int | None] = mapped_column(ForeignKey("lesson_balances.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("class_bookings.id"))
    class_credit_id: Mapped[int | None] = mapped_column(ForeignKey("class_credits.id"))
    summary: Mapped[str] = mapped_column(String(300), nullable=False)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reversed_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    reversal_summary: Mapped[str | None] = mapped_column(String(300))
