"""Members and products.

A member's phone is stored encrypted (`phone_enc`) with a keyed hash beside it (`phone_hash`)
for look-up and per-organisation uniqueness; it is never stored in the clear.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core import crypto
from app.core.models import TenantOwned, Timestamped, public_code
from app.core.timeutil import utcnow
from app.extensions import db

MEMBER_LEVELS = ("normal", "silver", "gold", "platinum", "diamond")
MEMBER_STATUSES = ("active", "disabled")
PRODUCT_KINDS = ("financial", "membership_card", "coaching_package", "group_class", "goods")
PRODUCT_STATUSES = ("on_sale", "off_sale")


class Member(TenantOwned, Timestamped, db.Model):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("org_id", "phone_hash", name="uq_members_org_phone"),
        CheckConstraint("status IN ('active','disabled')", name="status"),
        # The list's default order is (registered_at, id) descending: one index per scope serves it.
        Index("ix_members_org_registered", "org_id", "registered_at", "id"),
        Index("ix_members_registered", "registered_at", "id"),
        Index("ix_members_org_name", "org_id", "name", postgresql_ops={"name": "text_pattern_ops"}),
        Index("ix_members_wechat_openid", "wechat_openid"),
        Index("ix_members_alipay_user_id", "alipay_user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_no: Mapped[str] = mapped_column(String(20), unique=True, nullable=False, default=lambda: public_code("M", 11))
    name: Mapped[str] = mapped_column(String(50), nullable=False)
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    wechat_openid: Mapped[str | None] = mapped_column(String(128))
    alipay_user_id: Mapped[str | None] = mapped_column(String(128))
    level: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    group_name: Mapped[str | None] = mapped_column(String(50))
    region: Mapped[str | None] = mapped_column(String(50))
    source_channel: Mapped[str | None] = mapped_column(String(50))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")

    @property
    def phone(self) -> str | None:
        return crypto.decrypt(self.phone_enc)

    @phone.setter
    def phone(self, value: str | None) -> None:
        normalised = crypto.normalise_phone(value)
        self.phone_enc = crypto.encrypt(normalised)
        self.phone_hash = crypto.lookup_hash(normalised)

    @property
    def phone_masked(self) -> str:
        return crypto.mask_phone(self.phone)


class Product(TenantOwned, Timestamped, db.Model):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("org_id", "name", name="uq_products_org_name"),
        CheckConstraint(
            "kind IN ('financial','membership_card','coaching_package','group_class','goods')", name="kind"
        ),
        CheckConstraint("status IN ('on_sale','off_sale')", name="status"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True, nullable=False, default=lambda: public_code("P", 11))
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    price_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    description: Mapped[str | None] = mapped_column(Text)
    # Kind-specific attributes, validated by the service against PRODUCT_ATTRIBUTES.
    attributes: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="on_sale")
