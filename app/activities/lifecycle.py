"""The lifecycle of theme activities and what it does to their coupon activities.

ACTIVE ↔ PAUSED by hand (one or many at once: only the rows in the state the action applies to
change; the rest are reported as skipped); EXPIRED when the end has passed, written by the
expiry job (`expire_due`), after which the activity is view-only.

A status change propagates to the coupon activities linked to the theme (§4), in the same
transaction, each change audited as the coupon activity's own event:
- pausing disables (`CouponActivity.enabled = False`) those that were in effect and not over,
  and remembers their ids in `ThemeActivity.paused_coupon_ids`;
- enabling re-enables exactly those remembered ones that are still disabled and not over (one an
  operator had disabled before the pause stays disabled) and forgets the list;
- expiring ends those not over yet by setting `terminated_at` (a coupon activity has no other
  "ended for good" state: its end time cannot be moved before its start), so nothing more is
  issued from a theme that is over.

The coupon-activity writes are done here rather than through `app.coupons.activities.set_enabled`
because that service commits on its own, acts for an operator (the expiry job has none) and does
not tell which rows a pause changed before the commit that must also record them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import select

from app.activities.models import ThemeActivity
from app.activities.services import effective_status
from app.core import audit
from app.core.tenancy import scoped
from app.core.timeutil import utcnow
from app.coupons.models import CouponActivity
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import Operator

# The status an action leads to → the effective status it applies to.
TRANSITIONS = {"paused": "active", "active": "paused"}


@dataclass
class SwitchResult:
    changed: list[ThemeActivity] = field(default_factory=list)
    skipped: list[ThemeActivity] = field(default_factory=list)  # not in the state the action applies to


def _coupon_over(activity: CouponActivity, now: datetime) -> bool:
    return activity.terminated_at is not None or activity.end_at <= now


def _locked_coupons(theme: ThemeActivity) -> list[CouponActivity]:
    """The theme's coupon activities, locked in id order (the order the coupon screens lock them in)."""
    return list(db.session.execute(select(CouponActivity).where(CouponActivity.theme_activity_id == theme.id)
                                   .order_by(CouponActivity.id).with_for_update()).scalars())


def _switch_coupons(theme: ThemeActivity, activities: list[CouponActivity], enabled: bool,
                    actor_id: int | None) -> None:
    for activity in activities:
        activity.enabled = enabled
        activity.updated_by = actor_id or activity.updated_by
        audit.record("coupon_activity.enable" if enabled else "coupon_activity.disable", "coupon_activity",
                     activity.id, before={"enabled": not enabled},
                     after={"enabled": enabled, "theme_activity": theme.theme_no}, org_id=activity.org_id)


def _set_status(theme: ThemeActivity, status: str, action: str, actor_id: int | None,
                coupons: list[CouponActivity], coupons_key: str) -> None:
    before = theme.status
    theme.status = status
    theme.updated_by = actor_id or theme.updated_by
    audit.record(action, "theme_activity", theme.id, before={"status": before},
                 after={"status": status, coupons_key: [a.code for a in coupons]}, org_id=theme.org_id)


def _pause(theme: ThemeActivity, actor_id: int | None, now: datetime) -> None:
    in_effect = [a for a in _locked_coupons(theme) if a.enabled and not _coupon_over(a, now)]
    _switch_coupons(theme, in_effect, False, actor_id)
    theme.paused_coupon_ids = [a.id for a in in_effect]
    _set_status(theme, "paused", "theme_activity.pause", actor_id, in_effect, "coupon_activities_disabled")


def _enable(theme: ThemeActivity, actor_id: int | None, now: datetime) -> None:
    remembered = set(theme.paused_coupon_ids or ())
    again = [a for a in _locked_coupons(theme)
             if a.id in remembered and not a.enabled and not _coupon_over(a, now)]
    _switch_coupons(theme, again, True, actor_id)
    theme.paused_coupon_ids = []
    _set_status(theme, "active", "theme_activity.enable", actor_id, again, "coupon_activities_enabled")


def switch(actor: "Operator", ids: Iterable[int], status: str, now: datetime | None = None) -> SwitchResult:
    """Pause (`status="paused"`) or enable (`"active"`) the visible theme activities among `ids`.

    Only rows whose effective status is the one the action applies to change (a batch pause
    changes only ACTIVE rows); ids the operator cannot see are ignored as if they did not exist.
    """
    if status not in TRANSITIONS:
        raise ValueError(f"unknown status {status!r}")
    now = now or utcnow()
    result = SwitchResult()
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return result
    rows = db.session.execute(scoped(ThemeActivity, actor).where(ThemeActivity.id.in_(wanted))
                              .order_by(ThemeActivity.id).with_for_update()).scalars().all()
    for theme in rows:
        if effective_status(theme, now) != TRANSITIONS[status]:
            result.skipped.append(theme)
            continue
        (_pause if status == "paused" else _enable)(theme, actor.id, now)
        result.changed.append(theme)
    db.session.commit()
    return result


def _expire(theme: ThemeActivity, now: datetime) -> None:
    ending = [a for a in _locked_coupons(theme) if not _coupon_over(a, now)]
    for activity in ending:
        activity.terminated_at = now
        audit.record("coupon_activity.terminate", "coupon_activity", activity.id, before={"terminated_at": None},
                     after={"terminated_at": now, "theme_activity": theme.theme_no, "reason": "theme expired"},
                     org_id=activity.org_id)
    theme.paused_coupon_ids = []
    _set_status(theme, "expired", "theme_activity.expire", None, ending, "coupon_activities_ended")


def expire_due(now: datetime | None = None, limit: int = 500) -> list[str]:
    """Mark EXPIRED the theme activities whose end has passed (each in its own transaction) and end
    their coupon activities; the ids of those expired. Safe to run twice or late."""
    now = now or utcnow()
    due = (ThemeActivity.status.in_(("active", "paused")), ThemeActivity.end_at <= now)
    expired = []
    ids = db.session.execute(select(ThemeActivity.id).where(*due).order_by(ThemeActivity.end_at).limit(limit))
    for theme_id in ids.scalars().all():
        theme = db.session.execute(select(ThemeActivity).where(ThemeActivity.id == theme_id, *due)
                                   .with_for_update(skip_locked=True)).scalar_one_or_none()
        if theme is None:  # changed since, or another run has it
            db.session.rollback()
            continue
        _expire(theme, now)
        db.session.commit()
        expired.append(theme.theme_no)
    return expired
