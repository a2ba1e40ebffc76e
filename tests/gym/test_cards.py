"""Card date rules: opening, renewal from the end date or (lapsed) from today, month ends, years, visits."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from app.core.audit import AuditEvent, verify_chain
from app.extensions import db
from app.gym import services
from app.gym.models import CardEvent, GymGrant, MembershipCard
from app.gym.services import GymError, add_duration, add_months


def cards(member) -> list[MembershipCard]:
    return db.session.execute(select(MembershipCard).where(MembershipCard.member_id == member.id)
                              .order_by(MembershipCard.id)).scalars().all()


def events(card) -> list[CardEvent]:
    return db.session.execute(
        select(CardEvent).where(CardEvent.card_id == card.id).order_by(CardEvent.id)).scalars().all()


@pytest.mark.parametrize("start, months, expected", [
    (date(2027, 1, 31), 1, date(2027, 2, 28)),   # shorter month: its last day
    (date(2028, 1, 31), 1, date(2028, 2, 29)),   # leap year
    (date(2027, 3, 31), 1, date(2027, 4, 30)),
    (date(2027, 1, 15), 1, date(2027, 2, 15)),
    (date(2027, 11, 30), 3, date(2028, 2, 29)),  # across the year end
    (date(2027, 12, 31), 1, date(2028, 1, 31)),
    (date(2027, 8, 31), 6, date(2028, 2, 29)),
])
def test_month_arithmetic_clamps_to_the_end_of_shorter_months(start, months, expected):
    assert add_months(start, months) == expected


def test_year_and_day_arithmetic():
    assert add_duration(date(2028, 2, 29), 1, "year") == date(2029, 2, 28)
    assert add_duration(date(2027, 6, 1), 2, "year") == date(2029, 6, 1)
    assert add_duration(date(2027, 1, 31), 30, "day") == date(2027, 3, 2)
    with pytest.raises(GymError):
        add_duration(date(2027, 1, 1), 1, "week")


def test_new_card_starts_today_and_ends_after_its_duration(gym):
    today = date(2027, 1, 31)
    granted = services.open_or_renew_card(gym.member, gym.month_card, "meituan", "mt-1", gym.operator.id, today)
    [card] = cards(gym.member)
    assert (card.starts_on, card.ends_on) == (today, date(2027, 2, 28))
    assert card.status == "active" and card.visits_total is None and card.visits_left is None
    assert card.source == "meituan" and card.source_ref == "mt-1" and card.price_fen == 29900
    assert card.operator_id == gym.operator.id and card.product_id == gym.month_card.id
    assert card.card_no.startswith("C") and len(card.card_no) == 12
    assert granted.kind == "card_open" and granted.result_type == "card" and granted.result_id == card.id
    assert not granted.replayed
    assert card.card_no in granted.summary and "2027-02-28" in granted.summary
    [event] = events(card)
    assert (event.kind, event.old_ends_on, event.new_ends_on, event.source_ref) == \
        ("open", None, date(2027, 2, 28), "mt-1")
    audit = db.session.execute(select(AuditEvent).where(AuditEvent.action == "gym.card_open")).scalar_one()
    assert audit.actor_id == gym.operator.id and audit.org_id == gym.org.id and audit.object_id == str(card.id)
    assert verify_chain().ok


def test_renewal_while_valid_extends_from_the_end_date(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "sale-1", gym.operator.id, date(2027, 1, 10))
    granted = services.open_or_renew_card(gym.member, gym.month_card, "douyin", "dy-2", gym.operator.id,
                                          date(2027, 1, 20))
    [card] = cards(gym.member)
    assert card.ends_on == date(2027, 3, 10) and card.starts_on == date(2027, 1, 10)
    assert granted.kind == "card_renew" and "2027-02-10" in granted.summary and "2027-03-10" in granted.summary
    renew = events(card)[1]
    assert (renew.kind, renew.old_ends_on, renew.new_ends_on, renew.extended_from) == \
        ("renew", date(2027, 2, 10), date(2027, 3, 10), date(2027, 2, 10))


def test_renewal_on_the_last_valid_day_still_counts_from_the_end_date(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "b", gym.operator.id, date(2027, 2, 10))
    assert cards(gym.member)[0].ends_on == date(2027, 3, 10)


def test_renewal_after_lapse_counts_from_today(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    card = cards(gym.member)[0]
    card.status = "expired"  # as an expiry job would mark it
    db.session.commit()
    services.open_or_renew_card(gym.member, gym.month_card, "meituan", "b", gym.operator.id, date(2027, 3, 1))
    [card] = cards(gym.member)
    assert card.ends_on == date(2027, 4, 1) and card.status == "active"
    renew = events(card)[1]
    assert (renew.old_ends_on, renew.extended_from, renew.new_ends_on) == \
        (date(2027, 2, 10), date(2027, 3, 1), date(2027, 4, 1))
    assert card.status_on(date(2027, 4, 1)) == "active" and card.status_on(date(2027, 4, 2)) == "expired"


def test_renewal_of_a_month_card_opened_on_the_31st(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 31))
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "b", gym.operator.id, date(2027, 2, 1))
    assert cards(gym.member)[0].ends_on == date(2027, 3, 28)  # 28 Feb + 1 month


def test_year_card_and_day_card_and_quantity(gym):
    services.open_or_renew_card(gym.member, gym.year_card, "front_desk", "y", gym.operator.id, date(2028, 2, 29))
    assert cards(gym.member)[0].ends_on == date(2029, 2, 28)
    other = gym.make.member(gym.org, name="李四")
    services.open_or_renew_card(other, gym.day_card, "front_desk", "d", gym.operator.id, date(2027, 1, 1))
    assert cards(other)[0].ends_on == date(2027, 1, 31)
    third = gym.make.member(gym.org, name="王五")
    granted = services.fulfil(third, gym.month_card, 3, "q", gym.operator.id, today=date(2027, 11, 30))
    card = cards(third)[0]
    assert card.ends_on == date(2028, 2, 29) and card.price_fen == 3 * 29900
    assert db.session.execute(select(GymGrant.quantity).where(GymGrant.source_ref == "q")).scalar_one() == 3
    assert granted.kind == "card_open"


def test_a_time_card_renews_the_current_time_card_even_of_another_card_type(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    services.open_or_renew_card(gym.member, gym.year_card, "front_desk", "b", gym.operator.id, date(2027, 1, 20))
    [card] = cards(gym.member)
    assert card.ends_on == date(2028, 2, 10) and card.product_id == gym.month_card.id


def test_visits_card_is_valid_one_year_and_renewal_adds_visits(gym):
    today = date(2027, 3, 15)
    granted = services.open_or_renew_card(gym.member, gym.visits_card, "meituan", "v1", gym.operator.id, today)
    [card] = cards(gym.member)
    assert (card.starts_on, card.ends_on) == (today, date(2028, 3, 15))
    assert (card.visits_total, card.visits_left) == (10, 10)
    assert "10" in granted.summary
    card.visits_left = 4  # six visits used at the door
    db.session.commit()
    services.open_or_renew_card(gym.member, gym.visits_card, "meituan", "v2", gym.operator.id, date(2027, 9, 1))
    [card] = cards(gym.member)
    assert (card.visits_total, card.visits_left) == (20, 14)
    assert card.ends_on == date(2028, 9, 1)  # at least a year from the renewal
    renew = events(card)[1]
    assert (renew.old_visits_left, renew.new_visits_left) == (4, 14)


def test_time_and_visits_cards_are_separate_kinds(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    services.open_or_renew_card(gym.member, gym.visits_card, "front_desk", "b", gym.operator.id, date(2027, 1, 10))
    time_card, visits_card = cards(gym.member)
    assert time_card.ends_on == date(2027, 2, 10) and time_card.visits_total is None
    assert visits_card.visits_total == 10


def test_a_closed_card_is_not_renewed_a_new_one_is_opened(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    services.reverse_grant("a", gym.operator.id)
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "b", gym.operator.id, date(2027, 1, 12))
    first, second = cards(gym.member)
    assert first.status == "closed" and second.status == "active" and second.starts_on == date(2027, 1, 12)
    assert first.card_no != second.card_no


def test_card_rules_refuse_bad_input(gym):
    with pytest.raises(GymError):
        services.open_or_renew_card(gym.member, gym.month_card, "taobao", "x", gym.operator.id)
    with pytest.raises(GymError):
        services.open_or_renew_card(gym.member, gym.coaching, "front_desk", "x", gym.operator.id)
    with pytest.raises(GymError):
        services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "  ", gym.operator.id)
    with pytest.raises(GymError):
        services.fulfil(gym.member, gym.month_card, 0, "x", gym.operator.id)
    broken = gym.product("membership_card", {})
    with pytest.raises(GymError):
        services.open_or_renew_card(gym.member, broken, "front_desk", "x", gym.operator.id)
    goods = gym.product("goods", {"stock": 3})
    with pytest.raises(GymError):
        services.fulfil(gym.member, goods, 1, "x", gym.operator.id)
    assert db.session.execute(select(func.count()).select_from(MembershipCard)).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(GymGrant)).scalar_one() == 0


def test_concurrent_grants_for_one_member_open_one_card_and_extend_it(app, gym):
    """Two vouchers of one member verified at the same moment: one opens the card, the other renews it."""
    import threading

    from tests.gym.helpers import detached

    member_id, product_id, operator_id = gym.member.id, gym.month_card.id, gym.operator.id
    threads_count = 4
    start = threading.Barrier(threads_count)
    results, errors = [], []

    def grant(n: int) -> None:
        try:
            with app.app_context():
                member, product = detached(member_id, product_id)
                start.wait(30)
                results.append(services.open_or_renew_card(member, product, "douyin", f"dy-{n}", operator_id,
                                                           date(2027, 1, 10)))
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=grant, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(r.kind for r in results) == ["card_open"] + ["card_renew"] * (threads_count - 1)
    [card] = cards(gym.member)
    assert card.ends_on == date(2027, 5, 10)  # four months from 10 Jan
