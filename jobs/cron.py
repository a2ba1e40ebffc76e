"""The periodic schedule, for exactly one `rq cron jobs/cron.py` (or the embedded cron thread).

Every entry is idempotent: running it twice, or late, does nothing twice.
"""
from rq import cron

from jobs.maintenance import purge_idempotency_records
from jobs.outbox import relay_outbox

cron.register(relay_outbox, queue_name="outbox", interval=15, name="relay_outbox")
cron.register(purge_idempotency_records, queue_name="default", cron="30 3 * * *", name="purge_idempotency_records")
