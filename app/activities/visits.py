"""Visits of a theme activity's H5 game page: counting one view of one customer on one day.

One `ThemeVisit` row per (activity, customer, day) holds that customer's views of the day: page
views are the sum of `views`, unique visitors the number of distinct openid hashes. A view is
counted by one `INSERT … ON CONFLICT DO UPDATE SET views = views + 1` on the customer's own row
(the unique key is the guard: two first views racing make one row, never two, and no increment is
lost), so counting never reads first and never queues on a row shared by all customers. Only an
identified customer's view is counted (the hand-off's redirect is not a view). The figures are
read by `statistics`. No `request` here.
"""
from __future__ import annotations

from datetime import datetime

from app.core import crypto
from app.core.timeutil import utcnow
from app.extensions import db, upsert

from .draw import business_day
from .models import ThemeActivity
from .prize_models import ThemeVisit


def record_visit(theme: ThemeActivity, open_id: str, now: datetime | None = None) -> None:
    """Count one view of the game page by this customer on today's Asia/Shanghai day (committed)."""
    now = now or utcnow()
    c = ThemeVisit.__table__.c
    stmt = upsert(ThemeVisit).values(org_id=theme.org_id, theme_activity_id=theme.id,
                                     openid_hash=crypto.lookup_hash(open_id), visit_day=business_day(now), views=1,
                                     first_at=now, last_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["theme_activity_id", "openid_hash", "visit_day"],
                                      set_={"views": c.views + 1, "last_at": now})
    db.session.execute(stmt)
    db.session.commit()
