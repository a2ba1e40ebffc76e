"""The periodic schedule, for exactly one `rq cron jobs/cron.py` (or the embedded cron thread).

Every entry is idempotent: running it twice, or late, does nothing twice.
"""
from rq import cron

from jobs.maintenance import purge_idempotency_records
from jobs.outbox import relay_outbox
from jobs.vouchers import reconcile_vouchers, sync_voucher_orders, sync_voucher_statuses

cron.register(relay_outbox, queue_name="outbox", interval=15, name="relay_outbox")
cron.register(purge_idempotency_records, queue_name="default", cron="30 3 * * *", name="purge_idempotency_records")
cron.register(sync_voucher_orders, queue_name="default", cron="*/15 * * * *", name="sync_voucher_orders")
cron.register(sync_voucher_statuses, queue_name="default", cron="5 * * * *", name="sync_voucher_statuses")
cron.register(reconcile_vouchers, queue_name="reports", cron="30 2 * * *", name="reconcile_vouchers")
