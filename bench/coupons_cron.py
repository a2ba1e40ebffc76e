"""The outbox relay alone, for `rq cron` in the coupons benchmark (bench/scenarios/coupons.py).

Production's schedule (jobs/cron.py) runs the relay as the safety net that delivers an outbox
message whose enqueue or first try failed; the benchmark runs just that entry (the rest of the
schedule, e.g. the 云数汇 sandbox's own callbacks, would be load the cases do not measure).
"""
from rq import cron

from jobs.outbox import relay_outbox

cron.register(relay_outbox, queue_name="outbox", interval=15, name="relay_outbox")
