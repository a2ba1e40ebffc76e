"""Order sync, status sync and reconciliation against the Meituan and Douyin sandboxes (in process
through httpx.WSGITransport; the job test uses a live server thread and a real RQ worker)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from rq.worker import SimpleWorker
from sqlalchemy import func, select, update

import jobs
from app.core.jobruns import JobRun
from app.core.timeutil import business_today, utcnow
from app.extensions import db
from app.sandbox import douyin as dy_sandbox
from app.sandbox import meituan as mt_sandbox
from app.sandbox.douyin_models import SandboxDouyinCertificate
from app.sandbox.meituan_models import SandboxMeituanReceipt
from app.vouchers import sync
from app.vouchers.models import DealMapping, PlatformAccount, ReconciliationItem, Voucher, VoucherVerification
from app.vouchers.platforms import client_for
from tests.helpers import serving

MT_BASE = "http://sandbox.test/sandbox/meituan"
DY_BASE = "http://sandbox.test/sandbox/douyin"
POI = "poi-gym-1"


def meituan_account(org, base_url: str = MT_BASE, token: str = mt_sandbox.SANDBOX_STORE_TOKEN) -> PlatformAccount:
    account = PlatformAccount(org_id=org.id, platform="meituan", base_url=base_url,
                              app_id=mt_sandbox.SANDBOX_DEVELOPER_ID, store_ref="shop-1", store_name="一店",
                              secrets_enc="")
    account.secrets = {"sign_key": mt_sandbox.SANDBOX_SIGN_KEY, "app_auth_token": token}
    db.session.add(account)
    db.session.commit()
    return account


def douyin_account(org, base_url: str = DY_BASE) -> PlatformAccount:
    account = PlatformAccount(org_id=org.id, platform="douyin", base_url=base_url,
                              app_id=dy_sandbox.SANDBOX_CLIENT_KEY, store_ref=POI, store_name="一店", secrets_enc="")
    account.secrets = {"client_secret": dy_sandbox.SANDBOX_CLIENT_SECRET}
    db.session.add(account)
    db.session.commit()
    return account


def add_voucher(org, code: str, platform: str = "meituan", status: str = "unused", **values) -> Voucher:
    values.setdefault("deal_id", "710001")
    values.setdefault("title", "健身月卡 30天畅练")
    values.setdefault("paid_price_fen", 19900)
    voucher = Voucher(org_id=org.id, platform=platform, code=code, status=status, **values)
    db.session.add(voucher)
    db.session.commit()
    return voucher


def add_verification(voucher: Voucher, count: int = 1, status: str = "verified", verified_at=None,
                     amount_fen: int | None = None, org=None) -> VoucherVerification:
    verification = VoucherVerification(org_id=(org.id if org else voucher.org_id), voucher_id=voucher.id,
                                       request_id=uuid.uuid4().hex, status=status, count=count,
                                       verified_at=verified_at or utcnow(),
                                       amount_fen=voucher.paid_price_fen if amount_fen is None else amount_fen)
    db.session.add(verification)
    db.session.commit()
    return verification


@pytest.fixture
def transport(app):
    return httpx.WSGITransport(app=app)


@pytest.fixture
def gym(make):
    merchant = make.org(kind="merchant", code="GYM", name="健身")
    store = make.org(kind="store", parent=merchant, code="GYM-1", name="一店")
    other = make.org(kind="merchant", code="OTHER", name="别家")
    card = make.product(merchant, name="月卡", kind="membership_card",
                        attributes={"duration_value": 1, "duration_unit": "month"})
    return {"merchant": merchant, "store": store, "other": other, "card": card}


@pytest.fixture
def mt_deals(app):
    return {deal.deal_id: deal for deal in mt_sandbox.seed_sandbox_deals()}


@pytest.fixture
def dy_skus(app):
    return {sku.sku_id: sku for sku in dy_sandbox.seed_sandbox_skus()}


def vouchers_of(platform: str) -> dict[str, Voucher]:
    db.session.expire_all()
    return {v.code: v for v in db.session.execute(select(Voucher).where(Voucher.platform == platform)).scalars()}


# --- order sync ------------------------------------------------------------------------------------

def test_meituan_order_sync_creates_each_voucher_once_and_maps_products(gym, mt_deals, transport):
    account = meituan_account(gym["store"])
    db.session.add(DealMapping(org_id=gym["merchant"].id, platform="meituan", deal_id="710001", title="月卡团购",
                               product_id=gym["card"].id, quantity=1))
    db.session.commit()
    month = mt_sandbox.buy_receipt(mt_deals[710001], mobile="13800138000")
    visits = mt_sandbox.buy_receipt(mt_deals[710003])
    yesterday = mt_sandbox.buy_receipt(mt_deals[710005], bought_at=utcnow() - timedelta(days=1))
    old = mt_sandbox.buy_receipt(mt_deals[710005], bought_at=utcnow() - timedelta(days=3))

    first = sync.sync_orders(account, transport=transport)
    assert (first.fetched, first.created, first.updated) == (3, 3, 0)
    found = vouchers_of("meituan")
    assert set(found) == {month.code, visits.code, yesterday.code}  # today and yesterday, not older
    assert old.code not in found
    v = found[month.code]
    assert (v.org_id, v.source, v.product_id, v.kind, v.status) == (gym["store"].id, "sync", gym["card"].id, "single", "unused")
    assert (v.paid_price_fen, v.original_price_fen, v.buyer_phone_masked) == (19900, 29900, "138****8000")
    assert v.expires_at is not None and v.order_id == month.order_id
    multi = found[visits.code]
    assert (multi.kind, multi.uses_total, multi.uses_left, multi.product_id) == ("multi_use", 20, 20, None)

    second = sync.sync_orders(account, transport=transport)
    assert (second.created, second.updated) == (0, 3)
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 3


def test_order_sync_updates_known_codes_without_taking_over_desk_details(gym, mt_deals, transport, make):
    account = meituan_account(gym["store"])
    receipt = mt_sandbox.buy_receipt(mt_deals[710003])
    member = make.member(gym["store"])
    add_voucher(gym["store"], receipt.code, deal_id="710003", title="健身20次卡", kind="multi_use", uses_total=20,
                uses_left=20, source="desk", member_id=member.id)
    # Two uses made at the platform since we last looked.
    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == receipt.id).values(uses_left=18))
    db.session.commit()
    result = sync.sync_orders(account, transport=transport)
    assert (result.created, result.updated) == (0, 1)
    v = vouchers_of("meituan")[receipt.code]
    assert (v.source, v.member_id, v.uses_left, v.status) == ("desk", member.id, 18, "partly_used")


def test_order_sync_leaves_another_organisations_code_alone(gym, mt_deals, transport):
    receipt = mt_sandbox.buy_receipt(mt_deals[710001])
    add_voucher(gym["other"], receipt.code, status="used", uses_left=0)
    account = meituan_account(gym["store"])
    result = sync.sync_orders(account, transport=transport)
    assert (result.created, result.skipped) == (0, 1)
    v = vouchers_of("meituan")[receipt.code]
    assert (v.org_id, v.status) == (gym["other"].id, "used")


def test_a_merchant_account_updates_a_code_its_store_saw_first_and_keeps_it_there(gym, mt_deals, transport):
    account = meituan_account(gym["merchant"])
    receipt = mt_sandbox.buy_receipt(mt_deals[710001])
    add_voucher(gym["store"], receipt.code, source="desk")
    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == receipt.id)
                       .values(status="refunded"))
    db.session.commit()
    result = sync.sync_orders(account, transport=transport)
    assert (result.created, result.updated, result.skipped) == (0, 1, 0)
    v = vouchers_of("meituan")[receipt.code]
    assert (v.org_id, v.status, v.source) == (gym["store"].id, "refunded", "desk")


def test_douyin_order_sync_uses_the_order_query_and_is_idempotent(gym, dy_skus, transport):
    account = douyin_account(gym["store"])
    db.session.add(DealMapping(org_id=gym["store"].id, platform="douyin", deal_id="DYSKU1001", title="月卡",
                               product_id=gym["card"].id, quantity=1))
    db.session.commit()
    here = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"], buyer_phone="13900139000", poi_id=POI)
    anywhere = dy_sandbox.buy_certificate(dy_skus["DYSKU1003"])
    elsewhere = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"], poi_id="poi-someone-else")

    assert sync.sync_orders(account, transport=transport).created == 2
    found = vouchers_of("douyin")
    assert set(found) == {here.code, anywhere.code}
    assert elsewhere.code not in found
    v = found[here.code]
    assert (v.encrypted_code, v.product_id, v.paid_price_fen, v.buyer_phone_masked) == (
        here.encrypted_code, gym["card"].id, 29900, "139****9000")
    card = found[anywhere.code]
    assert (card.kind, card.uses_total, card.uses_left) == ("multi_use", 20, 20)
    again = sync.sync_orders(account, transport=transport)
    assert (again.created, again.updated) == (0, 2)
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 2


def test_order_sync_raises_when_the_platform_is_down_and_writes_nothing(gym, mt_deals, transport):
    from app.providers.vouchers import PlatformUnavailable

    account = meituan_account(gym["store"])
    mt_sandbox.buy_receipt(mt_deals[710001])
    mt_sandbox.set_misbehaviour("5xx", times=-1)
    try:
        with pytest.raises(PlatformUnavailable):
            sync.sync_orders(account, transport=transport)
    finally:
        mt_sandbox.set_misbehaviour(None)
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 0


# --- status sync -----------------------------------------------------------------------------------

def test_status_sync_picks_up_a_meituan_refund_and_uses_made_elsewhere(gym, mt_deals, transport):
    account = meituan_account(gym["store"])
    refunded = mt_sandbox.buy_receipt(mt_deals[710001])
    refunding = mt_sandbox.buy_receipt(mt_deals[710001])
    used = mt_sandbox.buy_receipt(mt_deals[710003])
    untouched = mt_sandbox.buy_receipt(mt_deals[710001])
    sync.sync_orders(account, transport=transport)
    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == refunded.id).values(status="refunded"))
    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == refunding.id).values(status="refunding"))
    db.session.commit()
    with client_for(account, transport) as client:
        client.consume(used.code, 3, uuid.uuid4().hex, "desk", "前台")

    result = sync.sync_statuses(sync.unfinished_vouchers(account), transport=transport)
    assert (result.checked, result.changed, result.failed) == (4, 3, 0)
    found = vouchers_of("meituan")
    assert found[refunded.code].status == "refunded"
    assert found[refunding.code].status == "refunding"
    assert (found[used.code].status, found[used.code].uses_left) == ("partly_used", 17)
    assert found[untouched.code].status == "unused" and found[untouched.code].last_synced_at is not None
    # Finished vouchers are not asked about again; the one still refunding is.
    assert [v.code for v in sync.unfinished_vouchers(account)] == sorted(
        [refunding.code, used.code, untouched.code], key=lambda c: found[c].id)


def test_status_sync_picks_up_a_douyin_refund(gym, dy_skus, transport):
    account = douyin_account(gym["store"])
    cert = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"])
    other = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"])
    sync.sync_orders(account, transport=transport)
    db.session.expire_all()
    assert dy_sandbox.refund_certificate(db.session.get(SandboxDouyinCertificate, cert.id))
    # A voucher seen at the desk only (no encrypted code yet) is looked up by its code first.
    desk = dy_sandbox.buy_certificate(dy_skus["DYSKU1005"], poi_id="poi-not-listed")
    add_voucher(gym["store"], desk.code, platform="douyin", deal_id="DYSKU1005")
    db.session.expire_all()
    assert dy_sandbox.refund_certificate(db.session.get(SandboxDouyinCertificate, desk.id))

    result = sync.sync_statuses(sync.unfinished_vouchers(account), transport=transport)
    assert (result.checked, result.changed) == (3, 2)
    found = vouchers_of("douyin")
    assert found[cert.code].status == "refunded"
    assert found[desk.code].status == "refunded"
    assert found[other.code].status == "unused"


# --- reconciliation --------------------------------------------------------------------------------

def test_meituan_reconciliation_lists_every_difference_once(gym, mt_deals, transport):
    account = meituan_account(gym["store"])
    platform_only = mt_sandbox.buy_receipt(mt_deals[710001])
    local_only = mt_sandbox.buy_receipt(mt_deals[710001])
    both = mt_sandbox.buy_receipt(mt_deals[710001])
    mismatch = mt_sandbox.buy_receipt(mt_deals[710003])
    with client_for(account, transport) as client:
        client.consume(platform_only.code, 1, uuid.uuid4().hex, "desk", "前台")
        client.consume(both.code, 1, uuid.uuid4().hex, "desk", "前台")
        client.consume(mismatch.code, 2, uuid.uuid4().hex, "desk", "前台")
    add_verification(add_voucher(gym["store"], local_only.code))
    add_verification(add_voucher(gym["store"], both.code))
    add_verification(add_voucher(gym["store"], mismatch.code, deal_id="710003", kind="multi_use", uses_total=20,
                                 uses_left=19), count=1)
    undone = add_voucher(gym["store"], "000000000999")
    add_verification(undone, status="undone")  # an undone verification is not a verification

    today = business_today()
    result = sync.reconcile(account, today, transport=transport)
    assert (result.differences, result.new) == (3, 3)
    items = {i.code: i for i in db.session.execute(select(ReconciliationItem)).scalars()}
    assert set(items) == {platform_only.code, local_only.code, mismatch.code}
    assert (items[platform_only.code].kind, items[platform_only.code].platform_count,
            items[platform_only.code].local_count) == ("platform_only", 1, 0)
    assert (items[local_only.code].kind, items[local_only.code].voucher_id is not None) == ("local_only", True)
    assert (items[mismatch.code].kind, items[mismatch.code].platform_count, items[mismatch.code].local_count) == (
        "count_mismatch", 2, 1)
    assert all(i.org_id == gym["store"].id and i.day == today and i.status == "open" for i in items.values())

    again = sync.reconcile(account, today, transport=transport)
    assert (again.differences, again.new) == (3, 0)
    assert db.session.scalar(select(func.count()).select_from(ReconciliationItem)) == 3


def test_a_difference_that_went_away_is_resolved_on_the_next_run(gym, mt_deals, transport):
    account = meituan_account(gym["store"])
    receipt = mt_sandbox.buy_receipt(mt_deals[710001])
    with client_for(account, transport) as client:
        client.consume(receipt.code, 1, uuid.uuid4().hex, "desk", "前台")
    sync.reconcile(account, business_today(), transport=transport)
    add_verification(add_voucher(gym["store"], receipt.code))  # our record of it turns up
    result = sync.reconcile(account, business_today(), transport=transport)
    assert (result.differences, result.resolved) == (0, 1)
    db.session.expire_all()
    assert db.session.execute(select(ReconciliationItem.status)).scalar_one() == "resolved"


def test_douyin_reconciliation_uses_the_verify_records(gym, dy_skus, transport):
    account = douyin_account(gym["store"])
    verified_there = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"])
    cancelled = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"])
    with client_for(account, transport) as client:
        for cert in (verified_there, cancelled):
            preview = client.prepare(code=cert.code)
            done = client.verify(preview.verify_token, POI, preview.encrypted_code)
            if cert is cancelled:
                client.cancel(done.verify_id, done.certificate_id)
    local = add_voucher(gym["store"], "888800001111", platform="douyin", deal_id="DYSKU1001")
    add_verification(local)
    result = sync.reconcile(account, business_today(), transport=transport)
    assert (result.platform_codes, result.differences) == (1, 2)
    kinds = dict(db.session.execute(select(ReconciliationItem.code, ReconciliationItem.kind)).all())
    assert kinds == {verified_there.code: "platform_only", local.code: "local_only"}
    assert sync.reconcile(account, business_today(), transport=transport).new == 0


# --- the jobs --------------------------------------------------------------------------------------

@pytest.fixture
def live_base(app):
    with serving(app) as base:
        yield base


def run_worker(app) -> None:
    SimpleWorker([jobs.queue(name) for name in jobs.QUEUES], connection=app.extensions["redis"]).work(
        burst=True, logging_level="WARNING")


def test_jobs_sync_and_reconcile_with_progress_and_twice_is_harmless(app, gym, mt_deals, live_base):
    from jobs.vouchers import reconcile_vouchers, sync_voucher_orders, sync_voucher_statuses

    account = meituan_account(gym["store"], base_url=live_base + "/sandbox/meituan")
    receipt = mt_sandbox.buy_receipt(mt_deals[710001])
    other = mt_sandbox.buy_receipt(mt_deals[710001])
    runs = [jobs.start_job(sync_voucher_orders, account.id, label="orders", org_id=gym["store"].id),
            jobs.start_job(sync_voucher_orders, label="orders, all accounts")]
    run_worker(app)
    db.session.expire_all()
    for run in runs:
        run = db.session.get(JobRun, run.id)
        assert (run.status, run.progress) == ("succeeded", 100), run.error
        assert run.message and run.result["results"][f"meituan#{account.id}"]["fetched"] == 2
    assert set(vouchers_of("meituan")) == {receipt.code, other.code}

    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == receipt.id).values(status="refunded"))
    db.session.commit()
    with client_for(account) as client:
        client.consume(other.code, 1, uuid.uuid4().hex, "desk", "前台")
    today = business_today().isoformat()
    status_run = jobs.start_job(sync_voucher_statuses, account.id, label="statuses")
    recon_runs = [jobs.start_job(reconcile_vouchers, account.id, day=today, label="reconcile", queue_name="reports")
                  for _ in range(2)]
    run_worker(app)
    db.session.expire_all()
    status_run = db.session.get(JobRun, status_run.id)
    assert status_run.status == "succeeded", status_run.error
    assert status_run.result["results"][f"meituan#{account.id}"]["changed"] == 2
    assert vouchers_of("meituan")[receipt.code].status == "refunded"
    for run in recon_runs:
        assert db.session.get(JobRun, run.id).status == "succeeded"
    assert db.session.execute(select(ReconciliationItem.code, ReconciliationItem.kind)).all() == [
        (other.code, "platform_only")]


def test_a_job_fails_visibly_when_every_account_fails(app, gym, mt_deals, live_base):
    from jobs.vouchers import sync_voucher_orders

    account = meituan_account(gym["store"], base_url=live_base + "/sandbox/meituan", token="")
    run = jobs.start_job(sync_voucher_orders, account.id, label="orders")
    run_worker(app)
    db.session.expire_all()
    run = db.session.get(JobRun, run.id)
    assert run.status == "failed" and f"meituan#{account.id}" in run.error


def test_douyin_assumed_list_calls_page_through_everything(gym, dy_skus, transport):
    from app.core.timeutil import local_day_range

    account = douyin_account(gym["store"])
    bought = [dy_sandbox.buy_certificate(dy_skus["DYSKU1001"]) for _ in range(3)]
    start, end = local_day_range(business_today(), business_today())
    with client_for(account, transport) as client:
        orders = client.query_orders(start, end, poi_id=POI, page_size=2)
        assert sorted(o.code for o in orders) == sorted(c.code for c in bought)
        assert {o.status for o in orders} == {"unused"}
        for cert in bought:
            preview = client.prepare(code=cert.code)
            client.verify(preview.verify_token, POI, preview.encrypted_code)
        records = client.query_verify_records(start, end, poi_id=POI, page_size=2)
        assert sorted(r.code for r in records) == sorted(c.code for c in bought)
        assert client.query_verify_records(start, end, poi_id="poi-elsewhere") == []
        assert client.query_orders(end, end + timedelta(days=1)) == []
