"""Theme activity jobs (thin: they call `app.activities`)."""
from __future__ import annotations

from jobs import job_task


@job_task
def expire_theme_activities(limit: int = 500) -> dict:
    """Mark EXPIRED the theme activities whose end has passed, and end their coupon activities."""
    from app.activities.lifecycle import expire_due

    expired = expire_due(limit=limit)
    return {"expired": len(expired), "theme_nos": expired[:50]}


@job_task
def purge_pending_backgrounds(older_than_hours: int = 24) -> dict:
    """Remove background images chosen in a form that was never saved."""
    from app.activities.backgrounds import purge_stale_pending

    return {"removed": purge_stale_pending(older_than_hours * 3600)}
