"""Tenancy of the gym services, the member's records and their partial."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from flask import render_template
from flask_babel import force_locale
from sqlalchemy import func, select

from app.core import audit
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from app.gym import services
from app.gym.models import ClassBooking, ClassCredit, GymGrant, LessonBalance, MembershipCard
from app.gym.services import GrantNotFound, GymError


def total(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_member_and_product_must_belong_to_the_same_organisation(gym):
    elsewhere = gym.make.org(kind="merchant")
    foreign_card = gym.make.product(elsewhere, "外店月卡", "membership_card", 100,
                                    {"duration_value": 1, "duration_unit": "month"})
    foreign_lessons = gym.make.product(elsewhere, "外店私教", "coaching_package", 100,
                                       {"lessons": 5, "course_name": "私教"})
    foreign_class = gym.make.product(elsewhere, "外店团课", "group_class", 100,
                                     {"course_name": "瑜伽", "capacity": 5, "duration_minutes": 60})
    for product in (foreign_card, foreign_lessons, foreign_class):
        with pytest.raises(GymError) as refused, force_locale("en"):
            services.fulfil(gym.member, product, 1, f"x-{product.id}", gym.operator.id)
        assert "different organisations" in str(refused.value)
    foreign_member = gym.make.member(elsewhere)
    with pytest.raises(GymError):
        services.credit_lessons(foreign_member, gym.coaching, 3, "y", gym.operator.id)
    for model in (MembershipCard, LessonBalance, ClassCredit, GymGrant):
        assert total(model) == 0


def test_a_session_of_another_organisation_cannot_be_booked(gym):
    elsewhere = gym.make.org(kind="merchant")
    foreign_class = gym.make.product(elsewhere, "外店团课", "group_class", 100,
                                     {"course_name": "瑜伽", "capacity": 5, "duration_minutes": 60})
    foreign_session = services.create_class_session(foreign_class, utcnow() + timedelta(days=1), None)
    with pytest.raises(GymError):  # nor may our operator schedule classes there
        services.create_class_session(foreign_class, utcnow() + timedelta(days=1), gym.operator.id)
    with pytest.raises(GymError):
        services.book_class(gym.member, gym.yoga, foreign_session.id, "z", gym.operator.id)
    assert total(ClassBooking) == 0


def test_an_operator_of_another_organisation_may_neither_grant_nor_reverse(gym):
    stranger = gym.make.operator(gym.make.org(kind="merchant"))
    with pytest.raises(GymError):
        services.fulfil(gym.member, gym.coaching, 1, "s1", stranger.id)
    assert total(GymGrant) == 0
    services.fulfil(gym.member, gym.coaching, 1, "s2", gym.operator.id)
    with pytest.raises(GrantNotFound):
        services.reverse("s2", stranger.id)
    assert db.session.execute(select(GymGrant.status)).scalar_one() == "granted"


def test_an_operator_of_a_parent_organisation_may_act_and_is_the_audited_actor(gym):
    store = gym.make.org(kind="store", parent=gym.org)
    member = gym.make.member(store)
    card = gym.make.product(store, "门店月卡", "membership_card", 100, {"duration_value": 1, "duration_unit": "month"})
    someone_else = audit.Actor(None, "voucher-job", None, "10.0.0.1")
    with audit.acting_as(someone_else):
        services.fulfil(member, card, 1, "p1", gym.operator.id, today=date(2027, 5, 1))
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "gym.card_open")).scalar_one()
    assert (event.actor_id, event.actor_name, event.org_id, event.ip) == \
        (gym.operator.id, gym.operator.username, store.id, "10.0.0.1")


def test_member_gym_records_holds_only_the_members_rows(gym):
    other = gym.make.member(gym.org, name="李四")
    session = gym.session(capacity=5)
    services.fulfil(gym.member, gym.month_card, 1, "a", gym.operator.id, today=date(2027, 1, 1))
    services.fulfil(gym.member, gym.coaching, 1, "b", gym.operator.id)
    services.fulfil(gym.member, gym.yoga, 1, "c", gym.operator.id, session_id=session.id)
    services.fulfil(gym.member, gym.yoga, 2, "d", gym.operator.id)
    services.fulfil(other, gym.visits_card, 1, "e", gym.operator.id)
    services.fulfil(other, gym.coaching, 1, "f", gym.operator.id)

    records = services.member_gym_records(gym.member, today=date(2027, 1, 15))
    assert [c.product.name for c in records.cards] == ["月卡"]
    assert [(b.course_name, b.lessons_left) for b in records.lessons] == [("私教", 10)]
    assert [(b.session.course_name, b.status) for b in records.bookings] == [("瑜伽", "booked")]
    assert [(c.course_name, c.credits_left) for c in records.credits] == [("瑜伽", 2)]
    assert not records.empty
    assert services.member_gym_records(gym.make.member(gym.org, name="王五")).empty


def render(gym_records) -> str:
    return render_template("members/_gym_records.html", gym=gym_records)


def test_partial_shows_the_records(app, gym):
    session = gym.session(capacity=5)
    services.fulfil(gym.member, gym.month_card, 1, "a", gym.operator.id, source="meituan", today=date(2027, 1, 1))
    services.fulfil(gym.member, gym.visits_card, 1, "v", gym.operator.id, today=date(2027, 1, 1))
    services.fulfil(gym.member, gym.coaching, 1, "b", gym.operator.id)
    services.fulfil(gym.member, gym.yoga, 1, "c", gym.operator.id, session_id=session.id)
    services.fulfil(gym.member, gym.yoga, 3, "d", gym.operator.id)
    records = services.member_gym_records(gym.member, today=date(2027, 3, 1))
    with app.test_request_context("/"), force_locale("en"):
        html = render(records)
    for card in records.cards:
        assert f'<span class="code font-monospace">{card.card_no}</span>' in html
    assert "月卡" in html and "2027-02-01" in html and "10次卡" in html
    assert "10 of 10" in html  # visits left of the visits card
    assert "Expired" in html and "Active" in html  # the month card lapsed on 1 Feb
    assert "Meituan" in html and "私教" in html and "瑜伽" in html
    assert "1 / 5" in html
    assert 'data-testid="empty"' not in html


def test_partial_shows_empty_states(app, gym):
    with app.test_request_context("/"), force_locale("en"):
        html = render(services.member_gym_records(gym.member))
    for message in ("No membership cards.", "No coaching lessons.", "No class bookings.", "No class credits."):
        assert message in html
    assert html.count('data-testid="empty"') == 4


def test_a_merchants_products_serve_its_stores_members_but_not_others(make):
    """Card types live in the merchant's catalogue; records live with the member's store."""
    from datetime import date

    from app.gym import services
    from app.gym.services import GymError

    merchant = make.org(kind="merchant")
    store = make.org(kind="store", parent=merchant)
    stranger = make.org(kind="merchant")
    card_type = make.product(merchant, kind="membership_card", attributes={"duration_value": 1, "duration_unit": "month"})
    member = make.member(store)
    granted = services.fulfil(member, card_type, 1, "ref-merchant-1", None, today=date(2026, 1, 31))
    assert granted.kind == "card_open" and granted.result_type == "card"
    outsider = make.member(stranger)
    with pytest.raises(GymError):
        services.fulfil(outsider, make.product(store, kind="membership_card", attributes={"visits": 5}), 1,
                        "ref-merchant-2", None)
