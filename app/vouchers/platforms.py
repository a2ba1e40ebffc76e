"""Voucher platform accounts and deal mappings: saving them (secrets encrypted), building the
client of an account (on a connection pool kept per account and process), and testing that the
platform accepts our credentials."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.core import audit
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import Product
from app.orgs.models import Organisation
from app.providers.vouchers import VoucherError
from app.vouchers.models import DealMapping, PlatformAccount

PLATFORM_LABELS = {"meituan": _l("Meituan"), "douyin": _l("Douyin")}

# What each platform calls our id, the store, and the secrets (the form labels follow this table).
PLATFORM_FIELDS: dict[str, dict[str, Any]] = {
    "meituan": {
        "app_id": _l("Developer ID (developerId)"),
        "store_ref": _l("Store account (appShopAccount)"),
        "secrets": {"sign_key": _l("Sign key (signKey)"), "app_auth_token": _l("Store authorisation token (appAuthToken)")},
    },
    "douyin": {
        "app_id": _l("Client key (client_key)"),
        "store_ref": _l("Store POI id (poi_id)"),
        "secrets": {"client_secret": _l("Client secret (client_secret)")},
    },
}
AUDITED = ("platform", "base_url", "app_id", "store_ref", "store_name", "status")


class PlatformConfigError(ValueError):
    def __init__(self, message: str, field: str = "base_url"):
        super().__init__(message)
        self.field = field


def save_account(org: Organisation, platform: str, base_url: str, app_id: str, store_ref: str,
                 store_name: str | None, secrets: dict[str, str], account: PlatformAccount | None = None
                 ) -> PlatformAccount:
    """Create or update an organisation's account on a platform; blank secrets keep the stored ones."""
    if platform not in PLATFORM_FIELDS:
        raise PlatformConfigError(_("Unknown platform."), "platform")
    if not base_url.startswith(("http://", "https://")):
        raise PlatformConfigError(_("The address must start with http:// or https://."))
    if account is None:
        taken = db.session.execute(select(PlatformAccount.id).where(
            PlatformAccount.org_id == org.id, PlatformAccount.platform == platform)).first()
        if taken:
            raise PlatformConfigError(_("This organisation already has an account on this platform."), "platform")
        account = PlatformAccount(org_id=org.id, platform=platform, secrets_enc="")
        db.session.add(account)
        before: dict = {}
        stored: dict[str, str] = {}
    else:
        before = audit.snapshot(account, AUDITED)
        stored = account.secrets
    names = PLATFORM_FIELDS[platform]["secrets"]
    merged = {name: (secrets.get(name) or "").strip() or stored.get(name, "") for name in names}
    missing = [name for name, value in merged.items() if not value]
    if missing:
        raise PlatformConfigError(_("This secret is required."), f"secret_{missing[0]}")
    account.base_url = base_url.strip().rstrip("/")
    account.app_id, account.store_ref = app_id.strip(), store_ref.strip()
    account.store_name = (store_name or "").strip() or None
    changed_secrets = sorted(name for name in names if merged[name] != stored.get(name))
    account.secrets = merged
    db.session.flush()
    after = audit.snapshot(account, AUDITED)
    old, new = audit.changed(before, after)
    if changed_secrets:
        new["secrets_changed"] = changed_secrets  # which ones, never their values
    if new:
        audit.record("platform_account.save", "platform_account", account.id, before=old or None, after=new,
                     org_id=org.id)
    db.session.commit()
    return account


PLATFORM_TIMEOUT_S = 5.0
# An idle connection is dropped after 1.5 s, before a server's own keep-alive limit (gunicorn: 2 s)
# closes it under us: a verify sent on a connection the server is closing would end as "outcome
# unknown". Under load connections are reused long before that.
POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=1.5)
_pools: dict[int, tuple[tuple, httpx.Client]] = {}  # account id -> (what it was built for, its pool)
_pools_lock = threading.Lock()


def http_pool(account: PlatformAccount) -> httpx.Client:
    """The process's connection pool to an account's platform, kept between requests.

    A desk request used to open (and close) a new connection for every platform call; the pool
    keeps connections alive and is shared by the threads of a worker (httpx.Client is
    thread-safe). One pool per account and process (a forked worker builds its own), rebuilt
    when the account's address changes; a replaced pool is left to the garbage collector, as
    another thread may still be using it.
    """
    from app.providers import tls_context

    key = (os.getpid(), account.base_url)
    with _pools_lock:
        built = _pools.get(account.id)
        if built is None or built[0] != key:
            pool = httpx.Client(timeout=PLATFORM_TIMEOUT_S, verify=tls_context(), limits=POOL_LIMITS)
            built = _pools[account.id] = (key, pool)
        return built[1]


def client_for(account: PlatformAccount, transport=None):
    """The platform client configured by an account, on the account's shared connection pool.

    `transport` (tests: the sandbox in-process) gives a client with its own connections instead.
    The client object itself is cheap and made per use; closing it leaves the shared pool open.
    """
    secrets = account.secrets
    http = None if transport is not None or account.id is None else http_pool(account)
    if account.platform == "meituan":
        from app.providers.meituan import MeituanClient

        return MeituanClient(account.base_url, account.app_id, secrets["sign_key"], secrets["app_auth_token"],
                             timeout=PLATFORM_TIMEOUT_S, transport=transport, http=http)
    from app.providers.douyin import DouyinClient

    return DouyinClient(account.base_url, account.app_id, secrets["client_secret"], timeout=PLATFORM_TIMEOUT_S,
                        transport=transport, http=http)


@dataclass
class ConnectionTest:
    ok: bool
    message: str


def check_connection(account: PlatformAccount, transport=None) -> ConnectionTest:
    """Make the platform's cheapest authenticated call and record the outcome on the account."""
    client = client_for(account, transport)
    try:
        client.check_credentials()
        result = ConnectionTest(True, _("Connected: the platform accepted our credentials."))
    except VoucherError as exc:
        result = ConnectionTest(False, f"{exc.message} {exc.detail}".strip())
    account.last_tested_at = utcnow()
    account.last_test_ok = result.ok
    account.last_test_message = result.message[:500]
    db.session.commit()
    return result


def save_mapping(org: Organisation, platform: str, deal_id: str, title: str, product: Product, quantity: int,
                 mapping: DealMapping | None = None) -> DealMapping:
    if product.org_id != org.id and product.org_id not in org.ancestor_ids():
        raise PlatformConfigError(_("The product belongs to another organisation."), "product_id")
    if product.kind not in ("membership_card", "coaching_package", "group_class"):
        raise PlatformConfigError(_("Only membership cards, coaching packages and group classes can be fulfilled at the desk."),
                                  "product_id")
    if mapping is None:
        taken = db.session.execute(select(DealMapping.id).where(
            DealMapping.org_id == org.id, DealMapping.platform == platform, DealMapping.deal_id == deal_id.strip())
        ).first()
        if taken:
            raise PlatformConfigError(_("This deal is already mapped."), "deal_id")
        mapping = DealMapping(org_id=org.id, platform=platform)
        db.session.add(mapping)
    mapping.deal_id, mapping.title = deal_id.strip(), title.strip()
    mapping.product_id, mapping.product, mapping.quantity = product.id, product, quantity
    db.session.flush()
    audit.record("deal_mapping.save", "deal_mapping", mapping.id,
                 after={"platform": platform, "deal_id": mapping.deal_id, "product_id": product.id,
                        "quantity": quantity}, org_id=org.id)
    db.session.commit()
    return mapping


def delete_mapping(mapping: DealMapping) -> None:
    audit.record("deal_mapping.delete", "deal_mapping", mapping.id,
                 before={"deal_id": mapping.deal_id, "product_id": mapping.product_id}, org_id=mapping.org_id)
    db.session.delete(mapping)
    db.session.commit()
