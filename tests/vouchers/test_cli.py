"""`flask vouchers sync | sync-statuses | reconcile` (Flask's CliRunner) against the sandboxes,
served by a live server thread, as the commands run in production (real HTTP)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.core.audit import AuditEvent
from app.core.timeutil import business_today, utcnow
from app.extensions import db
from app.sandbox import douyin as dy_sandbox
from app.sandbox import meituan as mt_sandbox
from app.sandbox.meituan_models import SandboxMeituanReceipt
from app.vouchers.models import ReconciliationItem, Voucher
from app.vouchers.platforms import client_for
from tests.vouchers.test_sync import (add_verification, add_voucher, douyin_account, dy_skus,  # noqa: F401 (fixtures)
                                      gym, meituan_account, mt_deals)


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["vouchers", *args])


def codes_of(platform: str) -> set[str]:
    db.session.expire_all()
    return set(db.session.execute(select(Voucher.code).where(Voucher.platform == platform)).scalars())


def test_sync_brings_the_orders_in_once_and_is_audited_as_the_cli(cli, gym, mt_deals, desk_live_sandbox):
    account = meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    bought = {mt_sandbox.buy_receipt(mt_deals[710001]).code for _ in range(3)}

    first = cli("sync", "--org", "GYM")
    assert first.exit_code == 0, first.output
    assert f"meituan#{account.id} (一店): fetched=3 created=3 updated=0 skipped=0" in first.output
    assert codes_of("meituan") == bought

    again = cli("sync", "--org", "GYM-1", "--platform", "meituan")
    assert again.exit_code == 0, again.output
    assert "fetched=3 created=0 updated=3" in again.output
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 3
    actors = db.session.execute(select(AuditEvent.actor_name).where(AuditEvent.action == "voucher.sync_orders")
                                ).scalars().all()
    assert actors == ["cli", "cli"]


def test_sync_days_reaches_back_further(cli, gym, mt_deals, desk_live_sandbox):
    meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    today = mt_sandbox.buy_receipt(mt_deals[710001]).code
    older = mt_sandbox.buy_receipt(mt_deals[710001], bought_at=utcnow() - timedelta(days=4)).code

    assert cli("sync").exit_code == 0  # default: yesterday and today
    assert codes_of("meituan") == {today}
    result = cli("sync", "--days", "5")
    assert result.exit_code == 0, result.output
    assert codes_of("meituan") == {today, older}


def test_sync_covers_both_platforms_and_only_the_organisation_asked_for(cli, gym, mt_deals, dy_skus, desk_live_sandbox):
    meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    douyin_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/douyin")
    meituan_account(gym["other"], base_url=desk_live_sandbox + "/sandbox/meituan", token="other-store")
    mt_code = mt_sandbox.buy_receipt(mt_deals[710001], store_token=mt_sandbox.SANDBOX_STORE_TOKEN).code
    other_code = mt_sandbox.buy_receipt(mt_deals[710001], store_token="other-store").code
    dy_code = dy_sandbox.buy_certificate(dy_skus["DYSKU1001"]).code

    result = cli("sync", "--org", "GYM")
    assert result.exit_code == 0, result.output
    assert result.output.count("created=1") == 2  # its Meituan and Douyin accounts, not the other merchant's
    assert codes_of("meituan") == {mt_code} and codes_of("douyin") == {dy_code}
    assert cli("sync", "--org", "OTHER").exit_code == 0
    assert codes_of("meituan") == {mt_code, other_code}


def test_unknown_organisation_and_no_account_are_clear_errors(cli, gym):
    unknown = cli("sync", "--org", "NOPE")
    assert unknown.exit_code == 2 and "no organisation with code 'NOPE'" in unknown.output
    none = cli("sync-statuses", "--org", "OTHER")
    assert none.exit_code == 1 and "no active voucher platform account under OTHER" in none.output
    bad_days = cli("sync", "--days", "0")
    assert bad_days.exit_code == 2


def test_a_failing_platform_exits_1_and_the_others_still_run(cli, gym, mt_deals, dy_skus, desk_live_sandbox):
    meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    dy = douyin_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/douyin")
    mt_sandbox.buy_receipt(mt_deals[710001])
    dy_sandbox.set_misbehave(status=503)
    try:
        result = cli("sync")
    finally:
        dy_sandbox.clear_misbehave()
    assert result.exit_code == 1
    assert f"douyin#{dy.id} (一店): FAILED PlatformUnavailable" in result.output
    assert "fetched=1 created=1" in result.output
    assert len(codes_of("meituan")) == 1


def test_sync_statuses_picks_up_a_refund(cli, gym, mt_deals, desk_live_sandbox):
    meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    refunded = mt_sandbox.buy_receipt(mt_deals[710001])
    kept = mt_sandbox.buy_receipt(mt_deals[710001])
    assert cli("sync").exit_code == 0
    db.session.execute(update(SandboxMeituanReceipt).where(SandboxMeituanReceipt.id == refunded.id)
                       .values(status="refunded"))
    db.session.commit()

    result = cli("sync-statuses", "--platform", "meituan")
    assert result.exit_code == 0, result.output
    assert "checked=2 changed=1 failed=0" in result.output
    db.session.expire_all()
    statuses = dict(db.session.execute(select(Voucher.code, Voucher.status)).all())
    assert statuses == {refunded.code: "refunded", kept.code: "unused"}


def test_reconcile_a_day_lists_each_difference_once(cli, gym, mt_deals, desk_live_sandbox):
    account = meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    theirs = mt_sandbox.buy_receipt(mt_deals[710001])
    ours = mt_sandbox.buy_receipt(mt_deals[710001])
    with client_for(account) as client:
        client.consume(theirs.code, 1, uuid.uuid4().hex, "desk", "前台")
    add_verification(add_voucher(gym["store"], ours.code))
    today = business_today().isoformat()

    for _ in range(2):
        result = cli("reconcile", "--day", today)
        assert result.exit_code == 0, result.output
        assert f"reconciling {today}" in result.output
    assert "differences=2 new=0" in result.output
    db.session.expire_all()
    kinds = dict(db.session.execute(select(ReconciliationItem.code, ReconciliationItem.kind)).all())
    assert kinds == {theirs.code: "platform_only", ours.code: "local_only"}


def test_reconcile_refuses_a_future_or_malformed_day(cli, gym, desk_live_sandbox):
    meituan_account(gym["store"], base_url=desk_live_sandbox + "/sandbox/meituan")
    tomorrow = (business_today() + timedelta(days=1)).isoformat()
    future = cli("reconcile", "--day", tomorrow)
    assert future.exit_code == 2 and "cannot be in the future" in future.output
    assert cli("reconcile", "--day", "22/11/2026").exit_code == 2
    default = cli("reconcile")
    assert default.exit_code == 0, default.output
    assert f"reconciling {(business_today() - timedelta(days=1)).isoformat()}" in default.output
