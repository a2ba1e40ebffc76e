"""Voucher platform accounts (credentials per organisation) and the mapping of platform deals to products."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.models import EncryptedSecrets, TenantOwned, Timestamped
from app.extensions import db
from app.members.models import Product

PLATFORM_CHECK = "platform IN ('meituan','douyin')"


class PlatformAccount(EncryptedSecrets, TenantOwned, Timestamped, db.Model):
    """How one organisation (a merchant, or one store) reaches one platform.

    `app_id` is the platform's non-secret id of us (Meituan developerId, Douyin client_key);
    `store_ref` names the store on the platform (Meituan appShopAccount, Douyin poi_id); the
    secrets (Meituan signKey and appAuthToken, Douyin client_secret) are encrypted at rest.
    """

    __tablename__ = "platform_accounts"
    __table_args__ = (
        UniqueConstraint("org_id", "platform", name="uq_platform_accounts_org_platform"),
        CheckConstraint(PLATFORM_CHECK, name="platform"),
        CheckConstraint("status IN ('active','disabled')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    base_url: Mapped[str] = mapped_column(String(255), nullable=False)
    app_id: Mapped[str] = mapped_column(String(128), nullable=False)
    store_ref: Mapped[str] = mapped_column(String(128), nullable=False)
    store_name: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    last_tested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_message: Mapped[str | None] = mapped_column(String(500))


class DealMapping(TenantOwned, Timestamped, db.Model):
    """One platform deal (what the customer bought) is fulfilled as one of our products."""

    __tablename__ = "deal_mappings"
    __table_args__ = (
        UniqueConstraint("org_id", "platform", "deal_id", name="uq_deal_mappings_org_platform_deal"),
        CheckConstraint(PLATFORM_CHECK, name="platform"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    deal_id: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), nullable=False, index=True)
    # How many units of the product one use of the voucher grants (e.g. 10 lessons).
    quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    product: Mapped[Product] = relationship(lazy="joined")


VOUCHER_STATUSES = ("unused", "partly_used", "used", "expired", "refunding", "refunded")
VERIFICATION_STATUSES = ("verifying", "verified", "failed", "unknown", "undone")


class Voucher(TenantOwned, Timestamped, db.Model):
    """Our record of one platform voucher, seen at the desk or brought in by the order sync.

    The platform is the authority on its state; `status` and `uses_left` are what we last learnt
    (from a prepare, our own verification, or a sync), refreshed by the status sync.
    """

    __tablename__ = "vouchers"
    __table_args__ = (
        UniqueConstraint("platform", "code", name="uq_vouchers_platform_code"),
        CheckConstraint(PLATFORM_CHECK, name="platform"),
        CheckConstraint("status IN ('unused','partly_used','used','expired','refunding','refunded')", name="status"),
        CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name="uses_within_total"),
        Index("ix_vouchers_org_created", "org_id", "created_at"),
        Index("ix_vouchers_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    code: Mapped[str] = mapped_column(String(64), nullable=False)  # as the customer shows it
    encrypted_code: Mapped[str | None] = mapped_column(String(255))  # Douyin's form of the code
    order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    deal_id: Mapped[str] = mapped_column(String(64), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="single")  # single | multi_use
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    buyer_phone_masked: Mapped[str | None] = mapped_column(String(20))
    original_price_fen: Mapped[int | None] = mapped_column(Integer)
    paid_price_fen: Mapped[int | None] = mapped_column(Integer)
    uses_total: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    uses_left: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="unused")
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="desk")  # desk | sync
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    product: Mapped[Product | None] = relationship(lazy="joined")


class VoucherVerification(TenantOwned, Timestamped, db.Model):
    """One verification of a voucher at a desk: what the platform said and what we granted.

    `request_id` is our idempotency key towards the platform (Meituan's requestId) and the
    `source_ref` of the fulfilment, so a retry neither verifies nor grants twice.
    """

    __tablename__ = "voucher_verifications"
    __table_args__ = (
        CheckConstraint("status IN ('verifying','verified','failed','unknown','undone')", name="status"),
        CheckConstraint("count > 0", name="count_positive"),
        Index("ix_voucher_verifications_voucher", "voucher_id", "created_at"),
        Index("ix_voucher_verifications_org_verified", "org_id", "verified_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"), nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="verifying")
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    platform_verify_id: Mapped[str | None] = mapped_column(String(128))
    certificate_id: Mapped[str | None] = mapped_column(String(128))
    granted: Mapped[dict | None] = mapped_column(JSON)  # what the fulfilment gave, for the receipt and undo
    amount_fen: Mapped[int | None] = mapped_column(Integer)  # paid price of the uses verified
    error: Mapped[str | None] = mapped_column(String(500))
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    undone_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    undo_reason: Mapped[str | None] = mapped_column(String(200))

    voucher: Mapped[Voucher] = relationship(lazy="joined")


RECONCILIATION_KINDS = ("platform_only", "local_only", "count_mismatch")


class ReconciliationItem(TenantOwned, Timestamped, db.Model):
    """One difference between a platform's verified list of a Shanghai day and our verifications.

    `platform_only`: the platform verified a code we have no verification of (verified at another
    system, or our answer was lost); `local_only`: we recorded a verification the platform does not
    list; `count_mismatch`: both have the code, with a different number of uses. Unique on
    (account, day, code, kind), so running the reconciliation again adds nothing twice.
    """

    __tablename__ = "voucher_reconciliation_items"
    __table_args__ = (
        UniqueConstraint("account_id", "day", "code", "kind", name="uq_voucher_reconciliation_items_key"),
        CheckConstraint(PLATFORM_CHECK, name="platform"),
        CheckConstraint("kind IN ('platform_only','local_only','count_mismatch')", name="kind"),
        CheckConstraint("status IN ('open','resolved')", name="status"),
        Index("ix_voucher_reconciliation_items_org_day", "org_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_accounts.id"), nullable=False)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    day: Mapped[date] = mapped_column(Date, nullable=False)
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    platform_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    local_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"))
    detail: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")

    voucher: Mapped[Voucher | None] = relationship(lazy="joined")
