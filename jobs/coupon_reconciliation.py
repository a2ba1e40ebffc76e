"""The coupon reconciliation with 云数汇: hourly from the cron (every active 云数汇 account, issues
changed in the last two hours plus the unsettled ones), or started by hand from the
reconciliation page for the operator's banks. Thin: it calls `app.coupons.reconciliation`."""
from __future__ import annotations

from datetime import timedelta

from jobs import job_task, report_progress


@job_task
def reconcile_coupons(account_ids: list[int] | None = None, hours: int = 2) -> dict:
    from app.coupons.reconciliation import reconcile

    report_progress(1, None)
    return reconcile(account_ids, window=timedelta(hours=hours), progress=report_progress)
