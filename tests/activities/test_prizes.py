"""The prize pool's rules: adding and editing prizes, the fallback, chances, and stock added while
draws run (atomically, audited)."""
from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.activities import draw as engine
from app.activities import prizes
from app.activities.prize_models import Prize
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from tests.activities.test_draw_concurrency import check_the_books, run_at_once, wide_app  # noqa: F401 (fixture)


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def admin(make, bank):
    return make.operator(org=bank, roles=("org_admin",))


def details(**changes) -> prizes.PrizeDetails:
    base = dict(name="一等奖 888 积分", kind="points", points=888, stock_total=10, weight=20, sort_order=1,
                colour="#FF6600", enabled=True)
    return prizes.PrizeDetails(**{**base, **changes})


def refusal(call, *args) -> dict[str, str]:
    with pytest.raises(prizes.InvalidPrize) as caught:
        call(*args)
    return caught.value.errors


def events(action: str) -> list[AuditEvent]:
    return db.session.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars().all()


# --- adding -----------------------------------------------------------------------------------------


def test_the_first_prize_brings_the_fallback_and_both_are_audited(make, bank, admin):
    theme = make.theme_activity(bank)

    prize = prizes.add_prize(admin, theme, details())

    pool = prizes.prizes_of(theme)
    fallback = next(p for p in pool if p.is_fallback)
    assert [p.id for p in pool] == [prize.id, fallback.id]  # by order: the fallback takes the last free one
    assert (prize.stock_total, prize.stock_remaining, prize.colour, prize.org_id) == (10, 10, "#ff6600", bank.id)
    assert fallback.stock_total is None and fallback.weight == prizes.FALLBACK_WEIGHT
    assert [e.object_id for e in events("theme_prize.create")] == [str(fallback.id), str(prize.id)]
    assert events("theme_prize.create")[1].after["points"] == 888
    prizes.add_prize(admin, theme, details(sort_order=2))
    assert sum(p.is_fallback for p in prizes.prizes_of(theme)) == 1


def test_ensure_fallback_is_idempotent(make, bank):
    theme = make.theme_activity(bank)

    first = prizes.ensure_fallback(theme)
    again = prizes.ensure_fallback(theme)

    assert first.id == again.id and len(prizes.prizes_of(theme)) == 1


@pytest.mark.parametrize("changes, field", [
    ({"name": "  "}, "name"), ({"name": "奖" * 51}, "name"),
    ({"kind": "thanks"}, "kind"), ({"kind": "lottery"}, "kind"),
    ({"points": 0}, "points"), ({"points": 1_000_001}, "points"),
    ({"kind": "cash", "cash_fen": None}, "cash_fen"), ({"kind": "cash", "cash_fen": 10_000_001}, "cash_fen"),
    ({"stock_total": -1}, "stock_total"), ({"stock_total": None}, "stock_total"),
    ({"weight": 0}, "weight"), ({"weight": 101}, "weight"), ({"weight": None}, "weight"),
    ({"sort_order": 0}, "sort_order"), ({"sort_order": 100}, "sort_order"),
    ({"colour": "red"}, "colour"), ({"colour": "#12345"}, "colour"),
    ({"per_member_cap": 0}, "per_member_cap"), ({"per_member_cap": 1000}, "per_member_cap"),
])
def test_broken_rules_are_named_by_field(make, bank, admin, changes, field):
    theme = make.theme_activity(bank)

    errors = refusal(prizes.add_prize, admin, theme, details(**changes))

    assert field in errors
    assert prizes.prizes_of(theme) == []  # nothing kept, not even the fallback


def test_an_order_number_is_used_once_per_pool(make, bank, admin):
    theme = make.theme_activity(bank)
    prizes.add_prize(admin, theme, details(sort_order=3))

    assert "sort_order" in refusal(prizes.add_prize, admin, theme, details(sort_order=3))


def test_a_pool_holds_twelve_prizes_with_its_fallback(make, bank, admin):
    theme = make.theme_activity(bank)
    for n in range(1, 12):
        prizes.add_prize(admin, theme, details(sort_order=n, name=f"奖{n}"))

    errors = refusal(prizes.add_prize, admin, theme, details(sort_order=20))

    assert "12" in errors["__all__"] and len(prizes.prizes_of(theme)) == 12


def test_an_expired_activitys_pool_is_view_only(make, bank, admin):
    now = utcnow()
    theme = make.theme_activity(bank, start_at=now - timedelta(days=3), end_at=now - timedelta(days=1))

    assert "__all__" in refusal(prizes.add_prize, admin, theme, details())


def test_a_coupon_prize_gives_a_coupon_activity_of_this_theme_within_its_limits(make, bank, admin):
    theme = make.theme_activity(bank)
    other_theme = make.theme_activity(bank)
    coupon = make.coupon_activity(theme=theme, issue_total=20, issued_count=5, per_member_limit=2)
    foreign = make.coupon_activity(theme=other_theme)

    assert "coupon_activity_id" in refusal(prizes.add_prize, admin, theme,
                                           details(kind="coupon", coupon_activity_id=foreign.id, per_member_cap=1))
    assert "per_member_cap" in refusal(prizes.add_prize, admin, theme,
                                       details(kind="coupon", coupon_activity_id=coupon.id, per_member_cap=None))
    assert "per_member_cap" in refusal(prizes.add_prize, admin, theme,
                                       details(kind="coupon", coupon_activity_id=coupon.id, per_member_cap=3))
    errors = refusal(prizes.add_prize, admin, theme,
                     details(kind="coupon", coupon_activity_id=coupon.id, per_member_cap=2, stock_total=16))
    assert "15" in errors["stock_total"]  # 20 to issue, 5 issued

    prize = prizes.add_prize(admin, theme, details(kind="coupon", coupon_activity_id=coupon.id, per_member_cap=2,
                                                   stock_total=15, points=999))
    assert (prize.coupon_activity_id, prize.points) == (coupon.id, None)  # the other kinds' values are dropped
    assert "amount" in refusal(prizes.add_stock, admin, theme, prize, 1)  # no coupons left for more


# --- editing ----------------------------------------------------------------------------------------


def test_an_edit_saves_and_audits_only_what_changed(make, bank, admin):
    theme = make.theme_activity(bank)
    prize = prizes.add_prize(admin, theme, details())

    prizes.update_prize(admin, theme, prize, details(weight=55, name="特等奖"))

    event = events("theme_prize.update")[-1]
    assert event.before == {"name": "一等奖 888 积分", "weight": 20} and event.after == {"name": "特等奖", "weight": 55}
    assert db.session.get(Prize, prize.id, populate_existing=True).stock_total == 10  # stock is not edited here
    prizes.update_prize(admin, theme, prize, prizes.PrizeDetails.of(db.session.get(Prize, prize.id)))
    assert len(events("theme_prize.update")) == 1  # no change, no event


def test_once_units_are_won_the_kind_stays(make, bank, admin):
    theme = make.wheel_theme(bank, thanks_weight=1)
    prize = prizes.add_prize(admin, theme, details(sort_order=1, weight=100))
    engine.draw(theme.id, "oWinner", "k1", rng=random.Random(1))
    prize = db.session.get(Prize, prize.id, populate_existing=True)
    assert prize.stock_taken == 1

    assert "kind" in refusal(prizes.update_prize, admin, theme, prize, details(kind="gift", sort_order=1))


def test_the_fallback_keeps_its_kind_and_cannot_be_switched_off(make, bank, admin):
    theme = make.theme_activity(bank)
    fallback = prizes.ensure_fallback(theme)

    assert "enabled" in refusal(prizes.update_prize, admin, theme, fallback,
                                details(name="谢谢", sort_order=fallback.sort_order, enabled=False))
    prizes.update_prize(admin, theme, fallback, details(name="谢谢参与", kind="points", sort_order=fallback.sort_order,
                                                         weight=40, colour="#dddddd"))
    fallback = db.session.get(Prize, fallback.id, populate_existing=True)
    assert (fallback.kind, fallback.points, fallback.weight, fallback.name) == ("thanks", None, 40, "谢谢参与")


# --- chances ----------------------------------------------------------------------------------------


def test_chances_are_shares_of_the_weight_that_can_still_be_won(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=10)
    a = make.prize(theme, weight=30, stock=5)
    b = make.prize(theme, weight=60, stock=5)
    gone = make.prize(theme, weight=50, stock=0)
    off = make.prize(theme, weight=50, stock=5, enabled=False)

    chance = {row.prize.id: row.chance_pct for row in prizes.pool(theme)}

    fallback = next(p.id for p in prizes.prizes_of(theme) if p.is_fallback)
    assert chance == {fallback: Decimal("10.00"), a.id: Decimal("30.00"), b.id: Decimal("60.00"),
                      gone.id: Decimal("0.00"), off.id: Decimal("0.00")}


def test_chances_round_to_two_decimals(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=1)
    make.prize(theme, weight=1, stock=5)
    make.prize(theme, weight=1, stock=5)

    assert sorted(str(r.chance_pct) for r in prizes.pool(theme)) == ["33.33"] * 3


# --- stock ------------------------------------------------------------------------------------------


def test_stock_added_is_audited_with_before_and_after(make, bank, admin):
    theme = make.wheel_theme(bank)
    prize = make.prize(theme, stock=3)

    prizes.add_stock(admin, theme, prize, 7)

    assert (prize.stock_total, prize.stock_remaining) == (10, 10)
    event = events("theme_prize.add_stock")[-1]
    assert event.before == {"stock_total": 3, "stock_remaining": 3}
    assert event.after == {"added": 7, "stock_total": 10, "stock_remaining": 10}


@pytest.mark.parametrize("amount", [0, -5, None, prizes.STOCK_MAX + 1])
def test_stock_is_added_in_whole_positive_units(make, bank, admin, amount):
    theme = make.wheel_theme(bank)
    prize = make.prize(theme, stock=3)

    assert "amount" in refusal(prizes.add_stock, admin, theme, prize, amount)


def test_the_fallback_has_no_stock_to_add(make, bank, admin):
    theme = make.wheel_theme(bank)
    fallback = next(p for p in prizes.prizes_of(theme) if p.is_fallback)

    assert "amount" in refusal(prizes.add_stock, admin, theme, fallback, 5)


def test_stock_added_while_64_threads_draw_is_never_lost_nor_oversold(make, bank, admin, wide_app):
    """Draws take units while an operator adds stock five times: every unit added is counted once."""
    theme = make.wheel_theme(bank, thanks_weight=1, participation_limit=None, daily_limit=None)
    prize = make.prize(theme, stock=5, weight=100)
    theme_id, prize_id, admin_id = theme.id, prize.id, admin.id  # the threads have sessions of their own

    def job(kind: str, n: int):
        if kind == "add":
            from app.activities.models import ThemeActivity
            from app.auth.models import Operator

            return prizes.add_stock(db.session.get(Operator, admin_id), db.session.get(ThemeActivity, theme_id),
                                    db.session.get(Prize, prize_id), 4).stock_total
        return engine.draw(theme_id, f"oAdder{n % 40}", f"add-{n}").won

    jobs = [[("draw", t * 6 + i) for i in range(6)] for t in range(63)]
    jobs.append([("add", i) for i in range(5)])

    results = run_at_once(wide_app, jobs, job)

    check_the_books(theme)
    prize = db.session.get(Prize, prize.id, populate_existing=True)
    assert prize.stock_total == 5 + 5 * 4
    wins = sum(1 for (kind, _), outcome in results if kind == "draw" and outcome)
    assert wins == prize.stock_total - prize.stock_remaining and prize.stock_remaining >= 0
