"""Coupon issuance jobs (thin: they call `app.coupons.issuance`).

The issue itself and the bank notifications are outbox messages (`coupons.issue`,
`coupons.notify_bank`), delivered by the outbox jobs; here is the periodic query of issues that
云数汇 left in PROCESS.
"""
from __future__ import annotations

from datetime import timedelta

from jobs import job_task


@job_task
def settle_processing_issues(older_than_minutes: int = 5, limit: int = 200) -> dict:
    """Ask 云数汇 about issues still in PROCESS after `older_than_minutes`, and settle them."""
    from app.coupons.issuance import settle_processing

    return settle_processing(timedelta(minutes=older_than_minutes), limit).as_dict()
