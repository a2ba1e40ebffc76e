"""Reconciliation with 云数汇 against the sandbox: the differences found (trade status, redemption,
amounts), each found once however often the check runs, gone differences resolved by the
system, the page (tenancy, resolve audited), and "run now" with its progress."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.core.jobruns import JobRun
from app.core.timeutil import utcnow
from app.coupons import reconciliation
from app.coupons.models import CouponIssue, CouponReconciliationItem
from app.extensions import db
from app.providers.yunshuhui import QueryAnswer, YunshuhuiClient
from app.sandbox import yunshuhui as sandbox
from app.sandbox.yunshuhui_models import SandboxYshCoupon
from tests.coupons.issue_rows import add_issue
from tests.coupons.test_reports import login
from tests.coupons.ysh_sandbox import connect_ysh_account, ysh_live_site, ysh_transport  # noqa: F401
from tests.helpers import csrf_from, htmx_headers

UPSTREAM = dict(upstream_activity_id="A000000001", owner_id="OWNER001", promotion_id="PROMO-2026-0001")


def issue_upstream(client: YunshuhuiClient, order_no: str, openid: str = "oYSH-recon-0001") -> None:
    client.issue(activity_id="A000000001", owner_id="OWNER001", promotion_id="PROMO-2026-0001",
                 channel_openid=openid, mer_order_id=order_no, write_off_notify="http://bank.test/w",
                 post_notify="http://bank.test/p")


def use_upstream(order_no: str, order_amount_fen: int = 12000) -> None:
    coupon = db.session.execute(select(SandboxYshCoupon).filter_by(mer_order_id=order_no)).scalar_one()
    sandbox.use_coupon(coupon.id, order_amount_fen, notify=False)


@pytest.fixture
def world(app, make):
    """Bank A's issues, each in a known relation to what the sandbox knows of it."""
    bank_a, bank_b = make.org(kind="bank", name="甲银行"), make.org(kind="bank", name="乙银行")
    make.operator(org=bank_a, roles=("operator",), username="a_operator")
    make.operator(org=bank_b, roles=("operator",), username="b_operator")
    account = connect_ysh_account(bank_a)
    activity = make.coupon_activity(org=bank_a, **UPSTREAM)
    ten_minutes_ago = utcnow() - timedelta(minutes=10)
    rows = {}
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        for name in ("we_think_processing", "agreed", "used_upstream", "amounts_differ"):
            rows[name] = add_issue(activity, created_at=ten_minutes_ago, status="succeeded")
            issue_upstream(client, rows[name].order_no)
    rows["we_think_processing"].status = "processing"
    use_upstream(rows["used_upstream"].order_no)
    use_upstream(rows["amounts_differ"].order_no, 12000)  # upstream: discount ¥10, order ¥120, paid ¥10
    differ = rows["amounts_differ"]
    differ.redemption_status, differ.used_at = "used", utcnow()
    differ.promo_amount_fen, differ.total_amount_fen = 800, 12000
    db.session.commit()
    rows["failed_never_sent"] = add_issue(activity, created_at=ten_minutes_ago, status="failed")
    rows["unknown_upstream"] = add_issue(activity, created_at=ten_minutes_ago, status="succeeded")
    rows["too_young"] = add_issue(activity, created_at=utcnow() - timedelta(minutes=1), status="processing")
    rows["long_ago"] = add_issue(activity, created_at=utcnow() - timedelta(days=3), status="succeeded")
    return dict(bank_a=bank_a, bank_b=bank_b, account=account, activity=activity, **rows)


def run(app, window: timedelta = reconciliation.DEFAULT_WINDOW) -> dict:
    return reconciliation.reconcile(window=window, client_for=lambda account: YunshuhuiClient.for_account(
        account, transport=ysh_transport(app)))


def items() -> set[tuple[int, str, str, str, str]]:
    db.session.expire_all()
    return {(i.issue_id, i.field, i.ours, i.theirs, i.status)
            for i in db.session.execute(select(CouponReconciliationItem)).scalars()}


def test_differences_are_found_once(app, world):
    outcome = run(app)
    assert (outcome["accounts"], outcome["checked"], outcome["new"]) == (1, 6, 4)
    expected = {
        (world["we_think_processing"].id, "trade_status", "PROCESS", "SUCCESS", "open"),
        (world["used_upstream"].id, "redemption_status", "none", "used", "open"),
        (world["amounts_differ"].id, "amount", "promo=800;total=12000;org=none", "promo=1000;total=12000;org=1000",
         "open"),
        (world["unknown_upstream"].id, "trade_status", "SUCCESS", "NOT_FOUND", "open"),
    }
    assert items() == expected  # the failed issue 云数汇 never saw agrees; the young and the old are not asked

    again = run(app)
    assert (again["checked"], again["new"], again["resolved"]) == (6, 0, 0)
    assert items() == expected


def test_a_difference_that_is_gone_is_resolved_by_the_system(app, world):
    run(app)
    issue = db.session.get(CouponIssue, world["we_think_processing"].id)
    issue.status = "succeeded"  # the pipeline settled it meanwhile
    db.session.commit()
    outcome = run(app)
    assert (outcome["new"], outcome["resolved"]) == (0, 1)
    item = db.session.execute(select(CouponReconciliationItem).where(
        CouponReconciliationItem.issue_id == issue.id)).scalar_one()
    assert item.status == "resolved" and item.resolved_at is not None
    event = db.session.execute(select(AuditEvent).where(
        AuditEvent.action == "coupon_reconciliation.auto_resolve")).scalar_one()
    assert event.object_id == str(item.id) and event.org_id == world["bank_a"].id and event.actor_name == "system"


def test_a_wider_window_reaches_older_issues(app, world):
    outcome = run(app, window=timedelta(days=4))
    assert outcome["checked"] == 7
    assert (world["long_ago"].id, "trade_status", "SUCCESS", "NOT_FOUND", "open") in items()


def test_yunshuhui_down_stops_the_bank_without_recording(app, world):
    sandbox.update_settings(api_mode="5xx", api_times=100)
    outcome = run(app)
    result = outcome["results"][f"account#{world['account'].id}"]
    assert result["checked"] == 0 and result["errors"] == reconciliation.UNAVAILABLE_IN_A_ROW
    assert result["stopped"].startswith("云数汇 unavailable")
    assert items() == set()


@pytest.mark.parametrize("status, redemption, answer, expected", [
    ("queued", None, dict(res_code="100001", trade_status=None), []),
    ("queued", None, dict(trade_status="SUCCESS"), [("trade_status", "QUEUED", "SUCCESS")]),
    ("failed", None, dict(trade_status="FAIL"), []),
    ("failed", None, dict(trade_status="SUCCESS"), [("trade_status", "FAIL", "SUCCESS")]),
    ("succeeded", "used", dict(trade_status="SUCCESS", redemption_status="EXPIRED"),
     [("redemption_status", "used", "expired")]),
    ("succeeded", "used", dict(trade_status="SUCCESS", redemption_status="USED", promo_amount_fen=1000),
     []),  # only the amounts 云数汇 reports are compared
    ("succeeded", None, dict(trade_status="PROCESS"), [("trade_status", "SUCCESS", "PROCESS")]),
])
def test_comparison_rules(status, redemption, answer, expected):
    issue = CouponIssue(status=status, redemption_status=redemption, promo_amount_fen=1000, total_amount_fen=5000)
    values = dict(res_code="000000", fail_msg=None, trade_status=None, redemption_status=None, promo_amount_fen=None,
                  total_amount_fen=None, org_amount_fen=None, used_at=None, raw={})
    found = reconciliation.differences(issue, QueryAnswer(**{**values, **answer}))
    assert [(d.field, d.ours, d.theirs) for d in found] == expected


def test_the_page_lists_resolves_and_keeps_banks_apart(app, client, auth, world):
    run(app)
    login(client, auth, "b_operator")
    assert 'data-testid="difference-' not in client.get("/coupons/reconciliation").get_data(as_text=True)
    item_id = db.session.execute(select(CouponReconciliationItem.id).where(
        CouponReconciliationItem.field == "amount")).scalar_one()
    token = csrf_from(client.get("/coupons/reconciliation"))
    assert client.post(f"/coupons/reconciliation/{item_id}/resolve", data={"csrf_token": token}).status_code == 404
    assert client.post("/coupons/reconciliation/resolve", data={"csrf_token": token, "item_ids": item_id}
                       ).status_code == 302
    assert ("amount", "open") in {(i[1], i[4]) for i in items()}  # bank B's bulk resolve did not reach it
    auth.logout()

    login(client, auth, "a_operator")
    page = client.get("/coupons/reconciliation").get_data(as_text=True)
    assert len(re.findall(r'data-testid="difference-\d+"', page)) == 4
    row = re.search(rf'data-testid="difference-{item_id}">(.*?)</tr>', page, re.S).group(1)
    assert "¥8.00 discount · ¥120.00 order · - paid" in row and "¥10.00 discount · ¥120.00 order · ¥10.00 paid" in row
    only_amounts = client.get("/coupons/reconciliation", query_string={"field": "amount"},
                              headers=htmx_headers(target="difference-rows")).get_data(as_text=True)
    assert re.findall(r'data-testid="difference-(\d+)"', only_amounts) == [str(item_id)]
    token = csrf_from(client.get("/coupons/reconciliation"))
    response = client.post("/coupons/reconciliation/resolve", data={"csrf_token": token, "item_ids": item_id,
                                                                    "note": "云数汇 confirmed the ¥10.00"})
    assert response.status_code == 302
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_reconciliation.resolve")
                               ).scalar_one()
    assert event.object_id == str(item_id) and event.after["note"] == "云数汇 confirmed the ¥10.00"
    open_page = client.get("/coupons/reconciliation").get_data(as_text=True)
    assert len(re.findall(r'data-testid="difference-\d+"', open_page)) == 3
    everything = client.get("/coupons/reconciliation", query_string={"status": "all"}).get_data(as_text=True)
    assert len(re.findall(r'data-testid="difference-\d+"', everything)) == 4


def test_run_now_starts_the_job_for_the_operators_banks(app, client, auth, make, ysh_live_site):  # noqa: F811
    from jobs.coupon_reconciliation import reconcile_coupons

    bank = make.org(kind="bank")
    make.operator(org=bank, roles=("operator",), username="runner")
    account = connect_ysh_account(bank, site=ysh_live_site)
    other_account = connect_ysh_account(make.org(kind="bank"), site=ysh_live_site)
    activity = make.coupon_activity(org=bank, **UPSTREAM)
    add_issue(activity, created_at=utcnow() - timedelta(minutes=10), status="processing")  # 云数汇 never saw it
    login(client, auth, "runner")
    token = csrf_from(client.get("/coupons/reconciliation"))
    response = client.post("/coupons/reconciliation/run", data={"csrf_token": token, "hours": "24"})
    assert response.status_code == 302
    run_row = db.session.execute(select(JobRun)).scalar_one()
    assert run_row.name == "jobs.coupon_reconciliation.reconcile_coupons" and run_row.queue == "reports"
    assert "last 24 hours, 1 account(s)" in run_row.label
    result = reconcile_coupons([account.id], hours=24, job_run_id=run_row.id)  # what the worker runs
    assert f"account#{other_account.id}" not in result["results"] and result["new"] == 1
    db.session.expire_all()
    assert db.session.get(JobRun, run_row.id).status == "succeeded"
    progress = client.get(f"/coupons/reconciliation/jobs/{run_row.id}",
                          headers=htmx_headers(target=f"reconciliation-job-{run_row.id}"))
    assert progress.status_code == 286 and "1 issues checked, 1 new differences" in progress.get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "job.start")).scalar_one() == 1
