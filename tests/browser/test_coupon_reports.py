"""The coupon reports and the issuance monitor in Chromium: charts drawn, filters and the column
picker through htmx (the choice in the URL), live counts that follow the database, and "retry
selected" behind its confirmation dialog."""
from __future__ import annotations

import re
from datetime import timedelta

from playwright.sync_api import expect
from sqlalchemy import select

from app.core.timeutil import utcnow
from app.coupons.models import CouponIssue
from app.extensions import db
from tests.coupons.issue_rows import add_issue


def _world(make):
    bank = make.org(kind="bank", name="浏览器测试银行")
    make.operator(org=bank, roles=("operator",), username="reporter")
    activity = make.coupon_activity(org=bank, name="满100减10", promo_amount_fen=1000, threshold_fen=10000)
    now = utcnow()
    for days in range(0, 10):
        add_issue(activity, created_at=now - timedelta(days=days, hours=1))
        add_issue(activity, created_at=now - timedelta(days=days, hours=2), redemption_status="used",
                  used_at=now - timedelta(days=days), promo_amount_fen=1000, total_amount_fen=12000)
    failed = add_issue(activity, status="failed", res_code="100002", fail_msg="库存不足")
    return activity, failed


def test_reports_charts_filters_and_column_picker(page, login, make, shot):
    _world(make)
    login("reporter")
    page.goto("/coupons/reports/issues/daily")
    expect(page.get_by_test_id("kpi-issued")).to_have_text("20")
    expect(page.locator("[data-testid=chart-counts] canvas")).to_have_count(1)  # ECharts drew it
    shot("daily-summary")

    page.goto("/coupons/reports/issues")
    expect(page.get_by_test_id("report-row")).to_have_count(20)
    page.locator("#report-filters select[name=state]").select_option("used")
    expect(page.get_by_test_id("report-row")).to_have_count(10)
    expect(page).to_have_url(re.compile(r"state=used"))

    page.get_by_test_id("column-picker").locator("button.dropdown-toggle").click()
    page.locator("#col-report-filters-threshold").uncheck()
    page.locator("#col-report-filters-openid").uncheck()
    page.get_by_test_id("apply-columns").click()
    expect(page.locator("[data-testid=report-table] th[data-col=openid]")).to_have_count(0)
    expect(page.locator("[data-testid=report-table] th[data-col=serial]")).to_have_count(1)
    expect(page.get_by_test_id("report-row")).to_have_count(10)  # the filter stayed
    shot("issue-details-columns")
    page.reload()
    expect(page.locator("[data-testid=report-table] th[data-col=threshold]")).to_have_count(0)


def test_monitor_counts_follow_and_retry_is_confirmed(page, login, make, shot):
    activity, failed = _world(make)
    login("reporter")
    page.goto(f"/coupons/monitor/{activity.id}")
    expect(page.get_by_test_id("count-succeeded")).to_have_text("20")
    add_issue(activity, status="processing")
    expect(page.get_by_test_id("count-processing")).to_have_text("1", timeout=12_000)  # the poll picked it up
    shot("activity-monitor")

    page.locator(f"input[name=issue_ids][value='{failed.id}']").check()
    page.get_by_test_id("retry-selected").click()
    page.get_by_test_id("confirm-yes").click()
    expect(page.locator("#toasts .toast.show")).to_have_count(1)
    expect(page.get_by_test_id("count-failed")).to_have_text("0")
    db.session.expire_all()
    assert db.session.execute(select(CouponIssue.status).where(CouponIssue.id == failed.id)).scalar_one() == "queued"
    shot("after-retry")
