"""Column mixins shared by the domain models."""
from __future__ import annotations

import json
import string
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from app.core import crypto
from app.core.randomtext import random_text
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


class EncryptedSecrets:
    """A row that keeps credentials (private keys, API keys, tokens) as one JSON object, encrypted
    at rest in `secrets_enc` (`app.core.crypto`); `secrets` reads and replaces them as a dict."""

    secrets_enc: Mapped[str] = mapped_column(Text, nullable=False)

    @property
    def secrets(self) -> dict[str, str]:
        return json.loads(crypto.decrypt(self.secrets_enc) or "{}")

    @secrets.setter
    def secrets(self, values: dict[str, str]) -> None:
        self.secrets_enc = crypto.encrypt(json.dumps(values, sort_keys=True))


_CODE_ALPHABET = string.digits + string.ascii_uppercase


def public_code(prefix: str = "", length: int = 12, alphabet: str = _CODE_ALPHABET) -> str:
    """A public identifier from the CSPRNG (never the primary key)."""
    return prefix + random_text(length, alphabet)
