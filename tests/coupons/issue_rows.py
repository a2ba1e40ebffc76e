"""Test helper: coupon issue rows written straight to the table, in any state and at any time,
for the reports, the monitor and the reconciliation tests."""
from __future__ import annotations

import itertools
from datetime import datetime

from app.core import crypto
from app.coupons.models import CouponActivity, CouponIssue, mask_openid
from app.extensions import db

_seq = itertools.count(1)


def add_issue(activity: CouponActivity, *, created_at: datetime | None = None, status: str = "succeeded",
              openid: str | None = None, redemption_status: str | None = None, used_at: datetime | None = None,
              **values) -> CouponIssue:
    """One issue of `activity` (its bank's), committed; `created_at` is the moment the bank asked."""
    n = next(_seq)
    openid = openid or f"oTest{n:010d}"
    issue = CouponIssue(org_id=activity.org_id, coupon_activity_id=activity.id, order_no=f"CI{n:012d}",
                        call_trade_no=values.pop("call_trade_no", f"BANK{n:08d}"), openid_enc=crypto.encrypt(openid),
                        openid_hash=crypto.lookup_hash(openid), openid_masked=mask_openid(openid), status=status,
                        redemption_status=redemption_status, used_at=used_at, **values)
    if created_at is not None:
        issue.created_at = issue.updated_at = created_at
    db.session.add(issue)
    db.session.commit()
    return issue
