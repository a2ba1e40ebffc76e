"""A source_ref grants once; its reversal undoes exactly that grant, once, or refuses when it was used."""
from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from app.core.audit import AuditEvent, verify_chain
from app.extensions import db
from app.gym import services
from app.gym.models import CardEvent, GymGrant, LessonBalance, LessonEntry, MembershipCard
from app.gym.services import GrantConflict, GrantNotFound, GymError, ReversalRefused
from tests.gym.helpers import detached


def count(model, *where) -> int:
    return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def the_card(member) -> MembershipCard:
    return db.session.execute(select(MembershipCard).where(MembershipCard.member_id == member.id)
                              .order_by(MembershipCard.id.desc()).limit(1)
                              .execution_options(populate_existing=True)).scalar_one()


def balance_of(member) -> LessonBalance:
    return db.session.execute(select(LessonBalance).where(LessonBalance.member_id == member.id)
                              .execution_options(populate_existing=True)).scalar_one()


# --- idempotency ------------------------------------------------------------------------------

def test_the_same_source_ref_grants_a_card_renewal_once(gym):
    services.open_or_renew_card(gym.member, gym.month_card, "front_desk", "a", gym.operator.id, date(2027, 1, 10))
    first = services.fulfil(gym.member, gym.month_card, 1, "mt-9", gym.operator.id, source="meituan",
                            today=date(2027, 1, 20))
    again = services.fulfil(gym.member, gym.month_card, 1, "mt-9", gym.operator.id, source="meituan",
                            today=date(2027, 1, 21))
    assert again.replayed and not first.replayed
    assert (again.summary, again.kind, again.result_id) == (first.summary, first.kind, first.result_id)
    assert the_card(gym.member).ends_on == date(2027, 3, 10)
    assert count(CardEvent, CardEvent.kind == "renew") == 1
    assert count(GymGrant) == 2
    assert count(AuditEvent, AuditEvent.action == "gym.card_renew") == 1


def test_the_same_source_ref_credits_lessons_once_and_the_ledger_key_holds(gym):
    first = services.fulfil(gym.member, gym.coaching, 2, "dy-1", gym.operator.id)
    again = services.fulfil(gym.member, gym.coaching, 2, "dy-1", gym.operator.id)
    assert again.replayed and again.summary == first.summary
    balance = balance_of(gym.member)
    assert (balance.lessons_total, balance.lessons_left, balance.course_name) == (20, 20, "私教")
    assert count(LessonEntry) == 1
    # The database itself refuses a second entry of the same business key.
    db.session.add(LessonEntry(org_id=gym.org.id, balance_id=balance.id, delta=20, kind="credit", reason="retry",
                               source_ref="dy-1"))
    with pytest.raises(IntegrityError):
        db.session.flush()
    db.session.rollback()


def test_a_source_ref_used_for_another_member_or_product_is_refused(gym):
    services.fulfil(gym.member, gym.coaching, 1, "ref-1", gym.operator.id)
    other = gym.make.member(gym.org, name="李四")
    with pytest.raises(GrantConflict):
        services.fulfil(other, gym.coaching, 1, "ref-1", gym.operator.id)
    with pytest.raises(GrantConflict):
        services.fulfil(gym.member, gym.month_card, 1, "ref-1", gym.operator.id)
    assert count(GymGrant) == 1 and count(MembershipCard) == 0


def test_concurrent_calls_with_one_source_ref_grant_once(app, gym):
    member_id, product_id, operator_id = gym.member.id, gym.coaching.id, gym.operator.id
    threads_count = 8
    start = threading.Barrier(threads_count)
    results, errors = [], []

    def call() -> None:
        try:
            with app.app_context():
                member, product = detached(member_id, product_id)
                start.wait(30)
                results.append(services.fulfil(member, product, 1, "same-ref", operator_id))
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == threads_count
    assert sum(1 for r in results if not r.replayed) == 1
    assert balance_of(gym.member).lessons_left == 10
    assert count(LessonEntry) == 1 and count(GymGrant) == 1


def test_a_reversed_source_ref_cannot_be_granted_again(gym):
    services.fulfil(gym.member, gym.coaching, 1, "r", gym.operator.id)
    services.reverse("r", gym.operator.id)
    with pytest.raises(GrantConflict):
        services.fulfil(gym.member, gym.coaching, 1, "r", gym.operator.id)
    assert balance_of(gym.member).lessons_left == 0


# --- reversal of cards ------------------------------------------------------------------------

def test_reversing_an_opening_closes_the_card_once(gym):
    services.fulfil(gym.member, gym.month_card, 1, "open-1", gym.operator.id, today=date(2027, 1, 10))
    result = services.reverse("open-1", gym.operator.id)
    card = the_card(gym.member)
    assert card.status == "closed" and card.ends_on == date(2027, 2, 10)
    assert result.kind == "card_open" and not result.already and card.card_no in result.summary
    again = services.reverse("open-1", gym.operator.id)
    assert again.already and again.summary == result.summary
    assert [e.kind for e in db.session.execute(select(CardEvent).order_by(CardEvent.id)).scalars()] == ["open", "close"]
    grant = db.session.execute(select(GymGrant)).scalar_one()
    assert grant.status == "reversed" and grant.reversed_by == gym.operator.id and grant.reversed_at is not None
    assert count(AuditEvent, AuditEvent.action == "gym.card_close") == 1
    assert verify_chain().ok


def test_reversing_a_renewal_shortens_back_to_the_old_end_date(gym):
    services.fulfil(gym.member, gym.month_card, 1, "a", gym.operator.id, today=date(2027, 1, 10))
    services.fulfil(gym.member, gym.year_card, 1, "b", gym.operator.id, today=date(2027, 1, 20))
    assert the_card(gym.member).ends_on == date(2028, 2, 10)
    result = services.reverse("b", gym.operator.id)
    card = the_card(gym.member)
    assert card.ends_on == date(2027, 2, 10) and card.status == "active"
    assert "2028-02-10" in result.summary and "2027-02-10" in result.summary
    shorten = db.session.execute(select(CardEvent).where(CardEvent.kind == "shorten")).scalar_one()
    assert (shorten.old_ends_on, shorten.new_ends_on, shorten.source_ref) == (date(2028, 2, 10), date(2027, 2, 10), "b")


def test_reversing_a_renewal_after_lapse_restores_the_lapsed_end_date(gym):
    services.fulfil(gym.member, gym.month_card, 1, "a", gym.operator.id, today=date(2027, 1, 10))
    services.fulfil(gym.member, gym.month_card, 1, "b", gym.operator.id, today=date(2027, 3, 1))
    services.reverse("b", gym.operator.id)
    assert the_card(gym.member).ends_on == date(2027, 2, 10)


def test_reversing_an_earlier_renewal_under_a_later_one_takes_off_only_its_days(gym):
    services.fulfil(gym.member, gym.day_card, 1, "a", gym.operator.id, today=date(2027, 1, 1))    # to 31 Jan
    services.fulfil(gym.member, gym.day_card, 1, "b", gym.operator.id, today=date(2027, 1, 5))    # to 2 Mar
    services.fulfil(gym.member, gym.day_card, 1, "c", gym.operator.id, today=date(2027, 1, 6))    # to 1 Apr
    services.reverse("b", gym.operator.id)
    assert the_card(gym.member).ends_on == date(2027, 3, 2)  # 30 days off, c's 30 days kept


def test_reversing_an_opening_that_was_renewed_since_is_refused(gym):
    services.fulfil(gym.member, gym.month_card, 1, "a", gym.operator.id, today=date(2027, 1, 10))
    services.fulfil(gym.member, gym.month_card, 1, "renewal-77", gym.operator.id, today=date(2027, 1, 11))
    with pytest.raises(ReversalRefused) as refused:
        services.reverse("a", gym.operator.id)
    assert "renewal-77" in str(refused.value)
    card = the_card(gym.member)
    assert card.status == "active" and card.ends_on == date(2027, 3, 10)
    services.reverse("renewal-77", gym.operator.id)
    services.reverse("a", gym.operator.id)
    assert the_card(gym.member).status == "closed"


def test_visits_card_reversal_is_refused_when_its_visits_were_used(gym):
    services.fulfil(gym.member, gym.visits_card, 1, "v1", gym.operator.id, today=date(2027, 1, 10))
    services.fulfil(gym.member, gym.visits_card, 1, "v2", gym.operator.id, today=date(2027, 1, 11))
    card = the_card(gym.member)
    card.visits_left = 8  # twelve of the twenty visits used
    db.session.commit()
    with pytest.raises(ReversalRefused):
        services.reverse("v2", gym.operator.id)
    assert (the_card(gym.member).visits_left, the_card(gym.member).visits_total) == (8, 20)
    card = the_card(gym.member)
    card.visits_left = 15
    db.session.commit()
    services.reverse("v2", gym.operator.id)
    card = the_card(gym.member)
    assert (card.visits_left, card.visits_total) == (5, 10)
    with pytest.raises(ReversalRefused):
        services.reverse("v1", gym.operator.id)  # five of its ten visits used
    assert the_card(gym.member).status == "active"


# --- reversal of lessons ----------------------------------------------------------------------

def test_reversing_lessons_removes_them(gym):
    services.credit_lessons(gym.member, gym.coaching, 5, "l1", gym.operator.id)
    services.credit_lessons(gym.member, gym.coaching, 10, "l2", gym.operator.id)
    result = services.reverse_lessons("l1", gym.operator.id)
    balance = balance_of(gym.member)
    assert (balance.lessons_left, balance.lessons_total) == (10, 10)
    assert "5" in result.summary and not result.already
    entries = db.session.execute(select(LessonEntry.delta, LessonEntry.kind).order_by(LessonEntry.id)).all()
    assert [tuple(e) for e in entries] == [(5, "credit"), (10, "credit"), (-5, "reversal")]
    assert services.reverse_lessons("l1", gym.operator.id).already
    assert balance_of(gym.member).lessons_left == 10
    assert balance.version == 4  # three changes, each with a version check


def test_reversing_lessons_already_used_is_refused_and_changes_nothing(gym):
    services.credit_lessons(gym.member, gym.coaching, 10, "l1", gym.operator.id)
    db.session.execute(update(LessonBalance).values(lessons_left=7))  # three lessons taken
    db.session.commit()
    with pytest.raises(ReversalRefused) as refused:
        services.reverse("l1", gym.operator.id)
    assert "7" in str(refused.value) and "10" in str(refused.value)
    balance = balance_of(gym.member)
    assert (balance.lessons_left, balance.lessons_total) == (7, 10)
    assert db.session.execute(select(GymGrant.status)).scalar_one() == "granted"
    assert count(LessonEntry) == 1


def test_reverse_lessons_refuses_a_reference_of_another_kind(gym):
    services.fulfil(gym.member, gym.month_card, 1, "c", gym.operator.id)
    with pytest.raises(GymError):
        services.reverse_lessons("c", gym.operator.id)
    assert the_card(gym.member).status == "active"


def test_reversing_an_unknown_reference_is_refused(gym):
    with pytest.raises(GrantNotFound):
        services.reverse("nothing-here", gym.operator.id)


def test_the_balance_never_goes_below_zero_even_if_asked_directly(gym):
    services.credit_lessons(gym.member, gym.coaching, 1, "l1", gym.operator.id)
    with pytest.raises(IntegrityError):
        db.session.execute(text("UPDATE lesson_balances SET lessons_left = lessons_left - 2"))
    db.session.rollback()


def test_concurrent_reversals_of_one_reference_undo_it_once(app, gym):
    services.credit_lessons(gym.member, gym.coaching, 4, "l1", gym.operator.id)
    services.credit_lessons(gym.member, gym.coaching, 6, "l2", gym.operator.id)
    operator_id, threads_count = gym.operator.id, 6
    start = threading.Barrier(threads_count)
    results, errors = [], []

    def undo() -> None:
        try:
            with app.app_context():
                start.wait(30)
                results.append(services.reverse("l1", operator_id))
                db.session.remove()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=undo) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(1 for r in results if not r.already) == 1 and len(results) == threads_count
    assert balance_of(gym.member).lessons_left == 6
    assert count(LessonEntry, LessonEntry.kind == "reversal") == 1
