"""The periodic schedule, for exactly one `rq cron jobs/cron.py` (or the embedded cron thread).

Every entry is idempotent: running it twice, or late, does nothing twice.
"""
from rq import cron

from jobs.coupon_reconciliation import reconcile_coupons
from jobs.activities import expire_theme_activities, purge_pending_backgrounds
from jobs.coupons import settle_processing_issues
from jobs.maintenance import purge_idempotency_records
from jobs.outbox import relay_outbox
from jobs.sandbox_wechatpay import deliver_wechatpay_sandbox_notifications
from jobs.sandbox_yunshuhui import run_yunshuhui_sandbox
from jobs.vouchers import reconcile_vouchers, sync_voucher_orders, sync_voucher_statuses

cron.register(relay_outbox, queue_name="outbox", interval=15, name="relay_outbox")
cron.register(purge_idempotency_records, queue_name="default", cron="30 3 * * *", name="purge_idempotency_records")
cron.register(sync_voucher_orders, queue_name="default", cron="*/15 * * * *", name="sync_voucher_orders")
cron.register(sync_voucher_statuses, queue_name="default", cron="5 * * * *", name="sync_voucher_statuses")
cron.register(reconcile_vouchers, queue_name="reports", cron="30 2 * * *", name="reconcile_vouchers")
cron.register(deliver_wechatpay_sandbox_notifications, queue_name="default", interval=15,
              name="deliver_wechatpay_sandbox_notifications")
# The 云数汇 sandbox's 1 s / 5 s callback retries need a short beat; RQ cron intervals are whole
# seconds (the scheduler sleeps until the next entry is due). A no-op where the sandboxes are off.
cron.register(run_yunshuhui_sandbox, queue_name="default", interval=2, name="run_yunshuhui_sandbox")
cron.register(settle_processing_issues, queue_name="default", cron="*/5 * * * *", name="settle_processing_issues")
cron.register(reconcile_coupons, queue_name="reports", cron="20 * * * *", name="reconcile_coupons")
# A theme activity whose end has passed already counts as expired everywhere; this writes it down
# and ends its coupon activities, within a minute.
cron.register(expire_theme_activities, queue_name="default", cron="* * * * *", name="expire_theme_activities")
cron.register(purge_pending_backgrounds, queue_name="default", cron="40 3 * * *", name="purge_pending_backgrounds")
