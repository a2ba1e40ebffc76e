"""Theme activities (主题活动): a bank's campaign with its time window, rules and limits.

Coupon activities link to a theme activity and inherit its data permission (`org_id` is the
bank's organisation). The roulette, prize pool and draw engine build on this table.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import TenantOwned, Timestamped
from app.extensions import db

THEME_STATUSES = ("active", "paused", "expired")


class ThemeActivity(TenantOwned, Timestamped, db.Model):
    __tablename__ = "theme_activities"
    __table_args__ = (
        CheckConstraint("status IN ('active','paused','expired')", name="status"),
        CheckConstraint("end_at > start_at", name="window"),
        CheckConstraint("participation_limit IS NULL OR participation_limit >= 0", name="participation_limit"),
        CheckConstraint("daily_limit IS NULL OR daily_limit >= 0", name="daily_limit"),
        Index("ix_theme_activities_org_created", "org_id", "created_at"),
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
    background_image: Mapped[str | None] = mapped_column(String(255))
    wheel_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
