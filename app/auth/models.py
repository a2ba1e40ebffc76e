"""Operators of the console and the roles they hold."""
from __future__ import annotations

from datetime import datetime
from functools import cached_property

from flask import current_app, has_app_context
from flask_login import UserMixin
from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.core.models import TenantOwned, Timestamped
from app.core.permissions import ROLES, permissions_of
from app.extensions import db
from app.orgs.models import Organisation

OPERATOR_STATUSES = ("active", "disabled")


class OperatorRole(db.Model):
    __tablename__ = "operator_roles"
    __table_args__ = (UniqueConstraint("operator_id", "role", name="uq_operator_roles_operator_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32), nullable=False)


class Operator(UserMixin, TenantOwned, Timestamped, db.Model):
    __tablename__ = "operators"
    __table_args__ = (CheckConstraint("status IN ('active','disabled')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(50), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(50), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Bumped on password reset or disable, and kept in the session: old sessions stop working.
    session_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    org: Mapped[Organisation] = relationship(lazy="joined")
    role_rows: Mapped[list[OperatorRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by=OperatorRole.id
    )

    def set_password(self, password: str) -> None:
        # scrypt, werkzeug's default, unless the configuration names another work factor (tests)
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt") if has_app_context() else "scrypt"
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def roles(self) -> list[str]:
        return [row.role for row in self.role_rows]

    def set_roles(self, names: list[str]) -> None:
        unknown = set(names) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles: {sorted(unknown)}")
        keep = [row for row in self.role_rows if row.role in names]
        have = {row.role for row in keep}
        self.role_rows = keep + [OperatorRole(role=name) for name in names if name not in have]
        self.__dict__.pop("permissions", None)

    @cached_property
    def permissions(self) -> frozenset[str]:
        return permissions_of(self.roles)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def is_active(self) -> bool:
        """Active when the account, its organisation and every organisation above it are active."""
        return self.status == "active" and self.org.is_active_with_ancestors()

    @property
    def is_authenticated(self) -> bool:
        # Flask-Login's default answers `is_active`, a query up the organisation tree, on every
        # `current_user.is_authenticated` of a request. The user loader (app/web.py) already refuses
        # an inactive operator once per request, so a loaded operator is authenticated.
        return True

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"
