"""The draw records and gift shipping service (`app.activities.records`): filters, paging and sorting,
masked customers, the audited search by openid and "reveal", the rules of shipping (by hand and from a
workbook), a failed fulfilment retried, and one bank never reaching another's draws."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.activities import fulfilment, records
from app.activities.prize_models import PrizeDelivery
from app.core import audit
from app.core.audit import AuditEvent
from app.core.listing import ListParams
from app.core.outbox import OutboxMessage
from app.core.timeutil import business_today, utcnow
from app.coupons.models import CouponActivity, CouponIssue
from app.extensions import db
from tests.activities.draw_records import (GIFT, POINTS, THANKS, EmptiesThePick, draw_row, fulfil, gift_wheel,
                                           gift_with_address, spin, workbook)
from tests.coupons.ysh_sandbox import connect_ysh_account


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def operator(make, bank):
    return make.operator(org=bank, roles=("operator",), username="gift_operator")


@pytest.fixture
def wheel(make, bank):
    return gift_wheel(make, bank)


def listed(actor, theme, **filters) -> list[str]:
    """The draw numbers the records show under these filters (newest first)."""
    page = records.list_draws(actor, theme, ListParams(per_page=100, sort="drawn_at", filters=filters))
    return [d.draw_no for d in page.items]


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def acting(operator):
    return audit.acting_as(audit.Actor(operator.id, operator.username, operator.org_id, "10.0.0.9"))


# --- the records ---------------------------------------------------------------------------------

def test_each_filter_finds_its_draws(wheel, operator):
    theme = wheel.theme
    earlier = utcnow() - timedelta(days=3)
    gift = spin(theme, "oAlice0000001", GIFT, now=earlier)
    points = spin(theme, "oBobby0000002", POINTS, channel="api")
    thanks = spin(theme, "oAlice0000001", THANKS)
    fell_back = spin(theme, "oCarol0000003", rng=EmptiesThePick(wheel.points, POINTS))
    fulfil(gift), fulfil(points)
    everyone = {gift.draw_no, points.draw_no, thanks.draw_no, fell_back.draw_no}

    assert set(listed(operator, theme)) == everyone
    assert listed(operator, theme, draw_no=points.draw_no.lower()) == [points.draw_no]
    assert set(listed(operator, theme, openid="oAlice0000001")) == {gift.draw_no, thanks.draw_no}
    assert listed(operator, theme, openid="oAlice") == []  # only a whole openid is found
    assert listed(operator, theme, prize_id=str(wheel.points.id)) == [points.draw_no]
    assert set(listed(operator, theme, result="won")) == {gift.draw_no, points.draw_no}
    assert set(listed(operator, theme, result="thanks")) == {thanks.draw_no, fell_back.draw_no}
    assert listed(operator, theme, result="fell_back") == [fell_back.draw_no]
    assert listed(operator, theme, channel="api") == [points.draw_no]
    assert listed(operator, theme, status="awaiting_address") == [gift.draw_no]
    assert listed(operator, theme, status="fulfilled") == [points.draw_no]
    day = (business_today() - timedelta(days=3)).isoformat()
    assert listed(operator, theme, **{"from": day, "to": day}) == [gift.draw_no]
    assert gift.draw_no not in listed(operator, theme, **{"from": business_today().isoformat()})


def test_a_draw_row_says_what_was_picked_and_what_was_awarded(wheel, operator):
    fell_back = spin(wheel.theme, "oCarol0000003", rng=EmptiesThePick(wheel.points, POINTS))

    [row] = records.draw_rows(wheel.theme, [draw_row(fell_back)])

    assert row.fell_back and row.picked.name == "100积分" and row.prize.kind == "thanks"
    assert row.openid_masked == "oCar****0003"


def test_pages_and_sorting(wheel, operator):
    drawn = [spin(wheel.theme, f"oPager{n:07d}", THANKS).draw_no for n in range(25)]

    third = records.list_draws(operator, wheel.theme, ListParams(page=3, per_page=10, sort="draw_no", direction="asc"))
    beyond = records.list_draws(operator, wheel.theme, ListParams(page=9, per_page=10))

    assert third.total == 25 and third.pages == 3 and [d.draw_no for d in third.items] == sorted(drawn)[20:]
    assert beyond.page == 3  # a page past the end shows the last one


def test_a_search_by_openid_is_audited_with_the_openid_masked(wheel, operator):
    spin(wheel.theme, "oAlice0000001", THANKS)

    with acting(operator):
        listed(operator, wheel.theme, openid="oAlice0000001")
        listed(operator, wheel.theme, channel="h5")  # no personal data asked for: nothing recorded

    [event] = events("theme_draw.search")
    assert event.actor_id == operator.id and event.object_type == "theme_draw"
    assert event.after == {"theme_no": wheel.theme.theme_no, "filters": {"openid": "oAli****0001"}, "rows": 1}
    assert "oAlice0000001" not in json.dumps(event.after)


def test_another_bank_never_reaches_the_draws(make, wheel, operator):
    outcome = gift_with_address(wheel.theme)
    other = make.operator(org=make.org(kind="bank"), username="other_bank")
    platform = make.operator(org=make.platform(), roles=("platform_admin",), username="root")

    assert listed(other, wheel.theme) == [] and listed(platform, wheel.theme) == [outcome.draw_no]
    assert records.tab_counts(other, wheel.theme)["to_ship"] == 0
    assert records.draw_in(other, wheel.theme, outcome.draw_id) is None
    with pytest.raises(records.DeliveryNotFound):
        records.reveal(other, wheel.theme, outcome.draw_id)
    [refused] = records.ship(other, wheel.theme, [outcome.draw_id], "SF1234567890")
    assert not refused.done and draw_row(outcome).fulfilment_status == "address_given"
    assert records.retry_fulfilment(other, wheel.theme, [outcome.draw_id]) == []


# --- the gifts ------------------------------------------------------------------------------------

def test_the_tabs_hold_the_gifts_by_their_way(wheel, operator):
    waiting = spin(wheel.theme, "oWaiting00001", GIFT)
    fulfil(waiting)
    given = gift_with_address(wheel.theme, "oGiven0000001")
    shipped = gift_with_address(wheel.theme, "oShipped00001")
    records.ship(operator, wheel.theme, [shipped.draw_id], "YT9876543210")
    spin(wheel.theme, "oPoints000001", POINTS)

    def tab(name):
        stmt = records.sorted_deliveries(operator, wheel.theme, name, ListParams(sort="drawn_at"))
        return [d.draw_no for d in db.session.execute(stmt).scalars()]

    assert records.tab_counts(operator, wheel.theme) == {"awaiting": 1, "to_ship": 1, "shipped": 1}
    assert (tab("awaiting"), tab("to_ship"), tab("shipped")) == ([waiting.draw_no], [given.draw_no], [shipped.draw_no])
    stmt = records.sorted_deliveries(operator, wheel.theme, "shipped", ListParams(filters={"tracking_no": "YT9876543210"}))
    assert [d.draw_no for d in db.session.execute(stmt).scalars()] == [shipped.draw_no]


def test_the_list_masks_the_contact_and_reveal_shows_it_in_full_audited(wheel, operator):
    outcome = gift_with_address(wheel.theme, recipient="欧阳娜娜", phone="13912345678", address="广东省深圳市南山区科技园")

    [row] = records.delivery_rows(wheel.theme, [draw_row(outcome)])
    assert (row.masked.recipient, row.masked.phone, row.masked.address) == ("欧***", "139****5678", "广东省深圳市****")
    assert not events("prize_delivery.reveal")  # a masked list is no query of personal data

    with acting(operator):
        contact = records.reveal(operator, wheel.theme, outcome.draw_id)

    assert (contact.recipient, contact.phone, contact.address) == ("欧阳娜娜", "13912345678", "广东省深圳市南山区科技园")
    [event] = events("prize_delivery.reveal")
    delivery = db.session.execute(select(PrizeDelivery)).scalar_one()
    assert event.actor_id == operator.id and event.object_id == str(delivery.id) and event.ip == "10.0.0.9"
    assert event.after == {"draw_no": outcome.draw_no, "fields": ["recipient", "phone", "address"]}
    assert "13912345678" not in json.dumps(event.after)


@pytest.mark.parametrize("typed", ["", "   ", "A" * 65, "SF 1234", "-SF1234", "顺丰123", "SF1234/5"])
def test_a_tracking_number_must_be_one(wheel, operator, typed):
    outcome = gift_with_address(wheel.theme)

    with pytest.raises(records.InvalidTrackingNo):
        records.ship(operator, wheel.theme, [outcome.draw_id], typed)

    assert draw_row(outcome).fulfilment_status == "address_given"


def test_a_gift_is_shipped_once_with_its_tracking_number(wheel, operator):
    outcome = gift_with_address(wheel.theme)

    with acting(operator):
        [shipped] = records.ship(operator, wheel.theme, [outcome.draw_id], " SF-1234567890 ")
        [again] = records.ship(operator, wheel.theme, [outcome.draw_id], "YT0000000001")

    assert shipped.done and "SF-1234567890" in shipped.message
    assert not again.done and "already shipped" in again.message and "SF-1234567890" in again.message
    delivery = db.session.execute(select(PrizeDelivery).execution_options(populate_existing=True)).scalar_one()
    assert (delivery.status, delivery.tracking_no, delivery.shipped_by) == ("shipped", "SF-1234567890", operator.id)
    assert delivery.shipped_at is not None and draw_row(outcome).fulfilment_status == "shipped"
    [event] = events("prize_delivery.ship")
    assert event.actor_id == operator.id and event.object_id == str(outcome.draw_id)
    assert event.before == {"fulfilment_status": "address_given"}
    assert event.after == {"fulfilment_status": "shipped", "tracking_no": "SF-1234567890", "draw_no": outcome.draw_no}


def test_only_a_gift_with_its_address_can_be_shipped(wheel, operator):
    waiting = spin(wheel.theme, "oWaiting00001", GIFT)
    fulfil(waiting)
    points = spin(wheel.theme, "oPoints000001", POINTS)
    fulfil(points)

    refused = records.ship(operator, wheel.theme, [waiting.draw_id, points.draw_id], "SF1234567890")

    assert [o.done for o in refused] == [False, False]
    assert "has not left a delivery address" in refused[0].message and "not a gift" in refused[1].message
    assert draw_row(waiting).fulfilment_status == "awaiting_address" and not events("prize_delivery.ship")


def test_two_gifts_of_one_winner_go_in_one_parcel(wheel, operator):
    first = gift_with_address(wheel.theme, "oTwice0000001")
    second = gift_with_address(wheel.theme, "oTwice0000001")

    outcomes = records.ship(operator, wheel.theme, [second.draw_id, first.draw_id, first.draw_id], "ZTO778899")

    assert [o.done for o in outcomes] == [True, True]
    assert {d.tracking_no for d in db.session.execute(select(PrizeDelivery)).scalars()} == {"ZTO778899"}
    assert len(events("prize_delivery.ship")) == 2


def test_an_uploaded_shipping_list_ships_row_by_row(wheel, operator):
    good = gift_with_address(wheel.theme, "oGood00000001")
    numeric = gift_with_address(wheel.theme, "oNumeric00001")
    untouched = gift_with_address(wheel.theme, "oLater0000001")
    waiting = spin(wheel.theme, "oWaiting00001", GIFT)
    fulfil(waiting)
    lines = records.read_shipping_file(workbook([
        (good.draw_no, "SF1111111111", "保温杯"),
        (numeric.draw_no, 773012345678, None),  # typed into Excel as a number
        (untouched.draw_no, None, "保温杯"),  # left for later
        (None, None, None),  # a blank row
        ("DNOSUCHDRAW00000", "SF2222222222"),
        (waiting.draw_no, "SF3333333333"),
        (good.draw_no.lower(), "SF4444444444"),
        (untouched.draw_no, "SF 5555"),
    ]))

    outcomes = records.ship_lines(operator, wheel.theme, lines)

    assert [(o.row, o.done) for o in outcomes] == [(2, True), (3, True), (4, False), (6, False), (7, False),
                                                  (8, False), (9, False)]
    messages = [o.message for o in outcomes]
    assert "Skipped" in messages[2] and "no draw" in messages[3] and "has not left a delivery address" in messages[4]
    assert "more than once" in messages[5] and "1 to 64" in messages[6]
    assert outcomes[1].tracking_no == "773012345678"
    assert draw_row(untouched).fulfilment_status == "address_given"
    assert records.tab_counts(operator, wheel.theme) == {"awaiting": 1, "to_ship": 1, "shipped": 2}


def test_a_file_that_is_no_shipping_list_is_refused(wheel):
    import io

    for data, words in ((b"", "Choose"), (b"not a workbook", "not an Excel workbook"), (workbook([]).read(), "no rows")):
        with pytest.raises(records.ShippingFileError) as refused:
            records.read_shipping_file(io.BytesIO(data))
        assert words in str(refused.value)


# --- retrying a failed fulfilment ----------------------------------------------------------------

def test_a_failed_coupon_fulfilment_is_retried_once_its_cause_is_fixed(make, bank, operator):
    connect_ysh_account(bank)
    theme = make.wheel_theme(bank, thanks_weight=1)
    coupon = make.coupon_activity(theme=theme, issue_total=10, per_member_limit=1, enabled=False)
    make.prize(theme, kind="coupon", name="10元券", coupon_activity_id=coupon.id, stock=3, weight=100, sort_order=1)
    outcome = spin(theme, "oCoupon000001", 0)
    fulfil(outcome)
    assert draw_row(outcome).fulfilment_status == "failed"
    note = draw_row(outcome).fulfilment_note

    db.session.get(CouponActivity, coupon.id).enabled = True
    db.session.commit()
    with acting(operator):
        [retried] = records.retry_fulfilment(operator, theme, [outcome.draw_id])
        [again] = records.retry_fulfilment(operator, theme, [outcome.draw_id])

    assert retried.done and not again.done and "has not failed" in again.message
    assert draw_row(outcome).fulfilment_status == "pending" and draw_row(outcome).fulfilment_note is None
    [event] = events("theme_draw.retry_fulfilment")
    assert event.actor_id == operator.id and event.before == {"fulfilment_status": "failed", "fulfilment_note": note}
    message = db.session.execute(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"{fulfilment.FULFIL_KIND}:{outcome.draw_id}:retry:1")).scalar_one()

    from app.core import outbox
    assert outbox.deliver(message.id).status == "delivered"
    row = draw_row(outcome)
    issue = db.session.execute(select(CouponIssue)).scalar_one()
    assert row.fulfilment_status == "fulfilled" and row.coupon_issue_id == issue.id
    assert db.session.execute(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.kind == fulfilment.FULFIL_KIND)).scalar_one() == 2


def test_a_draw_that_did_not_fail_is_not_retried(wheel, operator):
    outcome = gift_with_address(wheel.theme)

    [refused] = records.retry_fulfilment(operator, wheel.theme, [outcome.draw_id])

    assert not refused.done and "To ship" in refused.message
    assert draw_row(outcome).fulfilment_status == "address_given" and not events("theme_draw.retry_fulfilment")


def test_two_operators_shipping_one_gift_at_once_ship_it_once(app, make, bank, wheel, operator):
    """The draw's row lock serialises them: one ships, the other is told it already went."""
    import threading

    from flask_babel import force_locale

    from app.activities.models import ThemeActivity
    from app.auth.models import Operator

    outcome = gift_with_address(wheel.theme)
    second = make.operator(org=bank, roles=("operator",), username="gift_operator_2")
    ids = [(operator.id, "SF0000000001"), (second.id, "YT0000000002")]
    gate, results = threading.Barrier(2), []

    def ship_as(operator_id: int, tracking: str) -> None:
        with app.app_context(), force_locale("en"):
            actor = db.session.get(Operator, operator_id)
            theme = db.session.get(ThemeActivity, wheel.theme.id)
            gate.wait()
            results.extend(records.ship(actor, theme, [outcome.draw_id], tracking))
            db.session.remove()

    threads = [threading.Thread(target=ship_as, args=pair) for pair in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(o.done for o in results) == [False, True]
    winner = next(o for o in results if o.done)
    delivery = db.session.execute(select(PrizeDelivery).execution_options(populate_existing=True)).scalar_one()
    assert delivery.tracking_no == winner.tracking_no and len(events("prize_delivery.ship")) == 1
    assert "already shipped" in next(o for o in results if not o.done).message
