"""`flask demo seed` on PostgreSQL: the coupon line's demo data (app/coupons/demo.py), seeded twice
without duplicates, with counters that match the issues, and a demo bank that can call the API
(`flask coupons demo-issue`) with the private key the seed wrote."""
from __future__ import annotations

import stat
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.activities.models import ThemeActivity, ThemeActivityBank, ThemeActivityInstitution
from app.core.audit import AuditEvent
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.coupons import demo
from app.coupons.models import (BankApiClient, CouponActivity, CouponIssue, CouponMemberCount, Institution,
                                PartnerBank, PositionNumber, TunnelAccount)
from app.coupons.settings import key_matches
from app.extensions import db
from app.orgs.models import Organisation
from app.sandbox.wechatpay_models import SandboxWxpayStock
from app.sandbox.yunshuhui_models import SandboxYshActivity, SandboxYshMerchant
from tests.coupons.ysh_sandbox import ysh_live_site  # noqa: F401 (fixture)

COUNTED = (PartnerBank, Institution, PositionNumber, TunnelAccount, BankApiClient, ThemeActivity,
           ThemeActivityInstitution, ThemeActivityBank, CouponActivity, CouponIssue, CouponMemberCount, OutboxMessage,
           SandboxYshMerchant, SandboxYshActivity, SandboxWxpayStock, AuditEvent)


def seed(app, key_file) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--members-per-org", "3",
                                                "--bank-key-file", str(key_file)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    db.session.expire_all()
    return result.output


def counts() -> dict[str, int]:
    return {model.__tablename__: db.session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in COUNTED}


@pytest.fixture
def seeded(app, tmp_path):
    key_file = tmp_path / "demo-bank-client.pem"
    output = seed(app, key_file)
    bank = db.session.execute(select(Organisation).where(Organisation.code == demo.DEMO_BANK)).scalar_one()
    return bank, key_file, output


def test_the_seed_runs_twice_without_duplicates(app, seeded):
    bank, key_file, _output = seeded
    first, key = counts(), key_file.read_text()
    seed(app, key_file)
    assert counts() == first
    assert key_file.read_text() == key  # the key still matches its client: kept


def test_master_data_tunnels_and_the_api_client(app, seeded):
    bank, key_file, output = seeded
    partners = {p.code: p for p in db.session.execute(select(PartnerBank)).scalars()}
    assert set(partners) == {"31000001", "31000002"} and partners["31000001"].org_id == bank.id
    assert db.session.execute(select(func.count()).select_from(Institution)).scalar_one() == 2
    assert all(len(p.number) == 23 for p in db.session.execute(select(PositionNumber)).scalars())

    accounts = {a.tunnel: a for a in db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == bank.id))
                .scalars()}
    site = app.config["PUBLIC_BASE_URL"]
    assert accounts["yunshuhui"].base_url == f"{site}/sandbox/yunshuhui" and accounts["yunshuhui"].notify_cert
    assert accounts["direct"].base_url == f"{site}/sandbox/wechatpay"

    client = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == bank.id)).scalar_one()
    assert key_matches(key_file.read_text(), client.client_cert)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert client.app_id in output


def test_a_lost_key_file_gets_a_new_key_pair(app, seeded):
    bank, key_file, _output = seeded
    key_file.unlink()
    seed(app, key_file)
    client = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == bank.id)).scalar_one()
    assert key_matches(key_file.read_text(), client.client_cert)


def test_activities_in_a_theme_one_ended_and_the_direct_one_on_its_stock(seeded):
    bank, _key_file, _output = seeded
    theme = db.session.execute(select(ThemeActivity).where(ThemeActivity.org_id == bank.id)).scalar_one()
    activities = list(db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)).scalars())
    assert len(activities) == len(demo.ACTIVITIES)
    assert {a.channel for a in activities} == {"wechat", "alipay", "unionpay"}
    assert sorted(a.status for a in activities) == ["ended", "running", "running", "running"]
    assert all(a.theme_activity_id == theme.id and theme.theme_no in a.code for a in activities)
    direct = next(a for a in activities if a.tunnel == "direct")
    stock = db.session.execute(select(SandboxWxpayStock).where(SandboxWxpayStock.stock_id == direct.promotion_id)
                               ).scalar_one()
    assert stock.coupon_amount_fen == direct.promo_amount_fen


def test_issues_spread_over_sixty_days_with_counters_that_match(seeded):
    bank, _key_file, _output = seeded
    issues = list(db.session.execute(select(CouponIssue).where(CouponIssue.org_id == bank.id)).scalars())
    assert 45 <= len(issues) <= 55
    assert {i.status for i in issues} == {"queued", "succeeded", "failed"}
    assert {i.redemption_status for i in issues} == {None, "used", "expired"}
    now = utcnow()
    used = sorted(i.used_at for i in issues if i.redemption_status == "used")
    assert used[0] < now - timedelta(days=30) and used[-1] > now - timedelta(days=10) and used[-1] < now
    assert all(now - timedelta(days=70) < i.created_at < now for i in issues)
    for issue in issues:
        assert issue.activity.start_at <= issue.created_at < issue.activity.end_at
        if issue.used_at:
            assert issue.created_at <= issue.used_at
    for activity in db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)).scalars():
        assert demo.counters_match(activity), activity.name
    queued = [i for i in issues if i.status == "queued"]
    assert len(queued) == demo.LIVE_ISSUES
    messages = db.session.execute(select(OutboxMessage.payload).where(OutboxMessage.kind == "coupons.issue")).scalars()
    assert {m["issue_id"] for m in messages} == {i.id for i in queued}


def test_counters_match_notices_a_count_out_of_step(seeded):
    bank, _key_file, _output = seeded
    activity = db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)
                                  .order_by(CouponActivity.id)).scalars().first()
    activity.issued_count += 1
    assert not demo.counters_match(activity)


def test_demo_issue_signs_and_sends_an_issue_request(app, seeded, ysh_live_site):  # noqa: F811
    bank, key_file, _output = seeded
    result = app.test_cli_runner().invoke(args=["coupons", "demo-issue", "--key-file", str(key_file),
                                                "--base-url", ysh_live_site, "--call-trade-no", "CLI-TRY-1"])
    assert result.exit_code == 0, result.output
    assert "HTTP 202" in result.output and "signature verifies" in result.output
    db.session.expire_all()
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.call_trade_no == "CLI-TRY-1")).scalar_one()
    assert (issue.org_id, issue.status) == (bank.id, "queued")
    assert issue.post_notify == f"{app.config['PUBLIC_BASE_URL']}/sandbox/bank/notify/issued"
