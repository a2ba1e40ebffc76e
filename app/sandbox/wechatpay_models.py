"""State of the WeChat Pay sandbox (sandbox_wxpay_* tables): merchants with their certificates and the
platform key the sandbox signs with, 代金券 stocks, the coupons sent from them and the COUPON.USE
notifications owed to merchants. WeChat Pay's side of the protocol, not ours.

Amounts are integer fen, as WeChat Pay itself counts them. The APIv3 key and the platform private
key are sealed like every secret (app.core.crypto).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import crypto
from app.core.timeutil import utcnow
from app.extensions import db

COUPON_STATUSES = ("SENDED", "USED", "EXPIRED")
NOTIFICATION_STATUSES = ("pending", "delivered", "abandoned")


class SandboxWxpayMerchant(db.Model):
    """A merchant (mchid) the sandbox knows: the certificate its requests are checked against, its
    APIv3 key, where it wants notifications, and the platform key pair answers are signed with."""

    __tablename__ = "sandbox_wxpay_merchants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mchid: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    merchant_serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    merchant_cert: Mapped[str] = mapped_column(Text, nullable=False)
    apiv3_key_enc: Mapped[str] = mapped_column(Text, nullable=False)
    platform_serial: Mapped[str] = mapped_column(String(64), nullable=False)
    platform_cert: Mapped[str] = mapped_column(Text, nullable=False)
    platform_private_key_enc: Mapped[str] = mapped_column(Text, nullable=False)
    notify_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow,
                                                 onupdate=utcnow)

    @property
    def apiv3_key(self) -> str:
        return crypto.decrypt(self.apiv3_key_enc) or ""

    @apiv3_key.setter
    def apiv3_key(self, value: str) -> None:
        self.apiv3_key_enc = crypto.encrypt(value)

    @property
    def platform_private_key(self) -> str:
        return crypto.decrypt(self.platform_private_key_enc) or ""

    @platform_private_key.setter
    def platform_private_key(self, pem: str) -> None:
        self.platform_private_key_enc = crypto.encrypt(pem)


class SandboxWxpayStock(db.Model):
    """A 代金券 stock (批次) created by a merchant: face value, threshold, budget in coupons,
    per-user limit and the window in which its coupons can be used."""

    __tablename__ = "sandbox_wxpay_stocks"
    __table_args__ = (
        CheckConstraint("coupon_amount_fen > 0", name="coupon_amount"),
        CheckConstraint("transaction_minimum_fen >= 0", name="transaction_minimum"),
        CheckConstraint("max_coupons > 0", name="max_coupons"),
        CheckConstraint("max_coupons_per_user > 0", name="max_coupons_per_user"),
        CheckConstraint("sent_count >= 0 AND sent_count <= max_coupons", name="sent_within_budget"),
        CheckConstraint("available_end_at > available_begin_at", name="window"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stock_id: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("sandbox_wxpay_merchants.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(40), nullable=False)
    description: Mapped[str | None] = mapped_column(String(300))
    coupon_amount_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    transaction_minimum_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_coupons: Mapped[int] = mapped_column(Integer, nullable=False)
    max_coupons_per_user: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    sent_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    available_begin_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    available_end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    merchant: Mapped[SandboxWxpayMerchant] = relationship(lazy="joined", innerjoin=True)

    @property
    def remaining(self) -> int:
        return self.max_coupons - self.sent_count


class SandboxWxpayCoupon(db.Model):
    """One coupon sent to one openid; `out_request_no` is the sending merchant's idempotency key."""

    __tablename__ = "sandbox_wxpay_coupons"
    __table_args__ = (
        UniqueConstraint("sender_mchid", "out_request_no", name="uq_sandbox_wxpay_coupons_sender_request"),
        CheckConstraint("status IN ('SENDED','USED','EXPIRED')", name="status"),
        Index("ix_sandbox_wxpay_coupons_stock_openid", "stock_pk", "openid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    coupon_id: Mapped[str] = mapped_column(String(20), unique=True, nullable=False)
    stock_pk: Mapped[int] = mapped_column(ForeignKey("sandbox_wxpay_stocks.id"), nullable=False)
    sender_mchid: Mapped[str] = mapped_column(String(32), nullable=False)
    out_request_no: Mapped[str] = mapped_column(String(128), nullable=False)
    appid: Mapped[str] = mapped_column(String(64), nullable=False)
    openid: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="SENDED")
    consume_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consume_mchid: Mapped[str | None] = mapped_column(String(32))
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    stock: Mapped[SandboxWxpayStock] = relationship(lazy="joined", innerjoin=True)


class SandboxWxpayNotification(db.Model):
    """A COUPON.USE notification owed to a merchant's notify URL, retried on WeChat Pay's schedule.
    `body` is the exact JSON sent each time (resource already encrypted); every attempt is signed
    afresh. `history` keeps the latest attempts: [{"at", "status", "error"}]."""

    __tablename__ = "sandbox_wxpay_notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending','delivered','abandoned')", name="status"),
        Index("ix_sandbox_wxpay_notifications_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("sandbox_wxpay_merchants.id"), nullable=False, index=True)
    coupon_pk: Mapped[int] = mapped_column(ForeignKey("sandbox_wxpay_coupons.id"), nullable=False, index=True)
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_http_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    history: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    merchant: Mapped[SandboxWxpayMerchant] = relationship(lazy="joined", innerjoin=True)
    coupon: Mapped[SandboxWxpayCoupon] = relationship(lazy="joined", innerjoin=True)
