"""Figures for the home page, limited to the operator's organisations."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from app.auth.models import Operator
from app.core.outbox import OutboxMessage
from app.core.tenancy import scoped
from app.core.timeutil import business_today, local_day_start
from app.extensions import db
from app.members.models import Member, Product
from app.orgs.models import Organisation


@dataclass
class HomeFigures:
    """None: the operator may not open the list behind that figure, so it is neither counted nor shown."""

    members: int | None
    members_today: int | None
    products: int | None
    organisations: int | None
    operators: int | None
    outbox_waiting: int
    outbox_dead: int


def _count(stmt) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()


def home_figures(actor: Operator) -> HomeFigures:
    today_start = local_day_start(business_today())
    outbox = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    if actor.org.kind != "platform":
        outbox = outbox.where(OutboxMessage.org_id.in_(scoped(Organisation, actor, select(Organisation.id))))
    outbox_counts = dict(db.session.execute(outbox).all())
    def count_if(permission: str, stmt) -> int | None:
        return _count(stmt) if actor.can(permission) else None

    members = scoped(Member, actor, select(Member.id))
    return HomeFigures(
        members=count_if("members.view", members),
        members_today=count_if("members.view", members.where(Member.registered_at >= today_start)),
        products=count_if("products.view", scoped(Product, actor, select(Product.id))),
        organisations=count_if("orgs.view", scoped(Organisation, actor, select(Organisation.id))),
        operators=count_if("operators.view", scoped(Operator, actor, select(Operator.id))),
        outbox_waiting=outbox_counts.get("pending", 0),
        outbox_dead=outbox_counts.get("dead", 0),
    )


def registrations_by_day(actor: Operator, days: int = 14) -> list[tuple[str, int]]:
    """Members registered per Shanghai day over the last `days` days (for the trend chart)."""
    today = business_today()
    first = today - timedelta(days=days - 1)
    rows = db.session.execute(
        scoped(Member, actor, select(Member.registered_at)).where(Member.registered_at >= local_day_start(first))
    ).scalars()
    from app.core.timeutil import to_local

    counts = {first + timedelta(days=i): 0 for i in range(days)}
    for registered in rows:
        day = to_local(registered).date()
        if day in counts:
            counts[day] += 1
    return [(day.strftime("%m-%d"), count) for day, count in counts.items()]
