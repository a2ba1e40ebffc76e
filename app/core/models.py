"""Column mixins shared by the domain models."""
from __future__ import annotations

import secrets
import string
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.core.timeutil import utcnow


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )


class TenantOwned:
    """A row that belongs to one organisation; queries for it go through `app.core.tenancy`."""

    @declared_attr
    def org_id(cls) -> Mapped[int]:  # noqa: N805
        return mapped_column(Integer, ForeignKey("organisations.id"), index=True, nullable=False)


_CODE_ALPHABET = string.digits + string.ascii_uppercase


def public_code(prefix: str = "", length: int = 12, alphabet: str = _CODE_ALPHABET) -> str:
    """A public identifier from the CSPRNG (never the primary key)."""
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))
