"""System screens: health, audit trail, outbox deliveries, background jobs."""
