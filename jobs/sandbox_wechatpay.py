"""Jobs of the WeChat Pay sandbox: delivering its COUPON.USE notifications (and their retries)."""
from __future__ import annotations

from jobs import job_task


@job_task
def deliver_wechatpay_sandbox_notifications(limit: int = 100) -> dict:
    """Attempt every due sandbox notification; a no-op where the sandboxes are off (production)."""
    from flask import current_app

    if not current_app.config["SANDBOXES_ENABLED"]:
        return {"skipped": True}
    from app.sandbox.wechatpay import deliver_due_notifications

    outcomes = deliver_due_notifications(limit=limit)
    return {"attempted": len(outcomes), "delivered": sum(1 for _, status in outcomes if status == "delivered")}
