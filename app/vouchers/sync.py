"""Keeping our vouchers in step with the platforms: the order sync, the status sync and the daily
reconciliation of verifications.

Each function works on one platform account, commits its own work, reports progress when it
runs as a job (`jobs.report_progress` is a no-op otherwise) and is safe to run twice:

- `sync_orders` upserts one `Voucher` per platform code (unique (platform, code)), so a second run
  updates what the first created and creates nothing;
- `sync_statuses` only rewrites status, uses left and `last_synced_at`;
- `reconcile` records each difference once, keyed by (account, day, code, kind); a difference that
  has gone away on a later run is marked resolved.

No `request` here: jobs, CLI, views and tests call the same code. `transport` lets tests talk
to the sandboxes in-process (httpx.WSGITransport).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.core import audit
from app.core.timeutil import as_utc, business_today, local_day_range, utcnow
from app.extensions import db
from app.orgs.models import Organisation
from app.providers.vouchers import (PlatformAuthError, PlatformUnavailable, VoucherAlreadyUsed, VoucherError, VoucherExpired,
                                    VoucherRefunded)
from app.vouchers.models import DealMapping, PlatformAccount, ReconciliationItem, Voucher, VoucherVerification
from app.vouchers.platforms import client_for

UNFINISHED_STATUSES = ("unused", "partly_used", "refunding")
MEITUAN_REFUNDING_CODE = "1010"  # Meituan: refund in progress (1011: refund requested, treated as refunded)
BATCH = 1000
LIST_PARALLEL = 4  # pages of a platform's list fetched at once after the first (Meituan)


def _progress(percent: float, message: str) -> None:
    from jobs import report_progress

    report_progress(int(percent), message)


def recent_days(today: date | None = None) -> list[date]:
    """Today and yesterday (Shanghai): an order sync every 15 minutes looks back over both."""
    today = today or business_today()
    return [today - timedelta(days=1), today]


def _insert(model):
    """The dialect's INSERT with ON CONFLICT support (PostgreSQL in production, SQLite embedded)."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _voucher_upsert(ours: set[int], now: datetime):
    """INSERT … ON CONFLICT (platform, code) DO UPDATE of what the platform knows, built once per sync.

    A code another organisation holds is never touched (nor moved): the update's WHERE limits it
    to the account's organisation and those below it. RETURNING gives (code, created) for each row
    written: created when its created_at is this sync's `now` (an update keeps the old one), and a
    code left alone returns nothing. RETURNING is also what lets SQLAlchemy send each batch as one
    multi-row INSERT ("insertmanyvalues"); without it an upsert is sent one row at a time.
    """
    stmt = _insert(Voucher.__table__)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[Voucher.platform, Voucher.code],
        set_=dict(status=excluded.status, uses_total=excluded.uses_total, uses_left=excluded.uses_left,
                  expires_at=excluded.expires_at, order_id=func.coalesce(excluded.order_id, Voucher.order_id),
                  encrypted_code=func.coalesce(excluded.encrypted_code, Voucher.encrypted_code),
                  buyer_phone_masked=func.coalesce(excluded.buyer_phone_masked, Voucher.buyer_phone_masked),
                  product_id=func.coalesce(Voucher.product_id, excluded.product_id),
                  last_synced_at=excluded.last_synced_at, updated_at=excluded.updated_at),
        # Plain comparisons, not IN: an expanding IN cannot run as executemany.
        where=or_(*(Voucher.org_id == org_id for org_id in sorted(ours)))
    ).returning(Voucher.code, (Voucher.created_at == now).label("created"))


def _status_of(status: str | None, uses_left: int, uses_total: int, expires_at: datetime | None) -> str:
    """Our status from a platform's status word and the uses left."""
    if status in ("refunded", "refunding", "expired"):
        return status
    if status == "used" or uses_left <= 0:
        return "used"
    if expires_at is not None and as_utc(expires_at) <= utcnow():
        return "expired"
    return "partly_used" if uses_left < uses_total else "unused"


# --- order sync ----------------------------------------------------------------------------------

def _product_ids(account: PlatformAccount) -> dict[str, int]:
    """deal_id -> product_id for the account's organisation, a mapping nearer the store winning."""
    org = db.session.get(Organisation, account.org_id)
    ancestors = org.ancestor_ids()  # root first, the account's own organisation last
    rank = {org_id: n for n, org_id in enumerate(ancestors)}
    rows = db.session.execute(select(DealMapping.org_id, DealMapping.deal_id, DealMapping.product_id).where(
        DealMapping.platform == account.platform, DealMapping.org_id.in_(ancestors))).all()
    mapped: dict[str, int] = {}
    for org_id, deal_id, product_id in sorted(rows, key=lambda row: rank[row[0]]):
        mapped[deal_id] = product_id
    return mapped


def _meituan_orders(account: PlatformAccount, days: list[date], transport) -> list[dict[str, Any]]:
    from app.providers.meituan import MULTI_USE_BIZ_TYPES, parse_time

    rows = []
    with client_for(account, transport) as client:
        for n, day in enumerate(days):
            for record in client.query_by_date(day, kind="order", parallel=LIST_PARALLEL):
                uses_total = record.uses_total or 1
                uses_left = record.uses_left if record.uses_left is not None else uses_total
                expires_at = parse_time(record.raw.get("receiptEndDate"))
                multi = int(record.raw.get("bizType") or 0) in MULTI_USE_BIZ_TYPES
                rows.append(dict(code=record.code, encrypted_code=None, order_id=record.order_id,
                                 deal_id=record.deal_id, title=record.title[:200],
                                 kind="multi_use" if multi else "single",
                                 buyer_phone_masked=record.mobile_masked,
                                 original_price_fen=record.original_price_fen, paid_price_fen=record.paid_price_fen,
                                 uses_total=uses_total, uses_left=min(uses_left, uses_total), expires_at=expires_at,
                                 status=_status_of(record.status, uses_left, uses_total, expires_at)))
            _progress(10 + 40 * (n + 1) / len(days), f"{day.isoformat()}: {len(rows)}")
    return rows


def _douyin_orders(account: PlatformAccount, days: list[date], transport) -> list[dict[str, Any]]:
    from app.providers.douyin import GROUPON_TIME_CARD

    start, end = local_day_range(min(days), max(days))
    with client_for(account, transport) as client:
        orders = client.query_orders(start, end, poi_id=account.store_ref or None)
    _progress(50, f"{len(orders)}")
    rows = []
    for cert in orders:
        multi = cert.groupon_type == GROUPON_TIME_CARD
        uses_total = max(1, cert.times_count if multi else 1)
        uses_left = max(0, uses_total - (cert.times_used if multi else (1 if cert.status == "used" else 0)))
        rows.append(dict(code=cert.code, encrypted_code=cert.encrypted_code, order_id=cert.order_id,
                         deal_id=cert.sku_id, title=cert.title[:200], kind="multi_use" if multi else "single",
                         buyer_phone_masked=cert.buyer_phone_masked, original_price_fen=cert.original_price_fen,
                         paid_price_fen=cert.paid_price_fen, uses_total=uses_total, uses_left=uses_left,
                         expires_at=cert.expires_at,
                         status=_status_of(cert.status, uses_left, uses_total, cert.expires_at)))
    return rows


@dataclass
class OrderSyncResult:
    fetched: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0  # codes already held by another organisation

    def as_dict(self) -> dict[str, int]:
        return dict(fetched=self.fetched, created=self.created, updated=self.updated, skipped=self.skipped)


def sync_orders(account: PlatformAccount, days: Iterable[date] | None = None, transport=None) -> OrderSyncResult:
    """Bring the platform's orders of `days` (default: yesterday and today) in as vouchers.

    A code already known in the account's organisation (or a store below it) is updated (status,
    uses, expiry) but keeps its organisation, product, member and source; a code another
    organisation holds is left alone. Raises VoucherError when the
    platform cannot be asked; nothing is written then.
    """
    days = sorted(set(days or recent_days()))
    _progress(5, f"{account.platform}: {days[0].isoformat()}..{days[-1].isoformat()}")
    fetch = _meituan_orders if account.platform == "meituan" else _douyin_orders
    rows = [row for row in fetch(account, days, transport) if row["code"]]
    rows = list({row["code"]: row for row in rows}.values())  # one row per code (a list may repeat one)
    products = _product_ids(account)
    # Codes already held in the account's organisation or below it (a store's desk saw it first) are ours.
    org = db.session.get(Organisation, account.org_id)
    ours = set(db.session.execute(select(Organisation.id).where(
        Organisation.path.startswith(org.path, autoescape=True))).scalars())
    result = OrderSyncResult(fetched=len(rows))
    now = utcnow()
    upsert = _voucher_upsert(ours, now)
    connection = db.session.connection()
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        values = [dict(row, platform=account.platform, org_id=account.org_id, source="sync",
                       product_id=products.get(row["deal_id"]), last_synced_at=now, created_at=now, updated_at=now)
                  for row in chunk]
        written = connection.execute(upsert, values).all()  # one multi-row statement per batch
        created = sum(1 for _, new in written if new)
        result.created += created
        result.updated += len(written) - created
        result.skipped += len(chunk) - len(written)
        _progress(50 + 45 * min(1.0, (start + len(chunk)) / len(rows)), f"{start + len(chunk)} / {len(rows)}")
    audit.record("voucher.sync_orders", "platform_account", account.id,
                 after=dict(result.as_dict(), days=[d.isoformat() for d in days]), org_id=account.org_id)
    db.session.commit()
    return result


# --- status sync ---------------------------------------------------------------------------------

@dataclass
class StatusSyncResult:
    checked: int = 0
    changed: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(checked=self.checked, changed=self.changed, failed=self.failed)


def account_of(voucher: Voucher) -> PlatformAccount | None:
    """The active account a voucher is checked through: its organisation's, else the nearest ancestor's."""
    org = db.session.get(Organisation, voucher.org_id)
    ancestors = org.ancestor_ids()
    accounts = {a.org_id: a for a in db.session.execute(select(PlatformAccount).where(
        PlatformAccount.platform == voucher.platform, PlatformAccount.status == "active",
        PlatformAccount.org_id.in_(ancestors))).scalars()}
    return next((accounts[org_id] for org_id in reversed(ancestors) if org_id in accounts), None)


def _meituan_state(client, voucher: Voucher) -> dict[str, Any] | None:
    """What Meituan says of the code now, as columns of ours (None: it cannot tell)."""
    try:
        preview = client.prepare(voucher.code)
    except VoucherAlreadyUsed:
        return dict(status="used", uses_left=0)
    except VoucherExpired:
        return dict(status="expired")
    except VoucherRefunded as exc:
        return dict(status="refunding" if str(exc.platform_code) == MEITUAN_REFUNDING_CODE else "refunded")
    uses_left = min(preview.uses_left, voucher.uses_total)
    return dict(status=_status_of(None, uses_left, voucher.uses_total, preview.expires_at), uses_left=uses_left,
                expires_at=preview.expires_at)


def _douyin_state(client, voucher: Voucher) -> dict[str, Any] | None:
    encrypted = voucher.encrypted_code
    if not encrypted:
        try:
            encrypted = client.prepare(code=voucher.code).encrypted_code
        except VoucherAlreadyUsed:
            return dict(status="used", uses_left=0)
        except VoucherExpired:
            return dict(status="expired")
        except VoucherRefunded:
            return dict(status="refunded")
    cert = client.get(encrypted)
    total = max(1, cert.times_count)
    uses_left = max(0, min(voucher.uses_total, total - cert.times_used))
    if cert.status == "used":
        uses_left = 0
    return dict(encrypted_code=encrypted, uses_left=uses_left,
                status=_status_of(cert.status, uses_left, voucher.uses_total, None))


def sync_statuses(vouchers: Iterable[Voucher], transport=None) -> StatusSyncResult:
    """Ask the platform about each unfinished voucher (unused, partly used, refund in progress) and
    record refunds, expiries and uses made elsewhere. A voucher the platform cannot tell about is
    counted as failed and left as it was; a platform that is down stops the run (raised)."""
    todo = [v for v in vouchers if v.status in UNFINISHED_STATUSES]
    result = StatusSyncResult()
    clients: dict[int, Any] = {}
    accounts: dict[tuple[int, str], PlatformAccount | None] = {}
    try:
        for n, voucher in enumerate(todo, 1):
            key = (voucher.org_id, voucher.platform)
            if key not in accounts:
                accounts[key] = account_of(voucher)
            account = accounts[key]
            if account is None:
                result.failed += 1
                continue
            if account.id not in clients:
                clients[account.id] = client_for(account, transport)
            client = clients[account.id]
            result.checked += 1
            try:
                state = (_meituan_state if voucher.platform == "meituan" else _douyin_state)(client, voucher)
            except (PlatformUnavailable, PlatformAuthError):
                raise  # asking about the next voucher would fail the same way
            except VoucherError:
                result.failed += 1
                state = None
            if state:
                before = dict(status=voucher.status, uses_left=voucher.uses_left)
                for name, value in state.items():
                    setattr(voucher, name, value)
                if (voucher.status, voucher.uses_left) != (before["status"], before["uses_left"]):
                    result.changed += 1
                    audit.record("voucher.status_synced", "voucher", voucher.id, before=before,
                                 after=dict(status=voucher.status, uses_left=voucher.uses_left), org_id=voucher.org_id)
            voucher.last_synced_at = utcnow()
            db.session.commit()
            _progress(100 * n / len(todo), f"{n} / {len(todo)}")
    finally:
        for client in clients.values():
            client.close()
    return result


def unfinished_vouchers(account: PlatformAccount) -> list[Voucher]:
    """The account's vouchers whose state may still change on the platform."""
    return list(db.session.execute(select(Voucher).where(
        Voucher.org_id == account.org_id, Voucher.platform == account.platform,
        Voucher.status.in_(UNFINISHED_STATUSES)).order_by(Voucher.id)).scalars())


# --- reconciliation ------------------------------------------------------------------------------

@dataclass
class ReconcileResult:
    platform_codes: int = 0
    local_codes: int = 0
    differences: int = 0
    new: int = 0
    resolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(platform_codes=self.platform_codes, local_codes=self.local_codes, differences=self.differences,
                    new=self.new, resolved=self.resolved)


def platform_verified(account: PlatformAccount, day: date, transport=None) -> dict[str, int]:
    """code -> uses the platform lists as verified on a Shanghai day (reversed / cancelled ones left out)."""
    counts: dict[str, int] = defaultdict(int)
    with client_for(account, transport) as client:
        if account.platform == "meituan":
            for record in client.query_by_date(day, kind="consumed", parallel=LIST_PARALLEL):
                if not record.raw.get("reversed"):
                    counts[record.code] += record.count or 1
        else:
            start, end = local_day_range(day, day)
            for record in client.query_verify_records(start, end, poi_id=account.store_ref or None):
                if not record.cancelled:
                    counts[record.code] += 1
    return dict(counts)


def local_verified(account: PlatformAccount, day: date) -> dict[str, int]:
    """code -> uses our verifications (status verified) recorded on a Shanghai day, in the account's
    organisation and below it."""
    org = db.session.get(Organisation, account.org_id)
    start, end = local_day_range(day, day)
    rows = db.session.execute(
        select(Voucher.code, func.sum(VoucherVerification.count))
        .join(Voucher, Voucher.id == VoucherVerification.voucher_id)
        .join(Organisation, Organisation.id == VoucherVerification.org_id)
        .where(VoucherVerification.status == "verified", Voucher.platform == account.platform,
               Organisation.path.startswith(org.path, autoescape=True),
               VoucherVerification.verified_at >= start, VoucherVerification.verified_at < end)
        .group_by(Voucher.code)).all()
    return {code: int(total) for code, total in rows}


def reconcile(account: PlatformAccount, day: date, transport=None) -> ReconcileResult:
    """Compare the platform's verified list of `day` with our verifications and record each difference."""
    _progress(5, f"{account.platform} {day.isoformat()}")
    theirs = platform_verified(account, day, transport)
    _progress(50, f"{len(theirs)}")
    ours = local_verified(account, day)
    result = ReconcileResult(platform_codes=len(theirs), local_codes=len(ours))
    found: list[dict[str, Any]] = []
    for code in sorted(set(theirs) | set(ours)):
        platform_count, local_count = theirs.get(code, 0), ours.get(code, 0)
        if platform_count == local_count:
            continue
        kind = ("platform_only" if not local_count else "local_only" if not platform_count else "count_mismatch")
        found.append(dict(code=code, kind=kind, platform_count=platform_count, local_count=local_count))
    result.differences = len(found)
    voucher_ids = dict(db.session.execute(select(Voucher.code, Voucher.id).where(
        Voucher.platform == account.platform, Voucher.code.in_([f["code"] for f in found]))).all()) if found else {}
    now = utcnow()
    for start in range(0, len(found), BATCH):
        chunk = found[start:start + BATCH]
        stmt = _insert(ReconciliationItem).values([
            dict(item, org_id=account.org_id, account_id=account.id, platform=account.platform, day=day,
                 voucher_id=voucher_ids.get(item["code"]), status="open", created_at=now, updated_at=now)
            for item in chunk])
        stmt = stmt.on_conflict_do_nothing(index_elements=["account_id", "day", "code", "kind"])
        result.new += db.session.execute(stmt).rowcount or 0
    # A difference seen before that is gone now (a late sync, an undo) is resolved, not deleted.
    keys = {(f["code"], f["kind"]) for f in found}
    stale = [item for item in db.session.execute(select(ReconciliationItem).where(
        ReconciliationItem.account_id == account.id, ReconciliationItem.day == day,
        ReconciliationItem.status == "open")).scalars() if (item.code, item.kind) not in keys]
    for item in stale:
        item.status = "resolved"
    result.resolved = len(stale)
    audit.record("voucher.reconcile", "platform_account", account.id,
                 after=dict(result.as_dict(), day=day.isoformat()), org_id=account.org_id)
    db.session.commit()
    _progress(100, f"{result.differences}")
    return result


def active_accounts(account_id: int | None = None, org: Organisation | None = None,
                    platform: str | None = None) -> list[PlatformAccount]:
    """Active accounts: all, the one named, those of `org` and the organisations below it, of one platform."""
    stmt = select(PlatformAccount).where(PlatformAccount.status == "active").order_by(PlatformAccount.id)
    if account_id is not None:
        stmt = stmt.where(PlatformAccount.id == account_id)
    if org is not None:
        stmt = stmt.join(Organisation, Organisation.id == PlatformAccount.org_id).where(
            Organisation.path.startswith(org.path, autoescape=True))
    if platform is not None:
        stmt = stmt.where(PlatformAccount.platform == platform)
    return list(db.session.execute(stmt).scalars())


def account_key(account: PlatformAccount) -> str:
    return f"{account.platform}#{account.id}"


@dataclass
class AccountsRun:
    """What a run over several accounts did: each account's result, or why it failed."""

    results: dict[str, dict]
    errors: dict[str, str]


def for_each_account(accounts: Iterable[PlatformAccount], work) -> AccountsRun:
    """`work(account)` for each account; a platform that fails does not stop the others."""
    run = AccountsRun({}, {})
    for account in accounts:
        key = account_key(account)
        try:
            run.results[key] = work(account)
        except VoucherError as exc:
            db.session.rollback()
            run.errors[key] = f"{type(exc).__name__}: {exc.detail or exc.message}"
    return run
