"""Organisations form a tree; `path` ('/1/4/9/') makes "this org and its descendants" one indexed prefix query."""
from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, func, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.models import Timestamped
from app.extensions import db

ORG_KINDS = ("platform", "bank", "merchant", "store")
# Which kinds may sit under which: the platform holds banks and merchants; a merchant holds stores;
# a bank may hold branches, which are modelled as stores of the bank.
CHILD_KINDS = {"platform": ("bank", "merchant"), "bank": ("store",), "merchant": ("store",), "store": ()}
ORG_STATUSES = ("active", "disabled")


class Organisation(Timestamped, db.Model):
    __tablename__ = "organisations"
    __table_args__ = (
        CheckConstraint("kind IN ('platform','bank','merchant','store')", name="kind"),
        CheckConstraint("status IN ('active','disabled')", name="status"),
        Index("ix_organisations_path", "path", postgresql_ops={"path": "text_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    path: Mapped[str] = mapped_column(String(255), nullable=False, default="/")
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    contact_name: Mapped[str | None] = mapped_column(String(50))
    contact_phone: Mapped[str | None] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")

    parent: Mapped["Organisation | None"] = relationship(remote_side=[id], lazy="joined", innerjoin=False)

    @property
    def depth(self) -> int:
        return self.path.count("/") - 2

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def ancestor_ids(self) -> list[int]:
        """Ids on the path from the root down to this organisation (itself included)."""
        return [int(part) for part in self.path.strip("/").split("/") if part]

    def is_active_with_ancestors(self) -> bool:
        if self.status != "active":
            return False
        disabled = db.session.execute(
            select(func.count()).select_from(Organisation)
            .where(Organisation.id.in_(self.ancestor_ids()), Organisation.status != "active")
        ).scalar_one()
        return disabled == 0

    def __repr__(self) -> str:
        return f"<Organisation {self.code} {self.name}>"
