"""Test helpers: a bank's 云数汇 TunnelAccount wired to the 云数汇 sandbox.

Two ways to reach the sandbox from a test:

- in-process: `connect_ysh_account(org)` (site "http://sandbox.test") and pass
  `transport=ysh_transport(app)` to `YunshuhuiClient.for_account(...)` / `deliver_due_callbacks(...)`;
- over a real socket (client timeouts apply; code that builds its own client needs no
  transport): use the `ysh_live_site` fixture (import it into your test module) and
  `connect_ysh_account(org, site=ysh_live_site)`.

    from tests.coupons.ysh_sandbox import connect_ysh_account, ysh_live_site  # noqa: F401
"""
from __future__ import annotations


import httpx
import pytest

from app.coupons.models import TunnelAccount
from app.extensions import db
from app.sandbox import yunshuhui as sandbox
from tests.helpers import serving

IN_PROCESS_SITE = "http://sandbox.test"


def ysh_transport(app) -> httpx.WSGITransport:
    """An httpx transport that hands requests straight to the app (sandbox and our endpoints)."""
    return httpx.WSGITransport(app=app)


def connect_ysh_account(org, *, site: str = IN_PROCESS_SITE, member_id: str | None = None,
                        app_id: str | None = None, status: str = "active") -> TunnelAccount:
    """A fresh key pair for the bank, its certificate registered with the sandbox, and the bank's
    TunnelAccount (committed) holding the sandbox's certificates and URLs."""
    account = sandbox.connect_tunnel_account(org.id, site, member_id=member_id, app_id=app_id)
    if status != account.status:
        account.status = status
        db.session.commit()
    return account


@pytest.fixture(scope="session")
def ysh_live_site(app):
    """The app (with its sandboxes) served on http://127.0.0.1:<free port> for the session."""
    with serving(app, "ysh-live-sandbox") as base:
        yield base
