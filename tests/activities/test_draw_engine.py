"""The draw engine on PostgreSQL, one draw at a time: running and eligibility checks, the total and
daily limits with their NULL / 0 meanings on Asia/Shanghai days, weights, stock and the fallback,
per-member caps, idempotent retries, and the outbox hand-over of wins."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.activities import draw as engine
from app.activities import lifecycle
from app.activities.prize_models import Prize, PrizeMemberCount, ThemeDraw, ThemeParticipant
from app.core import crypto
from app.core.outbox import OutboxMessage
from app.core.timeutil import utcnow
from app.extensions import db


class Always:
    """An RNG that lands on one point of the total weight every time."""

    def __init__(self, point: int = 0):
        self.point = point

    def randrange(self, stop: int) -> int:
        return min(self.point, stop - 1)


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


def spin(theme, open_id="oCustomer0001", key=None, **kwargs):
    return engine.draw(theme.id, open_id, key or f"k-{random.random()}", **kwargs)


def refused(theme, *args, **kwargs) -> engine.DrawRefused:
    with pytest.raises(engine.DrawRefused) as caught:
        spin(theme, *args, **kwargs)
    return caught.value


def fresh(prize: Prize) -> Prize:
    return db.session.get(Prize, prize.id, populate_existing=True)


def outbox_count() -> int:
    return db.session.execute(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.kind == "activities.fulfil_prize")).scalar_one()


# --- a win ------------------------------------------------------------------------------------------


def test_a_win_takes_one_unit_records_the_draw_and_queues_one_fulfilment(make, bank):
    theme = make.wheel_theme(bank)
    prize = make.prize(theme, kind="points", stock=5, weight=100, sort_order=1)

    outcome = spin(theme, rng=Always(0))  # the first segment by order: the points prize

    assert outcome.prize.id == prize.id and outcome.won and not outcome.replayed
    assert fresh(prize).stock_remaining == 4
    draw = db.session.get(ThemeDraw, outcome.draw_id)
    assert draw.fulfilment_status == "pending" and draw.org_id == bank.id and draw.drawn_day is not None
    message = db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "activities.fulfil_prize")).scalar_one()
    assert message.payload == {"draw_id": draw.id} and message.dedupe_key == f"activities.fulfil_prize:{draw.id}"
    participant = db.session.get(ThemeParticipant, draw.participant_id)
    assert participant.openid_hash == crypto.lookup_hash("oCustomer0001")
    assert "oCustomer0001" not in participant.openid_enc and participant.openid == "oCustomer0001"
    assert participant.openid_masked == "oCus****0001"


def test_the_thanks_prize_is_recorded_without_fulfilment(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=100)
    make.prize(theme, stock=5, weight=1, sort_order=99)

    outcome = spin(theme, rng=Always(0))  # the fallback (order 50) comes first

    assert outcome.prize.kind == "thanks" and not outcome.won
    assert outcome.fulfilment_status == "none" and outbox_count() == 0


# --- running and eligible ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, code", [
    ({"status": "paused"}, "ACTIVITY_PAUSED"),
    ({"status": "expired"}, "ACTIVITY_ENDED"),
    ({"wheel_enabled": False}, "DRAWS_NOT_ENABLED"),
    ({"participation_limit": 0}, "NOT_ELIGIBLE"),
    ({"daily_limit": 0}, "NOT_ELIGIBLE"),
])
def test_draws_are_refused_when_the_activity_does_not_take_them(make, bank, change, code):
    theme = make.wheel_theme(bank, **change)
    make.prize(theme)

    refusal = refused(theme)

    assert refusal.code == code and refusal.status == 409
    assert db.session.execute(select(func.count()).select_from(ThemeParticipant)).scalar_one() == 0


def test_outside_the_window_no_one_draws(make, bank):
    now = utcnow()
    later = make.wheel_theme(bank, start_at=now + timedelta(hours=1), end_at=now + timedelta(days=1))
    over = make.wheel_theme(bank, start_at=now - timedelta(days=2), end_at=now - timedelta(seconds=1))

    assert refused(later).code == "ACTIVITY_NOT_STARTED"
    assert refused(over).code == "ACTIVITY_ENDED"


def test_a_pool_without_its_fallback_refuses_draws(make, bank):
    theme = make.theme_activity(bank, wheel_enabled=True)
    make.prize(theme)

    assert refused(theme).code == "PRIZES_NOT_CONFIGURED"


def test_a_pause_blocks_the_next_draw_at_once_and_enabling_opens_it_again(make, bank):
    theme = make.wheel_theme(bank)
    make.prize(theme, stock=100)
    admin = make.operator(org=bank, roles=("org_admin",))
    first = spin(theme, key="before-pause")

    lifecycle.switch(admin, [theme.id], "paused")

    assert refused(theme).code == "ACTIVITY_PAUSED"
    assert spin(theme, key="before-pause").draw_no == first.draw_no  # a retry still gets its answer
    lifecycle.switch(admin, [theme.id], "active")
    assert spin(theme).draw_id != first.draw_id


@pytest.mark.parametrize("open_id, key, code", [
    ("", "k1", "INVALID_OPEN_ID"), ("o" * 129, "k1", "INVALID_OPEN_ID"), ("o pen", "k1", "INVALID_OPEN_ID"),
    ("oGood", "", "INVALID_IDEMPOTENCY_KEY"), ("oGood", "k" * 129, "INVALID_IDEMPOTENCY_KEY"),
    ("oGood", "with space", "INVALID_IDEMPOTENCY_KEY"),
])
def test_malformed_requests_are_refused(make, bank, open_id, key, code):
    theme = make.wheel_theme(bank)

    with pytest.raises(engine.DrawRefused) as caught:
        engine.draw(theme.id, open_id, key)

    assert caught.value.code == code and caught.value.status == 400


# --- limits -----------------------------------------------------------------------------------------


def test_the_total_limit_counts_every_draw_of_a_customer(make, bank):
    theme = make.wheel_theme(bank, participation_limit=3)
    make.prize(theme, stock=100)

    lefts = [spin(theme).draws_left for _ in range(3)]

    assert lefts == [2, 1, 0]
    assert refused(theme).code == "TOTAL_LIMIT_REACHED"
    assert spin(theme, open_id="oSomeoneElse").draws_left == 2  # per customer
    assert db.session.execute(select(ThemeParticipant.draws_total).where(
        ThemeParticipant.openid_hash == crypto.lookup_hash("oCustomer0001"))).scalar_one() == 3


def test_no_limit_means_no_cap(make, bank):
    theme = make.wheel_theme(bank, participation_limit=None, daily_limit=None)
    make.prize(theme, stock=100)

    outcomes = [spin(theme) for _ in range(12)]

    assert all(o.draws_left is None and o.draws_left_today is None for o in outcomes)


def _shanghai(y, m, d, hh, mm) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=timezone(timedelta(hours=8))).astimezone(timezone.utc)


def test_the_daily_limit_counts_asia_shanghai_days(make, bank):
    start = _shanghai(2026, 3, 1, 0, 0)
    theme = make.wheel_theme(bank, daily_limit=2, participation_limit=5, start_at=start,
                             end_at=start + timedelta(days=10))
    make.prize(theme, stock=100)
    late_evening = _shanghai(2026, 3, 1, 23, 30)  # 15:30 UTC

    assert spin(theme, now=late_evening).draws_left_today == 1
    assert spin(theme, now=late_evening + timedelta(minutes=10)).draws_left_today == 0
    assert refused(theme, now=_shanghai(2026, 3, 1, 23, 59)).code == "DAILY_LIMIT_REACHED"
    # 00:01 in Shanghai is still 16:01 of the same UTC day: a new business day all the same.
    next_day = spin(theme, now=_shanghai(2026, 3, 2, 0, 1))
    assert (next_day.draws_left_today, next_day.draws_left) == (1, 2)
    spin(theme, now=_shanghai(2026, 3, 2, 9, 0))
    assert refused(theme, now=_shanghai(2026, 3, 2, 9, 1)).code == "DAILY_LIMIT_REACHED"
    spin(theme, now=_shanghai(2026, 3, 3, 9, 0))
    assert refused(theme, now=_shanghai(2026, 3, 4, 9, 0)).code == "TOTAL_LIMIT_REACHED"


def test_draws_left_today_never_exceeds_draws_left(make, bank):
    theme = make.wheel_theme(bank, daily_limit=5, participation_limit=2)
    make.prize(theme, stock=100)

    outcome = spin(theme)

    assert (outcome.draws_left, outcome.draws_left_today) == (1, 1)


def test_a_raised_limit_lets_the_customer_draw_again(make, bank):
    theme = make.wheel_theme(bank, participation_limit=1)
    make.prize(theme, stock=100)
    spin(theme)
    assert refused(theme).code == "TOTAL_LIMIT_REACHED"

    theme.participation_limit = 2
    db.session.commit()

    assert spin(theme).draws_left == 0


def test_a_refused_draw_changes_nothing(make, bank):
    theme = make.wheel_theme(bank, participation_limit=1)
    prize = make.prize(theme, stock=3, weight=100, sort_order=1)
    spin(theme, rng=Always(0))

    refused(theme, rng=Always(0))

    assert fresh(prize).stock_remaining == 2
    assert db.session.execute(select(func.count()).select_from(ThemeDraw)).scalar_one() == 1
    assert outbox_count() == 1


# --- weights, stock and the fallback ----------------------------------------------------------------


def test_pick_follows_the_weights_over_many_draws():
    """A chi-square check of the pick itself over 200,000 seeded draws (df = 3; 16.27 is p = 0.001)."""
    weights = {1: 10, 2: 20, 3: 30, 4: 40}
    candidates = [engine.PrizeView(i, f"P{i}", "points", w, None, 100, None, None, i, "#ff6600")
                  for i, w in weights.items()]
    rng = random.Random(20260301)
    n = 200_000
    seen = {i: 0 for i in weights}
    for _ in range(n):
        seen[engine.pick(candidates, rng).id] += 1

    chi2 = sum((seen[i] - n * w / 100) ** 2 / (n * w / 100) for i, w in weights.items())

    assert chi2 < 16.27, (seen, chi2)


def test_draws_follow_the_weights_end_to_end(make, bank):
    """1,000 draws through the engine (seeded RNG injected): the awarded prizes fit the weights."""
    theme = make.wheel_theme(bank, thanks_weight=10, participation_limit=None, daily_limit=None)
    prizes = {make.prize(theme, stock=10_000, weight=w).id: w for w in (20, 30, 40)}
    weights = {**prizes, db.session.execute(select(Prize.id).where(Prize.kind == "thanks")).scalar_one(): 10}
    rng = random.Random(7)
    n = 1000
    for i in range(n):
        spin(theme, open_id=f"oPlayer{i % 50:04d}", rng=rng)

    seen = dict(db.session.execute(select(ThemeDraw.prize_id, func.count()).group_by(ThemeDraw.prize_id)).all())
    chi2 = sum((seen.get(p, 0) - n * w / 100) ** 2 / (n * w / 100) for p, w in weights.items())

    assert chi2 < 16.27, (seen, chi2)  # df = 3, p = 0.001
    assert sum(seen.values()) == n


def test_a_prize_without_stock_is_never_picked_and_the_rest_share_its_chance(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1, participation_limit=None, daily_limit=None)
    empty = make.prize(theme, stock=0, weight=100, sort_order=1)
    stocked = make.prize(theme, stock=50, weight=1, sort_order=2)

    outcome = spin(theme, rng=Always(0))  # would land on `empty` if it were on the wheel

    assert outcome.prize.id == stocked.id and outcome.picked_prize_id == stocked.id
    assert fresh(empty).stock_remaining == 0


def test_the_last_unit_goes_once_then_the_fallback_is_given(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    prize = make.prize(theme, stock=1, weight=100, sort_order=1)

    first = spin(theme, open_id="oFirst", rng=Always(0))
    second = spin(theme, open_id="oSecond", rng=Always(0))

    assert first.prize.id == prize.id and second.prize.kind == "thanks"
    assert fresh(prize).stock_remaining == 0


def candidates_now(theme):
    """The prizes a draw of this theme could land on, as the engine reads them at this moment."""
    return engine._drawable(engine._theme_and_prizes(engine._Which(engine._BY_ID, {"theme_id": theme.id}), "nobody")[1])


def test_a_pick_whose_stock_went_in_the_meantime_falls_back(make, bank, monkeypatch):
    """The wheel lands on a prize a concurrent draw has just emptied: the fallback is awarded."""
    theme = make.wheel_theme(bank, thanks_weight=1)
    prize = make.prize(theme, stock=1, weight=100, sort_order=1)
    stale = candidates_now(theme)  # read while the unit was still there
    db.session.rollback()
    spin(theme, open_id="oFirst", rng=Always(0))
    monkeypatch.setattr(engine, "_drawable", lambda prizes: stale)

    late = spin(theme, open_id="oLate", rng=Always(0))

    assert late.picked_prize_id == prize.id and late.prize.kind == "thanks" and late.fell_back
    assert not late.won and late.fulfilment_status == "none"
    assert fresh(prize).stock_remaining == 0 and outbox_count() == 1


def test_a_switched_off_prize_is_not_awarded(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    make.prize(theme, stock=10, weight=100, sort_order=1, enabled=False)

    assert spin(theme, rng=Always(0)).prize.kind == "thanks"


def test_the_per_member_cap_holds_and_others_still_win(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    capped = make.prize(theme, stock=10, weight=100, sort_order=1, per_member_cap=1)

    first = spin(theme, open_id="oCapped", rng=Always(0))
    again = spin(theme, open_id="oCapped", rng=Always(0))
    other = spin(theme, open_id="oOther", rng=Always(0))

    assert first.prize.id == capped.id and again.prize.kind == "thanks" and other.prize.id == capped.id
    assert db.session.execute(select(PrizeMemberCount.won).where(
        PrizeMemberCount.openid_hash == crypto.lookup_hash("oCapped"))).scalar_one() == 1


def test_a_capped_pick_lost_to_a_race_gives_the_count_back(make, bank, monkeypatch):
    theme = make.wheel_theme(bank, thanks_weight=1)
    prize = make.prize(theme, stock=1, weight=100, sort_order=1, per_member_cap=2)
    stale = candidates_now(theme)
    db.session.rollback()
    spin(theme, open_id="oFirst", rng=Always(0))
    monkeypatch.setattr(engine, "_drawable", lambda prizes: stale)

    spin(theme, open_id="oLate", rng=Always(0))

    counts = dict(db.session.execute(select(PrizeMemberCount.openid_hash, PrizeMemberCount.won)
                                     .where(PrizeMemberCount.prize_id == prize.id)).all())
    assert counts == {crypto.lookup_hash("oFirst"): 1, crypto.lookup_hash("oLate"): 0}


# --- idempotency ------------------------------------------------------------------------------------


def test_the_same_key_returns_the_same_draw_and_takes_nothing_again(make, bank):
    theme = make.wheel_theme(bank, participation_limit=5, thanks_weight=1)
    prize = make.prize(theme, stock=10, weight=100, sort_order=1)

    first = spin(theme, key="retry-me", rng=Always(0))
    again = spin(theme, key="retry-me", rng=Always(0))

    assert again.replayed and again.draw_id == first.draw_id and again.draw_no == first.draw_no
    assert again.prize.id == first.prize.id == prize.id and again.draws_left == 4
    assert fresh(prize).stock_remaining == 9 and outbox_count() == 1
    assert db.session.execute(select(ThemeParticipant.draws_total)).scalar_one() == 1


def test_the_same_key_for_another_customer_is_refused(make, bank):
    theme = make.wheel_theme(bank)
    make.prize(theme)
    spin(theme, open_id="oFirst", key="shared-key")

    refusal = refused(theme, open_id="oSecond", key="shared-key")

    assert (refusal.status, refusal.code) == (422, "IDEMPOTENCY_KEY_REUSED")


def test_keys_are_per_activity(make, bank):
    one, two = make.wheel_theme(bank), make.wheel_theme(bank)
    make.prize(one)
    make.prize(two)

    a = spin(one, key="same")
    b = spin(two, key="same")

    assert a.draw_id != b.draw_id and not b.replayed


def test_draws_of_a_customer_are_listed_newest_first(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    prize = make.prize(theme, stock=10, weight=100, sort_order=1)
    first = spin(theme, open_id="oMine", rng=Always(0))
    spin(theme, open_id="oTheirs", rng=Always(0))
    second = spin(theme, open_id="oMine", rng=Always(0))

    mine = engine.draws_of(theme.id, "oMine")

    assert [(d.id, p.id) for d, p in mine] == [(second.draw_id, prize.id), (first.draw_id, prize.id)]
