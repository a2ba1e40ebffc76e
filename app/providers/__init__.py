"""Clients of the partner platforms, one module per platform; each owns its protocol (signing,
verification, error mapping, timeouts, retries of idempotent calls, token caching)."""
