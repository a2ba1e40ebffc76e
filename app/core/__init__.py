"""Cross-cutting platform pieces: tenancy, permissions, audit, money and time, field encryption,
idempotency keys, the outbox, job runs, list pages and exports."""
