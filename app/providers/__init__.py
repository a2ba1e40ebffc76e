"""Clients of the partner platforms, one module per platform; each owns its protocol (signing,
verification, error mapping, timeouts, retries of idempotent calls, token caching)."""

import ssl
from functools import lru_cache


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One TLS context per process for every platform client.

    httpx builds (and loads the CA bundle into) a new context for every Client it creates; a
    desk makes a client per request, and that load was half of a preview's CPU time.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
