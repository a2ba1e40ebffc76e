"""Factories for test data, bound to the app's session (committed, so threads see them)."""
from __future__ import annotations

import itertools

from app.auth.models import Operator
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import Member, Product
from app.orgs.models import Organisation
from app.orgs.services import path_segment

PASSWORD = "secret-pass-123"
_seq = itertools.count(1)


class Factories:
    def platform(self) -> Organisation:
        existing = db.session.query(Organisation).filter_by(kind="platform").first()
        if existing:
            return existing
        return self.org(kind="platform", parent=None, code="PLATFORM", name="平台")

    def org(self, kind: str = "bank", parent: Organisation | None = None, code: str | None = None,
            name: str | None = None, status: str = "active") -> Organisation:
        n = next(_seq)
        if parent is None and kind != "platform":
            parent = self.platform()
        org = Organisation(kind=kind, code=code or f"{kind.upper()}{n}", name=name or f"{kind}-{n}",
                           parent_id=parent.id if parent else None, status=status, path="/")
        db.session.add(org)
        db.session.flush()
        org.path = (parent.path if parent else "/") + path_segment(org.id)
        db.session.commit()
        return org

    def operator(self, org: Organisation | None = None, roles: tuple[str, ...] = ("org_admin",),
                 username: str | None = None, password: str = PASSWORD, status: str = "active") -> Operator:
        org = org or self.org()
        operator = Operator(username=username or f"user{next(_seq)}", display_name="测试用户", org_id=org.id,
                            org=org, status=status, password_changed_at=utcnow())
        operator.set_password(password)
        operator.set_roles(list(roles))
        db.session.add(operator)
        db.session.commit()
        return operator

    def member(self, org: Organisation, name: str = "张三", phone: str | None = None, **values) -> Member:
        member = Member(org_id=org.id, name=name, **values)
        member.phone = phone or f"139{next(_seq):08d}"
        db.session.add(member)
        db.session.commit()
        return member

    def product(self, org: Organisation, name: str | None = None, kind: str = "goods", price_fen: int = 1000,
                attributes: dict | None = None) -> Product:
        product = Product(org_id=org.id, name=name or f"商品{next(_seq)}", kind=kind, price_fen=price_fen,
                          attributes=attributes or {})
        db.session.add(product)
        db.session.commit()
        return product
