"""State of the Douyin sandbox (sandbox_douyin_* tables): apps, tokens, skus, certificates,
single-use verify tokens and verify records. Douyin's side of the protocol, not ours."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.timeutil import utcnow
from app.extensions import db

CERTIFICATE_STATUSES = ("unused", "used", "expired", "refunded")


class SandboxDouyinApp(db.Model):
    """A developer app of the sandbox: client_key and its secret (sealed like every secret)."""

    __tablename__ = "sandbox_douyin_apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_secret_enc: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    token_ttl_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=7200)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxDouyinToken(db.Model):
    """A client token the sandbox issued."""

    __tablename__ = "sandbox_douyin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    client_key: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SandboxDouyinSku(db.Model):
    """A group-buy product on sale in the sandbox (groupon_type 1: one visit, 3: time card)."""

    __tablename__ = "sandbox_douyin_skus"
    __table_args__ = (
        CheckConstraint("groupon_type IN (1, 2, 3)", name="groupon_type"),
        CheckConstraint("market_price_fen >= 0 AND pay_price_fen >= 0", name="prices_not_negative"),
        CheckConstraint("times_count >= 1", name="times_count_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    title: Mapped[str] = mapped_column(String(100), nullable=False)
    groupon_type: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    market_price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    pay_price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    times_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    valid_days: Mapped[int] = mapped_column(Integer, nullable=False, default=90)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class SandboxDouyinCertificate(db.Model):
    """One bought certificate: the code the buyer shows, its encrypted form, its state."""

    __tablename__ = "sandbox_douyin_certificates"
    __table_args__ = (
        CheckConstraint("status IN ('unused','used','expired','refunded')", name="status"),
        CheckConstraint("times_used >= 0 AND times_used <= times_count", name="times_used_in_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    certificate_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    encrypted_code: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    sku_pk: Mapped[int] = mapped_column(Integer, ForeignKey("sandbox_douyin_skus.id"), nullable=False, index=True)
    order_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    buyer_phone_masked: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="unused")
    times_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    times_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    poi_id: Mapped[str | None] = mapped_column(String(64))  # NULL: valid at every poi
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expire_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    sku: Mapped[SandboxDouyinSku] = relationship(lazy="joined")


class SandboxDouyinVerifyToken(db.Model):
    """A prepare's verify_token: good for exactly one verify of the certificates it names."""

    __tablename__ = "sandbox_douyin_verify_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verify_token: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    client_key: Mapped[str] = mapped_column(String(64), nullable=False)
    certificate_ids: Mapped[list] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SandboxDouyinVerification(db.Model):
    """One verification (one use of a certificate); cancellable for an hour."""

    __tablename__ = "sandbox_douyin_verifications"
    __table_args__ = (Index("ix_sandbox_douyin_verifications_cert", "certificate_pk", "verified_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verify_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    certificate_pk: Mapped[int] = mapped_column(Integer, ForeignKey("sandbox_douyin_certificates.id"), nullable=False)
    poi_id: Mapped[str] = mapped_column(String(64), nullable=False)
    verified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    certificate: Mapped[SandboxDouyinCertificate] = relationship()
