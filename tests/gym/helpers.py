"""Helpers of the gym tests' threads."""
from __future__ import annotations

from app.extensions import db
from app.members.models import Member, Product


def detached(member_id: int, product_id: int) -> tuple[Member, Product]:
    """A thread's own copies of the member and product, its connection handed back to the pool
    (20 threads would otherwise hold more connections than the pool has while they wait)."""
    member, product = db.session.get(Member, member_id), db.session.get(Product, product_id)
    db.session.expunge_all()
    db.session.close()
    return member, product
