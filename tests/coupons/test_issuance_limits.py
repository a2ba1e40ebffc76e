"""The issue total and the per-member limit under many concurrent requests on PostgreSQL (real
threads, each request in its own session), the stock given back on FAIL, and `retry_issues`."""
from __future__ import annotations

import json
import secrets
import threading

from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.core.outbox import OutboxMessage
from app.coupons import issuance
from app.coupons.models import CouponActivity, CouponIssue, CouponMemberCount
from app.extensions import db
from tests.coupons.bank_api_helpers import bank, issue_body  # noqa: F401 (fixture)

ISSUE = "/api/v1/coupons/issue"
THREADS = 40


def fire_together(app, bank, bodies: list[dict]) -> list[tuple[int, dict]]:
    """Sign every request here, then send them all at once, one thread (and client) each."""
    prepared = []
    for body in bodies:
        raw = json.dumps(body).encode()
        prepared.append((raw, {"Authorization": bank.caller.authorization(raw), "Idempotency-Key": secrets.token_hex(8),
                               "Content-Type": "application/json"}))
    start = threading.Barrier(len(prepared))
    results: list[tuple[int, dict] | None] = [None] * len(prepared)

    def send(index: int) -> None:
        http = app.test_client()
        start.wait(10)
        raw, headers = prepared[index]
        response = http.post(ISSUE, data=raw, headers=headers)
        results[index] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prepared))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def fresh_activity(activity) -> CouponActivity:
    db.session.expire_all()
    return db.session.get(CouponActivity, activity.id)


def issues_of(activity) -> int:
    return db.session.execute(select(func.count()).select_from(CouponIssue)
                              .where(CouponIssue.coupon_activity_id == activity.id)).scalar_one()


def test_the_issue_total_holds_under_40_concurrent_requests(app, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=10, per_member_limit=1)
    results = fire_together(app, bank, [issue_body(activity) for _ in range(THREADS)])

    statuses = sorted(status for status, _ in results)
    assert statuses == [202] * 10 + [409] * 30
    assert {answer["code"] for status, answer in results if status == 409} == {"STOCK_EXHAUSTED"}
    assert fresh_activity(activity).issued_count == 10
    assert issues_of(activity) == 10
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.kind == "coupons.issue")).scalar_one() == 10


def test_the_per_member_limit_holds_under_40_concurrent_requests(app, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=1000, per_member_limit=3)
    same_customer = [issue_body(activity, open_id="oTheSameCustomer") for _ in range(THREADS)]
    others = [issue_body(activity) for _ in range(5)]
    results = fire_together(app, bank, same_customer + others)

    mine = [status for status, _ in results[:THREADS]]
    assert sorted(mine) == [202] * 3 + [409] * (THREADS - 3)
    assert {answer["code"] for status, answer in results[:THREADS] if status == 409} == {"MEMBER_LIMIT_REACHED"}
    assert [status for status, _ in results[THREADS:]] == [202] * 5
    assert fresh_activity(activity).issued_count == 8
    counted = db.session.execute(select(CouponMemberCount.issued).where(
        CouponMemberCount.openid_hash == issuance.crypto.lookup_hash("oTheSameCustomer"))).scalar_one()
    assert counted == 3


def test_one_call_trade_no_sent_40_times_at_once_is_one_issue(app, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=1000, per_member_limit=5)
    body = issue_body(activity, call_trade_no="RACE-1")
    results = fire_together(app, bank, [body] * THREADS)

    assert {status for status, _ in results} <= {200, 202, 409}
    accepted = [answer for status, answer in results if status in (200, 202)]
    assert [status for status, _ in results].count(202) == 1
    assert len({answer["orderNo"] for answer in accepted}) == 1
    refused = {answer["code"] for status, answer in results if status == 409}
    assert refused <= {"CALL_TRADE_NO_IN_FLIGHT"}
    assert issues_of(activity) == 1 and fresh_activity(activity).issued_count == 1


# --- giving stock back and retrying --------------------------------------------------------------


def _issue(http, bank, activity, **values) -> CouponIssue:
    response = bank.caller.post(http, ISSUE, issue_body(activity, **values))
    assert response.status_code == 202, response.get_json()
    return db.session.execute(select(CouponIssue).where(CouponIssue.order_no == response.get_json()["orderNo"])
                              ).scalar_one()


def test_a_fail_gives_back_the_stock_and_the_customers_count_once(client, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=1, per_member_limit=1)
    issue = _issue(client, bank, activity, open_id="oFailing")
    assert fresh_activity(activity).issued_count == 1

    issuance.settle(issue.id, issuance.Word("FAIL", res_code="999999", fail_msg="库存不足"), "answer")
    db.session.commit()
    issuance.settle(issue.id, issuance.Word("FAIL", res_code="999999", fail_msg="again"), "callback")
    db.session.commit()

    db.session.expire_all()
    row = db.session.get(CouponIssue, issue.id)
    assert (row.status, row.trade_status, row.res_code, row.fail_msg, row.settled_by) == (
        "failed", "FAIL", "999999", "库存不足", "answer")
    assert fresh_activity(activity).issued_count == 0
    assert db.session.execute(select(CouponMemberCount.issued)).scalar_one() == 0
    # the stock is there again: the same customer may be given one
    assert _issue(client, bank, activity, open_id="oFailing").status == "queued"


def test_a_success_is_never_undone_by_a_later_fail(client, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=3)
    issue = _issue(client, bank, activity)
    issuance.settle(issue.id, issuance.Word("SUCCESS", third_coupon_id="C1"), "answer")
    issuance.settle(issue.id, issuance.Word("FAIL", fail_msg="late"), "callback")
    issuance.settle(issue.id, issuance.Word("PROCESS"), "query")
    db.session.commit()
    db.session.expire_all()
    row = db.session.get(CouponIssue, issue.id)
    assert (row.status, row.third_coupon_id, row.fail_msg) == ("succeeded", "C1", None)
    assert fresh_activity(activity).issued_count == 1


def test_retry_issues_requeues_failed_issues_stock_permitting_and_audits(client, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=2, per_member_limit=1)
    failed = _issue(client, bank, activity, open_id="oRetry")
    queued = _issue(client, bank, activity, open_id="oOther")
    issuance.settle(failed.id, issuance.Word("FAIL", res_code="X1", fail_msg="upstream said no"), "answer")
    db.session.commit()
    old_order = failed.order_no
    operator = make.operator(org=bank.org, roles=("operator",))
    stranger = make.operator(org=make.org(kind="bank"), roles=("org_admin",))

    assert list(issuance.retry_issues([failed.id], stranger).refused) == [failed.id]  # another bank's: not found
    report = issuance.retry_issues([failed.id, queued.id], operator)

    assert report.retried == [failed.id]
    assert set(report.refused) == {queued.id}
    db.session.expire_all()
    row = db.session.get(CouponIssue, failed.id)
    assert row.status == "queued" and row.order_no != old_order and row.res_code is None and row.fail_msg is None
    assert fresh_activity(activity).issued_count == 2
    message = db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "coupons.issue")
                                 .order_by(OutboxMessage.id.desc()).limit(1)).scalar_one()
    assert message.payload == {"issue_id": row.id, "order_no": row.order_no}
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_issue.retry")).scalar_one()
    assert (event.object_id, event.org_id, event.before["order_no"], event.after["order_no"]) == (
        str(row.id), bank.org.id, old_order, row.order_no)
    assert (event.before["status"], event.after["status"]) == ("failed", "queued")


def test_retry_is_refused_when_the_stock_is_gone(client, make, bank):
    activity = make.coupon_activity(org=bank.org, issue_total=1, per_member_limit=1)
    failed = _issue(client, bank, activity)
    issuance.settle(failed.id, issuance.Word("FAIL", fail_msg="no"), "answer")
    db.session.commit()
    _issue(client, bank, activity)  # someone else took the coupon that came back
    operator = make.operator(org=bank.org, roles=("operator",))

    report = issuance.retry_issues([failed.id], operator)
    assert report.retried == [] and report.refused[failed.id] == str(issuance.RETRY_REFUSALS["STOCK_EXHAUSTED"])
    db.session.expire_all()
    assert db.session.get(CouponIssue, failed.id).status == "failed"
    assert fresh_activity(activity).issued_count == 1
    member_counts = dict(db.session.execute(select(CouponMemberCount.openid_hash, CouponMemberCount.issued)).all())
    assert member_counts[failed.openid_hash] == 0  # the member's count taken for the retry was put back too
