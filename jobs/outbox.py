"""Jobs that deliver outbox messages."""
from __future__ import annotations

from jobs import job_task


@job_task
def deliver_outbox_message(message_id: int) -> str | None:
    """Deliver one message now (if it is still due and no one else holds it)."""
    from app.core import outbox

    outcome = outbox.deliver(message_id)
    return outcome.status if outcome else None


@job_task
def relay_outbox(limit: int = 200) -> dict:
    """The periodic sweep: deliver every due message, including retries whose backoff has passed."""
    from app.core import outbox

    outcomes = outbox.relay_due(limit)
    return {
        "attempted": len(outcomes),
        "delivered": sum(1 for o in outcomes if o.status == "delivered"),
        "dead": sum(1 for o in outcomes if o.status == "dead"),
    }
