"""Voucher platform accounts (credentials per organisation) and the mapping of platform deals to products."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core import crypto
from app.core.models import TenantOwned, Timestamped
from app.extensions import db
from app.members.models import Product

PLATFORM_CHECK = "platform IN ('meituan','douyin')"


class PlatformAccount(TenantOwned, Timestamped, db.Model):
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
    secrets_enc: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    last_tested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_message: Mapped[str | None] = mapped_column(String(500))

    @property
    def secrets(self) -> dict[str, str]:
        return json.loads(crypto.decrypt(self.secrets_enc) or "{}")

    @secrets.setter
    def secrets(self, values: dict[str, str]) -> None:
        self.secrets_enc = crypto.encrypt(json.dumps(values, sort_keys=True))


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
