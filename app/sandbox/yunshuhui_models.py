"""State of the 云数汇 sandbox: its key pairs, the merchants it knows, coupon activities,
customers (openids), the coupons it issued and the callbacks it owes, with every delivery attempt.

These tables play 云数汇's side only; nothing of ours refers to them. Amounts are integer fen.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import crypto
from app.core.timeutil import utcnow
from app.extensions import db


class SandboxYshKey(db.Model):
    """The sandbox's own RSA key pairs: "platform" signs answers, "notify" signs callbacks."""

    __tablename__ = "sandbox_ysh_keys"
    __table_args__ = (CheckConstraint("purpose IN ('platform','notify')", name="purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    serial: Mapped[str] = mapped_column(String(64), nullable=False)
    cert_pem: Mapped[str] = mapped_column(Text, nullable=False)
    private_key_enc: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    @property
    def private_key(self) -> str:
        return crypto.decrypt(self.private_key_enc) or ""


class SandboxYshMerchant(db.Model):
    """A merchant certificate registered with the sandbox: requests signed by (appid, serial)
    with this certificate's key are accepted for `member_id`."""

    __tablename__ = "sandbox_ysh_merchants"
    __table_args__ = (UniqueConstraint("app_id", "serial_no", name="uq_sandbox_ysh_merchants_app_serial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), nullable=False)
    serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    cert_pem: Mapped[str] = mapped_column(Text, nullable=False)
    member_id: Mapped[str] = mapped_column(String(20), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxYshActivity(db.Model):
    """A coupon batch as configured in 云数汇's console (face value, threshold, stock)."""

    __tablename__ = "sandbox_ysh_activities"
    __table_args__ = (
        CheckConstraint("face_value_fen > 0", name="face_value"),
        CheckConstraint("threshold_fen >= 0", name="threshold"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock"),
        CheckConstraint("issued >= 0", name="issued"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[str] = mapped_column(String(10), nullable=False, unique=True)
    title: Mapped[str] = mapped_column(String(100), nullable=False)
    face_value_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    threshold_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    valid_days: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    stock: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    issued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxYshCustomer(db.Model):
    """A person the OpenID page can hand out (their openid)."""

    __tablename__ = "sandbox_ysh_customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    nickname: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxYshCoupon(db.Model):
    """One issue call that was accepted (one per member_id + mer_order_id), and what became of it."""

    __tablename__ = "sandbox_ysh_coupons"
    __table_args__ = (
        UniqueConstraint("member_id", "mer_order_id", name="uq_sandbox_ysh_coupons_member_order"),
        CheckConstraint("trade_status IN ('PROCESS','SUCCESS','FAIL')", name="trade_status"),
        CheckConstraint("settle_to IS NULL OR settle_to IN ('SUCCESS','FAIL')", name="settle_to"),
        CheckConstraint("redemption_status IS NULL OR redemption_status IN ('USED','EXPIRED')", name="redemption"),
        Index("ix_sandbox_ysh_coupons_settle", "trade_status", "settle_at"),
        Index("ix_sandbox_ysh_coupons_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(20), nullable=False)
    mer_order_id: Mapped[str] = mapped_column(String(64), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)  # hash of the request fields
    app_id: Mapped[str] = mapped_column(String(64), nullable=False)
    activity_id: Mapped[str] = mapped_column(String(10), nullable=False)
    owner_id: Mapped[str] = mapped_column(String(8), nullable=False)
    promotion_id: Mapped[str] = mapped_column(String(32), nullable=False)
    channel_openid: Mapped[str] = mapped_column(String(128), nullable=False)
    write_off_notify: Mapped[str | None] = mapped_column(String(500))
    post_notify: Mapped[str | None] = mapped_column(String(500))
    third_coupon_id: Mapped[str | None] = mapped_column(String(32), unique=True)  # None when FAIL
    trade_no: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    batch_code: Mapped[str] = mapped_column(String(32), nullable=False)
    trade_status: Mapped[str] = mapped_column(String(16), nullable=False)
    fail_msg: Mapped[str | None] = mapped_column(String(200))
    settle_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # PROCESS settles then
    settle_to: Mapped[str | None] = mapped_column(String(16))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    face_value_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    threshold_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    valid_to: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    redemption_status: Mapped[str | None] = mapped_column(String(16))
    promo_amount_fen: Mapped[int | None] = mapped_column(Integer)
    total_amount_fen: Mapped[int | None] = mapped_column(Integer)
    org_amount_fen: Mapped[int | None] = mapped_column(Integer)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pay_trade_no: Mapped[str | None] = mapped_column(String(32))
    merchant_no: Mapped[str | None] = mapped_column(String(32))
    merchant_name: Mapped[str | None] = mapped_column(String(100))
    auto_checked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)  # seen by auto-redeem
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxYshCallback(db.Model):
    """A callback the sandbox owes someone, retried on the real schedule until answered SUCCESS."""

    __tablename__ = "sandbox_ysh_callbacks"
    __table_args__ = (
        CheckConstraint("kind IN ('issuance','redemption')", name="kind"),
        CheckConstraint("status IN ('pending','delivered','abandoned')", name="status"),
        Index("ix_sandbox_ysh_callbacks_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("sandbox_ysh_coupons.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)  # the exact JSON sent every time
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duplicate_of: Mapped[int | None] = mapped_column(Integer)  # a deliberate extra copy of that callback
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    coupon: Mapped[SandboxYshCoupon | None] = relationship(lazy="joined")


class SandboxYshCallbackAttempt(db.Model):
    """One try at delivering a callback: what was answered, how long it took, whether it was
    deliberately signed badly."""

    __tablename__ = "sandbox_ysh_callback_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("sandbox_ysh_callbacks.id"), nullable=False, index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    http_status: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    bad_signature: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
