"""Group classes: seats never oversold under concurrency, one live booking per member, class credits."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from app.core.timeutil import utcnow
from app.extensions import db
from app.gym import services
from app.gym.models import ClassBooking, ClassCredit, ClassSession, GymGrant
from app.gym.services import AlreadyBooked, ClassFull, GymError, ReversalRefused
from tests.gym.helpers import detached


def session_row(session_id: int) -> ClassSession:
    return db.session.get(ClassSession, session_id, populate_existing=True)


def live_bookings(session_id: int) -> int:
    return db.session.execute(select(func.count()).select_from(ClassBooking).where(
        ClassBooking.session_id == session_id, ClassBooking.status == "booked")).scalar_one()


def test_session_defaults_come_from_the_product(gym):
    starts = utcnow() + timedelta(days=1)
    session = services.create_class_session(gym.yoga, starts, gym.operator.id)
    assert (session.capacity, session.course_name, session.seats_taken) == (20, "瑜伽", 0)
    assert session.ends_at - session.starts_at == timedelta(minutes=60)
    with pytest.raises(GymError):
        services.create_class_session(gym.coaching, starts, gym.operator.id)


def test_booking_takes_a_seat_and_says_so(gym):
    session = gym.session(capacity=3)
    granted = services.fulfil(gym.member, gym.yoga, 1, "mt-book", gym.operator.id, session_id=session.id)
    assert granted.kind == "booking" and granted.result_type == "booking"
    assert "瑜伽" in granted.summary and "1" in granted.summary and "3" in granted.summary
    assert session_row(session.id).seats_taken == 1
    booking = db.session.get(ClassBooking, granted.result_id)
    assert (booking.member_id, booking.status, booking.source_ref) == (gym.member.id, "booked", "mt-book")


def test_twenty_threads_on_five_seats_book_exactly_five(app, gym):
    session = gym.session(capacity=5)
    members = [gym.make.member(gym.org, name=f"会员{n}") for n in range(20)]
    member_ids, product_id, operator_id, session_id = [m.id for m in members], gym.yoga.id, gym.operator.id, session.id
    start = threading.Barrier(len(member_ids))
    booked, full, errors = [], [], []

    def book(member_id: int) -> None:
        try:
            with app.app_context():
                member, product = detached(member_id, product_id)
                start.wait(30)
                try:
                    booked.append(services.book_class(member, product, session_id, f"ref-{member_id}", operator_id))
                except ClassFull:
                    full.append(member_id)
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=book, args=(m,)) for m in member_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(booked) == 5 and len(full) == 15
    assert session_row(session_id).seats_taken == 5
    assert live_bookings(session_id) == 5
    assert db.session.execute(select(func.count()).select_from(GymGrant)).scalar_one() == 5


def test_the_same_member_cannot_book_a_session_twice(gym):
    session = gym.session(capacity=5)
    services.book_class(gym.member, gym.yoga, session.id, "first", gym.operator.id)
    with pytest.raises(AlreadyBooked):
        services.book_class(gym.member, gym.yoga, session.id, "second", gym.operator.id)
    assert session_row(session.id).seats_taken == 1 and live_bookings(session.id) == 1
    assert db.session.execute(select(GymGrant.source_ref)).scalars().all() == ["first"]


def test_the_same_member_booking_from_two_threads_gets_one_seat(app, gym):
    session = gym.session(capacity=5)
    member_id, product_id, operator_id, session_id = gym.member.id, gym.yoga.id, gym.operator.id, session.id
    threads_count = 6
    start = threading.Barrier(threads_count)
    booked, refused, errors = [], [], []

    def book(n: int) -> None:
        try:
            with app.app_context():
                member, product = detached(member_id, product_id)
                start.wait(30)
                try:
                    booked.append(services.book_class(member, product, session_id, f"dup-{n}", operator_id))
                except AlreadyBooked:
                    refused.append(n)
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=book, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(booked) == 1 and len(refused) == threads_count - 1
    assert session_row(session_id).seats_taken == 1 and live_bookings(session_id) == 1


def test_the_partial_unique_index_holds_for_live_bookings_only(gym):
    session = gym.session(capacity=5)
    values = {"org": gym.org.id, "session": session.id, "member": gym.member.id}
    insert = text("INSERT INTO class_bookings (org_id, session_id, member_id, status, created_at, updated_at) "
                  "VALUES (:org, :session, :member, :status, now(), now())")
    db.session.execute(insert, {**values, "status": "cancelled"})
    db.session.execute(insert, {**values, "status": "cancelled"})
    db.session.execute(insert, {**values, "status": "booked"})
    db.session.commit()
    with pytest.raises(IntegrityError) as error:
        db.session.execute(insert, {**values, "status": "booked"})
    assert "uq_class_bookings_live" in str(error.value)
    db.session.rollback()


def test_seats_never_exceed_capacity_even_if_asked_directly(gym):
    session = gym.session(capacity=1)
    with pytest.raises(IntegrityError):
        db.session.execute(text("UPDATE class_sessions SET seats_taken = 2 WHERE id = :id"), {"id": session.id})
    db.session.rollback()


def test_reversing_a_booking_cancels_it_releases_the_seat_and_allows_booking_again(gym):
    session = gym.session(capacity=1)
    services.book_class(gym.member, gym.yoga, session.id, "b1", gym.operator.id)
    other = gym.make.member(gym.org, name="李四")
    with pytest.raises(ClassFull):
        services.book_class(other, gym.yoga, session.id, "b2", gym.operator.id)
    result = services.reverse("b1", gym.operator.id)
    assert result.kind == "booking" and "瑜伽" in result.summary
    assert session_row(session.id).seats_taken == 0 and live_bookings(session.id) == 0
    assert services.reverse("b1", gym.operator.id).already
    assert session_row(session.id).seats_taken == 0
    services.book_class(gym.member, gym.yoga, session.id, "b3", gym.operator.id)
    assert session_row(session.id).seats_taken == 1 and live_bookings(session.id) == 1


def test_no_session_leaves_a_class_credit_and_its_reversal_removes_it(gym):
    granted = services.fulfil(gym.member, gym.yoga, 2, "credit-1", gym.operator.id)
    assert granted.kind == "class_credit" and granted.result_type == "class_credit"
    services.book_class(gym.member, gym.yoga, None, "credit-2", gym.operator.id)
    credit = db.session.execute(select(ClassCredit).execution_options(populate_existing=True)).scalar_one()
    assert (credit.course_name, credit.credits_left) == ("瑜伽", 3)
    assert services.fulfil(gym.member, gym.yoga, 2, "credit-1", gym.operator.id).replayed
    services.reverse("credit-1", gym.operator.id)
    credit = db.session.execute(select(ClassCredit).execution_options(populate_existing=True)).scalar_one()
    assert credit.credits_left == 1
    with pytest.raises(ReversalRefused):
        db.session.execute(text("UPDATE class_credits SET credits_left = 0"))
        db.session.commit()
        services.reverse("credit-2", gym.operator.id)  # its credit was used
    status = db.session.execute(select(GymGrant.status).where(GymGrant.source_ref == "credit-2")).scalar_one()
    assert status == "granted"


def test_booking_refuses_wrong_sessions(gym):
    other_class = gym.product("group_class", {"course_name": "动感单车", "capacity": 10, "duration_minutes": 45})
    spin = gym.session(product=other_class)
    with pytest.raises(GymError):
        services.book_class(gym.member, gym.yoga, spin.id, "x1", gym.operator.id)  # session of another product
    with pytest.raises(GymError):
        services.book_class(gym.member, gym.yoga, 999999, "x2", gym.operator.id)
    past = services.create_class_session(gym.yoga, utcnow() - timedelta(hours=2), gym.operator.id, capacity=5)
    with pytest.raises(GymError):
        services.book_class(gym.member, gym.yoga, past.id, "x3", gym.operator.id)
    cancelled = gym.session()
    cancelled.status = "cancelled"
    db.session.commit()
    with pytest.raises(GymError):
        services.book_class(gym.member, gym.yoga, cancelled.id, "x4", gym.operator.id)
    with pytest.raises(GymError):
        services.fulfil(gym.member, gym.yoga, 2, "x5", gym.operator.id, session_id=gym.session().id)
    assert db.session.execute(select(func.count()).select_from(ClassBooking)).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(GymGrant)).scalar_one() == 0
