"""The time window of an activity (a theme activity or a coupon activity): the rules its start and
end keep when it is added or edited, and the window a new one is offered.

Both kinds of activity keep the same rules; what each adds (a theme's issued coupons, a coupon
activity's theme) stays with its own rules in `app.activities.services` and `app.coupons.activities`.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask_babel import gettext as _

from app.core.timeutil import utcnow

DEFAULT_LENGTH = timedelta(days=30)


def window_problems(start: datetime | None, end: datetime | None, now: datetime,
                    stored: tuple[datetime, datetime] | None = None) -> dict[str, str]:
    """The rules of an activity's time window (field → message), for a new one or an existing one
    whose `stored` (start, end) it would replace: the start is required, not in the past (the
    current minute counts: forms are filled to the minute) and fixed once the activity has started;
    the end is required, after the start and, when changed, not in the past."""
    errors: dict[str, str] = {}
    start_changed = stored is None or start != stored[0]
    if start is None:
        errors["start_at"] = _("Enter the start time.")
    elif start_changed and stored is not None and stored[0] <= now:
        errors["start_at"] = _("The activity has started: its start time can no longer change.")
    elif start_changed and start < now.replace(second=0, microsecond=0):
        errors["start_at"] = _("The start time may not be in the past.")
    if end is None:
        errors["end_at"] = _("Enter the end time.")
    elif start is not None and end <= start:
        errors["end_at"] = _("The end time must be after the start time.")
    elif stored is not None and end != stored[1] and end <= now:
        errors["end_at"] = _("The end time may not be in the past.")
    return errors


def default_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """A new activity's suggested time: from the next full hour, for 30 days."""
    now = now or utcnow()
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return start, start + DEFAULT_LENGTH
