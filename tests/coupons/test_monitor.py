"""The issuance monitor: live counts per activity and in all, the polling fragments, the failed
issues with their reasons, retry of the selected failures (confirmed, audited), and tenancy."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.coupons.models import CouponIssue
from app.extensions import db
from tests.coupons.issue_rows import add_issue
from tests.coupons.test_reports import kpis, login
from tests.helpers import csrf_from, htmx_headers


@pytest.fixture
def monitored(make):
    bank_a, bank_b = make.org(kind="bank"), make.org(kind="bank")
    make.operator(org=bank_a, roles=("operator",), username="a_operator")
    make.operator(org=bank_a, roles=("viewer",), username="a_viewer")
    make.operator(org=bank_b, roles=("operator",), username="b_operator")
    busy = make.coupon_activity(org=bank_a, name="忙碌的券", issued_count=9)
    quiet = make.coupon_activity(org=bank_a, name="安静的券")
    foreign = make.coupon_activity(org=bank_b, name="别家的券", issued_count=1)
    for status in ("queued", "queued", "processing", "succeeded", "succeeded"):
        add_issue(busy, status=status)
    add_issue(busy, redemption_status="used")
    failures = [add_issue(busy, status="failed", res_code="100002", fail_msg="库存不足"),
                add_issue(busy, status="failed", res_code="100002", fail_msg="库存不足"),
                add_issue(busy, status="failed", res_code="999999", fail_msg="签名错误")]
    foreign_failure = add_issue(foreign, status="failed", res_code="100002")
    return dict(bank_a=bank_a, busy=busy, quiet=quiet, foreign=foreign, failures=failures,
                foreign_failure=foreign_failure)


def counts(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="count-(\w+)">(\d+)<', html))


def row_counts(html: str, activity_id: int) -> dict[str, str]:
    row = re.search(rf'data-testid="monitor-activity-{activity_id}">(.*?)</tr>', html, re.S).group(1)
    return dict(re.findall(r'data-count="(\w+)">(\d+)<', row))


def test_overview_counts_per_activity_and_in_all(client, auth, monitored):
    login(client, auth, "a_viewer")
    page = client.get("/coupons/monitor").get_data(as_text=True)
    assert counts(page) == {"queued": "2", "processing": "1", "succeeded": "3", "failed": "3", "redeemed": "1"}
    assert row_counts(page, monitored["busy"].id) == {"queued": "2", "processing": "1", "succeeded": "3",
                                                     "failed": "3", "redeemed": "1"}
    assert row_counts(page, monitored["quiet"].id) == dict.fromkeys(("queued", "processing", "succeeded", "failed",
                                                                     "redeemed"), "0")
    assert f'monitor-activity-{monitored["foreign"].id}' not in page
    assert 'hx-trigger="every 5s, live:refresh"' in page and "data-pause-when-hidden" in page
    # The poll asks for the block only, with the filters of the moment.
    polled = client.get("/coupons/monitor", query_string={"q": "忙碌"},
                        headers=htmx_headers(target="monitor-live")).get_data(as_text=True)
    assert "<html" not in polled and f'monitor-activity-{monitored["quiet"].id}' not in polled
    assert "/coupons/monitor?q=%E5%BF%99%E7%A2%8C" in polled


def test_activity_counts_poll_and_follow_changes(client, auth, monitored):
    login(client, auth, "a_viewer")
    url = f"/coupons/monitor/{monitored['busy'].id}"
    fragment = client.get(url, headers=htmx_headers(target="monitor-counts")).get_data(as_text=True)
    assert fragment.lstrip().startswith('<div id="monitor-counts"') and "failure-rows" not in fragment
    assert counts(fragment)["succeeded"] == "3"
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.status == "processing")).scalar_one()
    issue.status = "succeeded"
    db.session.commit()
    again = counts(client.get(url, headers=htmx_headers(target="monitor-counts")).get_data(as_text=True))
    assert (again["processing"], again["succeeded"]) == ("0", "4")


def test_failures_with_reasons_and_filter(client, auth, monitored):
    login(client, auth, "a_viewer")
    url = f"/coupons/monitor/{monitored['busy'].id}"
    page = client.get(url).get_data(as_text=True)
    assert len(re.findall(r'data-testid="failure-\d+"', page)) == 3
    reason = re.search(r'data-testid="reason-100002">(.*?)</a>', page, re.S).group(1)
    assert "库存不足" in reason and '<span class="badge text-bg-danger ms-1">2</span>' in reason
    assert "retry-selected" not in page  # a viewer may look, not retry
    only = client.get(url, query_string={"res_code": "999999"}, headers=htmx_headers(target="failure-rows"))
    body = only.get_data(as_text=True)
    assert re.findall(r'data-testid="failure-(\d+)"', body) == [str(monitored["failures"][2].id)] and "签名错误" in body


def test_retry_selected_failures(client, auth, monitored):
    login(client, auth, "a_operator")
    url = f"/coupons/monitor/{monitored['busy'].id}"
    shown = client.get(url)
    assert 'data-confirm="Issue the selected failed coupons again?' in shown.get_data(as_text=True)
    first, second, _ = monitored["failures"]
    old_order_no = first.order_no
    succeeded = db.session.execute(select(CouponIssue.id).where(CouponIssue.status == "succeeded")).scalars().first()
    response = client.post(f"{url}/retry", data={"csrf_token": csrf_from(shown), "page": "1",
                                                 "issue_ids": [first.id, second.id, succeeded,
                                                               monitored["foreign_failure"].id]})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{url}?page=1")
    db.session.expire_all()
    retried = [db.session.get(CouponIssue, i) for i in (first.id, second.id)]
    assert [r.status for r in retried] == ["queued", "queued"] and retried[0].order_no != old_order_no
    assert db.session.get(CouponIssue, monitored["foreign_failure"].id).status == "failed"
    events = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_issue.retry")).scalars().all()
    assert sorted(e.object_id for e in events) == sorted([str(first.id), str(second.id)])
    after = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 failed issue(s) put back in line" in after and "2 issue(s) not retried" in after
    assert counts(after)["failed"] == "1" and counts(after)["queued"] == "4"


def test_retry_needs_a_selection_and_the_permission(client, auth, monitored):
    login(client, auth, "a_operator")
    url = f"/coupons/monitor/{monitored['busy'].id}"
    token = csrf_from(client.get(url))
    answer = client.post(f"{url}/retry", data={"csrf_token": token})
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Select the failed issues to retry first." in page
    auth.logout()
    login(client, auth, "a_viewer")
    token = csrf_from(client.get(url))
    response = client.post(f"{url}/retry", data={"csrf_token": token, "issue_ids": monitored["failures"][0].id})
    assert response.status_code == 403


def test_bank_b_gets_404_for_bank_a_activity_monitor(client, auth, monitored):
    login(client, auth, "b_operator")
    url = f"/coupons/monitor/{monitored['busy'].id}"
    assert client.get(url).status_code == 404
    token = csrf_from(client.get("/coupons/monitor"))
    response = client.post(f"{url}/retry", data={"csrf_token": token, "issue_ids": monitored["failures"][0].id})
    assert response.status_code == 404
    overview = client.get("/coupons/monitor").get_data(as_text=True)
    assert counts(overview) == {"queued": "0", "processing": "0", "succeeded": "0", "failed": "1", "redeemed": "0"}
    assert kpis(overview) == {}


def test_issue_page_shows_the_answer_the_redemption_and_the_notifications(client, auth, monitored):
    from app.coupons.models import BankNotification, BankNotificationAttempt

    issue = add_issue(monitored["busy"], redemption_status="used", promo_amount_fen=1000, total_amount_fen=12000,
                      merchant_no="M9", merchant_name="九号店", used_at=monitored["busy"].start_at)
    notification = BankNotification(org_id=issue.org_id, issue_id=issue.id, kind="redemption",
                                    event_key=f"r:{issue.id}", url="https://bank.test/writeoff", payload={}, status="delivered", attempts=2)
    db.session.add(notification)
    db.session.flush()
    db.session.add_all([BankNotificationAttempt(notification_id=notification.id, http_status=503, ok=False,
                                                error="bank down", duration_ms=40),
                        BankNotificationAttempt(notification_id=notification.id, http_status=200, ok=True,
                                                duration_ms=12)])
    db.session.commit()
    login(client, auth, "a_viewer")
    page = client.get(f"/coupons/monitor/issues/{issue.id}").get_data(as_text=True)
    assert issue.order_no in page and issue.openid_masked in page and ">Used<" in page
    assert "¥120.00" in page and "M9 九号店" in page
    notifications = re.search(r'data-testid="notifications">(.*?)</table>', page, re.S).group(1)
    assert "https://bank.test/writeoff" in notifications and "bank down" in notifications and ">200<" in notifications
    # The monitor's failures link to the issue page.
    failures = client.get(f"/coupons/monitor/{monitored['busy'].id}").get_data(as_text=True)
    assert f'/coupons/monitor/issues/{monitored["failures"][0].id}"' in failures
    auth.logout()
    login(client, auth, "b_operator")
    assert client.get(f"/coupons/monitor/issues/{issue.id}").status_code == 404
