"""Theme activities (主题活动): a bank's campaign with its time window, rules and limits, the
institutions and banks enrolled in it, and the counter its 10-digit ids come from.

Coupon activities link to a theme activity and inherit its data permission (`org_id` is the
bank's organisation). The roulette, prize pool and draw engine build on this table. The link
rows belong to their theme activity (no `org_id` of their own): they are only ever reached
through a theme activity fetched with the tenancy helper.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import TenantOwned, Timestamped
from app.core.timeutil import utcnow
from app.extensions import db

THEME_STATUSES = ("active", "paused", "expired")
# The first theme activity id handed out is FIRST_THEME_NO + 1 (5000000001), as in the
# requirement's examples (5000000084).
FIRST_THEME_NO = 5_000_000_000


class ThemeActivity(TenantOwned, Timestamped, db.Model):
    __tablename__ = "theme_activities"
    __table_args__ = (
        CheckConstraint("status IN ('active','paused','expired')", name="status"),
        CheckConstraint("end_at > start_at", name="window"),
        CheckConstraint("participation_limit IS NULL OR participation_limit >= 0", name="participation_limit"),
        CheckConstraint("daily_limit IS NULL OR daily_limit >= 0", name="daily_limit"),
        Index("ix_theme_activities_org_created", "org_id", "created_at"),
        Index("ix_theme_activities_status_end", "status", "end_at"),  # the expiry job's look-up (0015)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The 10-digit business id shown everywhere (e.g. 5000000084); generated, read-only.
    theme_no: Mapped[str] = mapped_column(String(10), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    partner_bank_id: Mapped[int | None] = mapped_column(ForeignKey("partner_banks.id"), index=True)
    position_no: Mapped[str | None] = mapped_column(String(23))
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    rules: Mapped[str | None] = mapped_column(Text)
    # Lifetime participations per customer / per customer per day: NULL no cap, 0 may not take part.
    participation_limit: Mapped[int | None] = mapped_column(Integer)
    daily_limit: Mapped[int | None] = mapped_column(Integer)
    # Where the H5 background is stored, relative to the upload folder ("theme_backgrounds/<random>.png").
    background_image: Mapped[str | None] = mapped_column(String(255))
    wheel_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    # The coupon activities a pause disabled, so that enabling the theme again re-enables exactly
    # those (and not one an operator had disabled on purpose before). Migration 0015.
    paused_coupon_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list, server_default="[]")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))


class ThemeActivityInstitution(db.Model):
    """An institution enrolled (报名) in a theme activity: when and by whom (migration 0015)."""

    __tablename__ = "theme_activity_institutions"
    __table_args__ = (UniqueConstraint("theme_activity_id", "institution_id", name="uq_theme_activity_institutions"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), nullable=False, index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), nullable=False, index=True)
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    enrolled_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))


class ThemeActivityBank(db.Model):
    """A bank linked (关联) to a theme activity: when and by whom (migration 0015)."""

    __tablename__ = "theme_activity_banks"
    __table_args__ = (UniqueConstraint("theme_activity_id", "partner_bank_id", name="uq_theme_activity_banks"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    theme_activity_id: Mapped[int] = mapped_column(ForeignKey("theme_activities.id"), nullable=False, index=True)
    partner_bank_id: Mapped[int] = mapped_column(ForeignKey("partner_banks.id"), nullable=False, index=True)
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    linked_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))


class ThemeNumberCounter(db.Model):
    """The one row the theme activity ids are counted from (migration 0015).

    Taking a number is an UPDATE of this row, so concurrent creations queue on its row lock and
    no number is handed out twice, on PostgreSQL and SQLite alike.
    """

    __tablename__ = "theme_number_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_no: Mapped[int] = mapped_column(BigInteger, nullable=False)
