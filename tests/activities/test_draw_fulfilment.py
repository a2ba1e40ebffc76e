"""Fulfilment of won prizes through the outbox: points and cash into the customer's ledgers (once,
whatever the retries), coupons into the coupon pipeline, gifts waiting for the winner's address."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.activities import draw as engine
from app.activities import fulfilment
from app.activities.prize_models import (CashAccount, CashEntry, PointsAccount, PointsEntry, PrizeDelivery,
                                         ThemeDraw)
from app.core import crypto, outbox
from app.core.outbox import OutboxMessage
from app.coupons.models import CouponActivity, CouponIssue, CouponMemberCount
from app.extensions import db
from tests.coupons.ysh_sandbox import connect_ysh_account


class First:
    def randrange(self, stop: int) -> int:
        return 0


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


def win(theme, open_id="oWinner0001", key=None):
    outcome = engine.draw(theme.id, open_id, key or f"k-{db.session.execute(select(func.count()).select_from(ThemeDraw)).scalar_one()}",
                          rng=First())
    assert outcome.won
    return outcome


def message_of(outcome) -> OutboxMessage:
    return db.session.execute(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"{fulfilment.FULFIL_KIND}:{outcome.draw_id}")).scalar_one()


def deliver(outcome) -> outbox.DeliveryOutcome:
    return outbox.deliver(message_of(outcome).id)


def draw_row(outcome) -> ThemeDraw:
    return db.session.get(ThemeDraw, outcome.draw_id, populate_existing=True)


def test_points_are_credited_once_however_often_the_message_comes(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1, participation_limit=None)
    make.prize(theme, kind="points", points=250, stock=10, weight=100, sort_order=1)
    outcome = win(theme)

    assert deliver(outcome).status == "delivered"
    assert fulfilment.fulfil_prize({"draw_id": outcome.draw_id}).startswith("nothing to do")  # a duplicate delivery
    db.session.commit()
    win(theme)
    outbox.relay_due()

    assert fulfilment.balance_of(fulfilment.POINTS, bank.id, "oWinner0001") == 500
    entries = db.session.execute(select(PointsEntry).order_by(PointsEntry.id)).scalars().all()
    assert [(e.points, e.balance_after) for e in entries] == [(250, 250), (250, 500)]
    assert entries[0].business_key == f"draw:{outcome.draw_id}"
    assert draw_row(outcome).fulfilment_status == "fulfilled" and draw_row(outcome).fulfilled_at is not None
    account = db.session.execute(select(PointsAccount)).scalar_one()
    assert account.org_id == bank.id and account.openid == "oWinner0001" and account.openid_masked == "oWin****0001"


def test_cash_is_credited_in_fen(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    make.prize(theme, kind="cash", cash_fen=888, stock=3, weight=100, sort_order=1)
    outcome = win(theme)

    deliver(outcome)

    assert fulfilment.balance_of(fulfilment.CASH, bank.id, "oWinner0001") == 888
    entry = db.session.execute(select(CashEntry)).scalar_one()
    assert (entry.amount_fen, entry.balance_after_fen) == (888, 888)
    assert db.session.execute(select(func.count()).select_from(CashAccount)).scalar_one() == 1
    assert fulfilment.balance_of(fulfilment.POINTS, bank.id, "oWinner0001") == 0


def test_a_ledger_credit_with_a_key_used_before_pays_nothing(make, bank):
    holder = type("Holder", (), {"openid_hash": crypto.lookup_hash("oLedger"), "openid_enc": crypto.encrypt("oLedger"),
                                 "openid_masked": "oLed****"})()

    first = fulfilment.credit(fulfilment.CASH, bank.id, holder, 100, "refund:1", "test")
    again = fulfilment.credit(fulfilment.CASH, bank.id, holder, 100, "refund:1", "test")
    other = fulfilment.credit(fulfilment.CASH, bank.id, holder, 50, "refund:2", "test")
    db.session.commit()

    assert (first, again, other) == (100, 100, 150)
    assert fulfilment.balance_of(fulfilment.CASH, bank.id, "oLedger") == 150


def test_a_gift_waits_for_the_winners_address_kept_encrypted(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    make.prize(theme, kind="gift", name="保温杯", stock=2, weight=100, sort_order=1)
    outcome = win(theme)
    deliver(outcome)
    assert draw_row(outcome).fulfilment_status == "awaiting_address"

    with pytest.raises(fulfilment.AddressRefused) as wrong_customer:
        fulfilment.leave_address(theme.id, outcome.draw_no, "oSomeoneElse", "张三", "13800138000", "上海市浦东新区世纪大道1号")
    with pytest.raises(fulfilment.AddressRefused) as bad_phone:
        fulfilment.leave_address(theme.id, outcome.draw_no, "oWinner0001", "张三", "12345", "上海市浦东新区世纪大道1号")
    delivery = fulfilment.leave_address(theme.id, outcome.draw_no, "oWinner0001", " 张三 ", "+86 138 0013 8000",
                                        "上海市浦东新区世纪大道1号")

    assert wrong_customer.value.field == "draw" and bad_phone.value.field == "phone"
    stored = db.session.get(PrizeDelivery, delivery.id)
    assert "13800138000" not in stored.phone_enc and crypto.decrypt(stored.phone_enc) == "13800138000"
    assert crypto.decrypt(stored.recipient_enc) == "张三" and stored.org_id == bank.id
    assert draw_row(outcome).fulfilment_status == "address_given"
    with pytest.raises(fulfilment.AddressRefused):
        fulfilment.leave_address(theme.id, outcome.draw_no, "oWinner0001", "李四", "13900139000", "北京市海淀区1号院")


def coupon_prize_won(make, bank, per_member: int):
    """A bank with its 云数汇 account, a theme whose coupon prize was just won: (coupon activity, outcome)."""
    connect_ysh_account(bank)
    theme = make.wheel_theme(bank, thanks_weight=1)
    coupon = make.coupon_activity(theme=theme, issue_total=10, per_member_limit=per_member)
    make.prize(theme, kind="coupon", coupon_activity_id=coupon.id, stock=3, per_member_cap=per_member, weight=100,
               sort_order=1)
    return coupon, win(theme)


def test_a_coupon_prize_is_queued_in_the_coupon_pipeline_once(make, bank):
    coupon, outcome = coupon_prize_won(make, bank, per_member=2)

    deliver(outcome)
    fulfilment.fulfil_prize({"draw_id": outcome.draw_id})  # delivered again: nothing more
    db.session.commit()

    issue = db.session.execute(select(CouponIssue)).scalar_one()
    assert issue.call_trade_no == f"DRAW{outcome.draw_no}" and issue.status == "queued" and issue.api_client_id is None
    assert issue.openid == "oWinner0001" and issue.openid_hash == crypto.lookup_hash("oWinner0001")
    assert draw_row(outcome).coupon_issue_id == issue.id and draw_row(outcome).fulfilment_status == "fulfilled"
    assert db.session.get(CouponActivity, coupon.id, populate_existing=True).issued_count == 1
    assert db.session.execute(select(CouponMemberCount.issued)).scalar_one() == 1
    assert db.session.execute(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.kind == "coupons.issue")).scalar_one() == 1


def test_a_coupon_that_cannot_be_issued_fails_the_fulfilment_with_the_reason(make, bank):
    coupon, outcome = coupon_prize_won(make, bank, per_member=1)
    coupon.enabled = False
    db.session.commit()

    result = deliver(outcome)

    assert result.status == "delivered"  # a business refusal is final, not retried
    row = draw_row(outcome)
    assert row.fulfilment_status == "failed" and "disabled" in row.fulfilment_note
    assert db.session.execute(select(func.count()).select_from(CouponIssue)).scalar_one() == 0
