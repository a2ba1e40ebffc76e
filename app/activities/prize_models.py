"""The prize pool of a theme activity, its draws, and the ledgers prizes are paid into (migration 0016).

- `Prize`: one prize (and one segment of the wheel): a coupon of a linked coupon activity, points,
  cash (fen) or a gift, with its stock (`stock_total`, `stock_remaining` ≥ 0 by CHECK), a per-member
  cap, a weight 1–100, its order and colour; plus exactly one "thanks for taking part" fallback per
  theme activity (kind `thanks`, no stock: a partial unique index allows one).
- `PrizeMemberCount`: how many of one prize one customer has won; the per-member cap is enforced by a
  guarded upsert on this row.
- `ThemeParticipant`: one customer (by keyed hash of the openid; the openid itself encrypted) in one
  theme activity, with the lifetime count of draws and the count of the current Asia/Shanghai day.
  The total and daily limits are enforced by one guarded upsert on this row.
- `ThemeDraw`: one draw, unique on (theme activity, idempotency key): a retried request finds its
  draw and gets the same answer. It names the prize awarded (the fallback included) and the state of
  its fulfilment; `PrizeDelivery` holds the delivery address a gift's winner leaves (encrypted).
- `ThemeVisit`: one customer's views of the H5 game page on one Asia/Shanghai day (migration 0018):
  page views are the sum of `views`, unique visitors the distinct openid hashes. A row per visitor
  and day, so counting a view never queues on a shared hot row.
- `PointsAccount` / `PointsEntry` and `CashAccount` / `CashEntry`: a customer's points and cash
  balances per bank, moved only by ledger entries with a unique business key, so a retried
  fulfilment cannot pay twice. They are the members' ledgers (DESIGN: members own the points
  ledger); they live here, with the draws that are so far their only source, and move to
  `app/members` once another domain pays into them.

Why a participant row rather than `Member`: a customer on the H5 page or behind a bank's API is
known only by an openid; `Member` is keyed by phone and keeps `wechat_openid` in the clear. A
participant row per theme activity stores the openid encrypted, and doubles as the limit counter
(one row lock per customer and activity, never a hot row).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint, text)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.core import crypto
from app.core.models import TenantOwned, Timestamped
from app.core.timeutil import utcnow
from app.extensions import db

PRIZE_KINDS = ("coupon", "points", "cash", "gift", "thanks")
STOCKED_KINDS = ("coupon", "points", "cash", "gift")
DRAW_CHANNELS = ("h5", "api")
# none: nothing to hand over (thanks); pending: queued in the outbox; fulfilled: credited / handed to
# the coupon pipeline; awaiting_address / address_given / shipped: a gift's way; failed: could not be
# handed over (the reason in `fulfilment_note`).
FULFILMENT_STATUSES = ("none", "pending", "fulfilled", "awaiting_address", "address_given", "shipped", "failed")
WEIGHT_MIN, WEIGHT_MAX = 1, 100


class Prize(TenantOwned, Timestamped, db.Model):
    __tablename__ = "theme_prizes"
    __table_args__ = (
        CheckConstraint("kind IN ('coupon','points','cash','gift','thanks')", name="kind"),
        CheckConstraint(f"weight BETWEEN {WEIGHT_MIN} AND {WEIGHT_MAX}", name="weight"),
        CheckConstraint("stock_remaining >= 0", name="stock_remaining"),
        CheckConstraint("stock_remaining <= stock_total", name="stock_within_total"),
        CheckConstraint("(kind = 'thanks') = (stock_total IS NULL) AND (stock_total IS NULL) = (stock_remaining IS NULL)",
                        name="stock_unless_thanks"),
        CheckConstraint("(kind = 'coupon') = (coupon_activity_id IS NOT NULL)", name="coupon_link"),
        CheckConstraint("(kind = 'points') = (points IS NOT NULL) AND (points IS NULL OR points > 0)", name="points"),
        CheckConstraint("(kind = 'cash') = (cash_fen IS NOT NULL) AND (cash_fen IS NULL OR cash_fen > 0)", name="cash"),
        CheckConstraint("per_member_cap IS NULL OR per_member_cap >= 1", name="per_member_cap"),
        Index("ix_theme_prizes_theme_order", "theme_activity_id", "sort_order"),
        Index("uq_theme_prizes_one_thanks", "theme_activity_id", unique=True,
              postgresql_where=text("kind = 'thanks'"), sqlite_where=text("kind = 'thanks'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(50), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    coupon_activity_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_activities.id"), index=True)
    points: Mapped[int | None] = mapped_column(Integer)
    cash_fen: Mapped[int | None] = mapped_column(Integer)
    # NULL for the fallback only (it has no stock); otherwise remaining ≤ total, never below zero.
    stock_total: Mapped[int | None] = mapped_column(Integer)
    stock_remaining: Mapped[int | None] = mapped_column(Integer)
    per_member_cap: Mapped[int | None] = mapped_column(Integer)  # NULL: no cap
    weight: Mapped[int] = mapped_column(Integer, nullable=False)
    sort_order: Mapped[int] = mapped_column(Integer, nullable=False)
    colour: Mapped[str] = mapped_column(String(7), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))

    @property
    def is_fallback(self) -> bool:
        return self.kind == "thanks"

    @property
    def stock_taken(self) -> int:
        return (self.stock_total or 0) - (self.stock_remaining or 0)


class PrizeMemberCount(db.Model):
    __tablename__ = "prize_member_counts"
    __table_args__ = (CheckConstraint("won >= 0", name="won"),)

    prize_id: Mapped[int] = mapped_column(ForeignKey("theme_prizes.id"), primary_key=True)
    openid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    won: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class _OpenIdHolder:
    """A customer known by openid: encrypted, a keyed hash for look-ups, a masked form to show."""

    openid_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    openid_enc: Mapped[str] = mapped_column(Text, nullable=False)
    openid_masked: Mapped[str] = mapped_column(String(40), nullable=False)

    @property
    def openid(self) -> str | None:
        return crypto.decrypt(self.openid_enc)


class ThemeParticipant(_OpenIdHolder, TenantOwned, db.Model):
    __tablename__ = "theme_participants"
    __table_args__ = (
        UniqueConstraint("theme_activity_id", "openid_hash", name="uq_theme_participants_theme_openid"),
        CheckConstraint("draws_total >= 0 AND draws_on_day >= 0", name="draws"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), nullable=False)
    draws_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    draw_day: Mapped[date] = mapped_column(Date, nullable=False)  # the Asia/Shanghai day draws_on_day counts
    draws_on_day: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    first_draw_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_draw_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class ThemeDraw(TenantOwned, db.Model):
    __tablename__ = "theme_draws"
    __table_args__ = (
        UniqueConstraint("theme_activity_id", "idempotency_key", name="uq_theme_draws_theme_key"),
        CheckConstraint("channel IN ('h5','api')", name="channel"),
        CheckConstraint("fulfilment_status IN ('none','pending','fulfilled','awaiting_address','address_given',"
                        "'shipped','failed')", name="fulfilment_status"),
        Index("ix_theme_draws_theme_drawn", "theme_activity_id", "drawn_at"),
        Index("ix_theme_draws_participant", "participant_id", "drawn_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draw_no: Mapped[str] = mapped_column(String(24), unique=True, nullable=False)  # public, from the CSPRNG
    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), nullable=False)
    participant_id: Mapped[int] = mapped_column(ForeignKey("theme_participants.id"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(128), nullable=False)
    channel: Mapped[str] = mapped_column(String(8), nullable=False)
    api_client_id: Mapped[int | None] = mapped_column(ForeignKey("bank_api_clients.id"))
    picked_prize_id: Mapped[int] = mapped_column(ForeignKey("theme_prizes.id"), nullable=False)  # the wheel's pick
    prize_id: Mapped[int] = mapped_column(ForeignKey("theme_prizes.id"), nullable=False)  # what was awarded
    won: Mapped[bool] = mapped_column(Boolean, nullable=False)  # a prize with stock (not the fallback)
    fulfilment_status: Mapped[str] = mapped_column(String(16), nullable=False)
    fulfilment_note: Mapped[str | None] = mapped_column(String(300))
    coupon_issue_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_issues.id"))
    drawn_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    drawn_day: Mapped[date] = mapped_column(Date, nullable=False)  # Asia/Shanghai
    fulfilled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def fell_back(self) -> bool:
        """The wheel picked a prize whose stock (or the customer's cap) was gone: the fallback was given."""
        return self.picked_prize_id != self.prize_id


class ThemeVisit(TenantOwned, db.Model):
    __tablename__ = "theme_visits"
    __table_args__ = (CheckConstraint("views >= 1", name="views"),
                      Index("ix_theme_visits_theme_day", "theme_activity_id", "visit_day"))

    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), primary_key=True)
    openid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    visit_day: Mapped[date] = mapped_column(Date, primary_key=True)  # Asia/Shanghai
    views: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class PrizeDelivery(TenantOwned, Timestamped, db.Model):
    """Where a gift goes: left by its winner (personal data, encrypted), shipped by an operator."""

    __tablename__ = "prize_deliveries"
    __table_args__ = (CheckConstraint("status IN ('address_given','shipped')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draw_id: Mapped[int] = mapped_column(ForeignKey("theme_draws.id"), unique=True, nullable=False)
    recipient_enc: Mapped[str] = mapped_column(Text, nullable=False)
    phone_enc: Mapped[str] = mapped_column(Text, nullable=False)
    address_enc: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="address_given")
    tracking_no: Mapped[str | None] = mapped_column(String(64))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))


# --- the customers' ledgers ---------------------------------------------------------------------------


class _LedgerAccount(_OpenIdHolder, TenantOwned, Timestamped):
    """A customer's balance at one bank (one row per bank and openid), never below zero."""

    balance_column: ClassVar[str]
    id: Mapped[int] = mapped_column(Integer, primary_key=True)

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # noqa: N805
        return (UniqueConstraint("org_id", "openid_hash", name=f"uq_{cls.__tablename__}_org_openid"),
                CheckConstraint(f"{cls.balance_column} >= 0", name="balance"))


class PointsAccount(_LedgerAccount, db.Model):
    __tablename__ = "points_accounts"
    balance_column = "balance"

    balance: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class _LedgerEntry(TenantOwned):
    """One movement of a balance; `business_key` (e.g. "draw:123") makes it happen once."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    business_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    reason: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class PointsEntry(_LedgerEntry, db.Model):
    __tablename__ = "points_entries"

    account_id: Mapped[int] = mapped_column(ForeignKey("points_accounts.id"), nullable=False, index=True)
    points: Mapped[int] = mapped_column(Integer, nullable=False)
    balance_after: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CashAccount(_LedgerAccount, db.Model):
    __tablename__ = "cash_accounts"
    balance_column = "balance_fen"

    balance_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class CashEntry(_LedgerEntry, db.Model):
    __tablename__ = "cash_entries"

    account_id: Mapped[int] = mapped_column(ForeignKey("cash_accounts.id"), nullable=False, index=True)
    amount_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
