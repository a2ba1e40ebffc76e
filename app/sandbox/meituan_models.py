"""State of the Meituan sandbox: its developers, deals, receipt codes and consumptions.

These tables play Meituan's side only; nothing of ours refers to them. Prices are integer fen
here (the sandbox answers yuan on the wire, as Meituan does). The buyer's mobile is kept
masked only: the sandbox never holds a real phone number.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.timeutil import utcnow
from app.extensions import db

RECEIPT_STATUSES = ("unused", "used", "expired", "refunded", "refunding")


class SandboxMeituanDeveloper(db.Model):
    """Extra sandbox credentials (developerId -> signKey); the documented sandbox key needs no row."""

    __tablename__ = "sandbox_meituan_developers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    developer_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    sign_key: Mapped[str] = mapped_column(String(128), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxMeituanDeal(db.Model):
    __tablename__ = "sandbox_meituan_deals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_id: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    deal_group_id: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(100), nullable=False)
    price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    market_price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    biz_type: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # 0 normal, 205 multi-use card
    uses_per_receipt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    valid_days: Mapped[int] = mapped_column(Integer, nullable=False, default=90)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxMeituanReceipt(db.Model):
    __tablename__ = "sandbox_meituan_receipts"
    __table_args__ = (
        CheckConstraint("status IN ('unused','used','expired','refunded','refunding')", name="status"),
        CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name="uses_left"),
        Index("ix_sandbox_meituan_receipts_bought", "bought_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    deal_id: Mapped[int] = mapped_column(ForeignKey("sandbox_meituan_deals.id"), nullable=False, index=True)
    order_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="unused")
    uses_total: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    uses_left: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    valid_to: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # The store the code is restricted to, named by the appAuthToken that store granted; None: any store.
    store_token: Mapped[str | None] = mapped_column(String(128))
    mobile_masked: Mapped[str | None] = mapped_column(String(20))
    bought_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    deal: Mapped[SandboxMeituanDeal] = relationship(lazy="joined", innerjoin=True)


class SandboxMeituanConsumption(db.Model):
    """One consume call that succeeded, keyed by our requestId (the idempotency key)."""

    __tablename__ = "sandbox_meituan_consumptions"
    __table_args__ = (Index("ix_sandbox_meituan_consumptions_time", "consumed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    flow_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    receipt_id: Mapped[int] = mapped_column(ForeignKey("sandbox_meituan_receipts.id"), nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    shop_account: Mapped[str | None] = mapped_column(String(64))
    shop_account_name: Mapped[str | None] = mapped_column(String(64))
    app_auth_token: Mapped[str] = mapped_column(String(128), nullable=False)
    answer: Mapped[dict] = mapped_column(JSON, nullable=False)  # the `data` answered, replayed on a retry
    consumed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    reversed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    receipt: Mapped[SandboxMeituanReceipt] = relationship(lazy="joined", innerjoin=True)
