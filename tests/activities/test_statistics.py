"""The theme activity statistics service on a crafted data set (tests/activities/statistics_data.py):
the key figures, the funnel, each prize against its stock, the daily trend with its gap days, date
ranges on Shanghai days, the rows across activities with their totals, sorting and paging, bank
isolation, and a number of SQL statements that does not grow with the data."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event

from app.activities import statistics as stats
from app.core.listing import ListParams
from app.extensions import db
from tests.activities.statistics_data import COUPON, THANKS, sh, spin, statistics_world, visit

D = date.fromisoformat
WHOLE = (D("2025-03-01"), D("2025-03-10"))


@pytest.fixture
def world(make):
    return statistics_world(make)


def figures_dict(figures: stats.Figures) -> dict[str, int]:
    return {name: getattr(figures, name) for name in stats.FIGURE_NAMES}


def test_the_key_figures_of_the_whole_activity(world):
    result = stats.activity_statistics(world.theme, *WHOLE)

    assert figures_dict(result.figures) == dict(
        views=12, visitors=4,  # Alice, Bob, Carol, Dave; Erin drew through the API without a visit
        participants=4, draws=6, winners=3, wins=4,  # two draws gave the fallback
        coupons_issued=2, coupons_redeemed=1, redeemers=1)  # Erin's issue failed; Alice used hers
    assert result.figures.win_pct == 66.7 and result.figures.redemption_pct == 50.0


def test_the_funnel_narrows_step_by_step_with_its_conversions(world):
    funnel = stats.activity_statistics(world.theme, *WHOLE).funnel

    assert [(s.key, s.count, s.step_pct, s.overall_pct) for s in funnel] == [
        ("visitors", 4, None, 100.0),
        ("participants", 4, 100.0, 100.0),
        ("winners", 3, 75.0, 75.0),
        ("redeemers", 1, 33.3, 25.0),
    ]


def test_a_funnel_with_no_visitors_has_no_percentages_rather_than_a_division_by_zero():
    funnel = stats.funnel(stats.Figures(participants=2, draws=3, winners=1, wins=1))

    assert [(s.count, s.step_pct, s.overall_pct) for s in funnel] == [
        (0, None, None), (2, None, None), (1, 50.0, None), (0, 0.0, None)]


def test_each_prize_against_its_stock_and_its_share_of_the_draws(world):
    prizes = {p.prize.name: p for p in stats.activity_statistics(world.theme, *WHOLE).prizes}

    coupon, points, thanks = prizes["十元券"], prizes["100积分"], prizes["谢谢参与"]
    assert (coupon.prize.stock_total, coupon.prize.stock_remaining, coupon.awarded) == (5, 2, 3)
    assert (coupon.share_pct, coupon.coupons_issued, coupon.coupons_redeemed) == (50.0, 2, 1)
    assert (points.prize.stock_total, points.prize.stock_remaining, points.awarded, points.share_pct) == (2, 1, 1, 16.7)
    assert (points.coupons_issued, points.is_coupon) == (0, False)
    assert (thanks.prize.stock_total, thanks.awarded, thanks.share_pct) == (None, 2, 33.3)
    assert list(prizes) == ["十元券", "100积分", "谢谢参与"]  # the pool's order
    result = stats.activity_statistics(world.theme, *WHOLE)
    assert [p.prize.name for p in result.stocked_prizes] == ["十元券", "100积分"]


def test_the_daily_trend_has_every_day_on_shanghai_days_even_with_nothing(world):
    days = stats.activity_statistics(world.theme, *WHOLE).days

    table = {d.day.isoformat()[5:]: (d.views, d.visitors, d.draws, d.wins, d.redeemed) for d in days}
    assert table == {
        "03-01": (5, 2, 2, 2, 0),  # Bob's draw at 23:59:59 stays on the 1st
        "03-02": (1, 1, 1, 0, 0),  # Alice's at 00:00:30 (16:00:30 UTC of the 1st) is the 2nd's
        "03-03": (0, 0, 1, 1, 0),
        "03-04": (1, 1, 1, 0, 1),  # Alice's coupon (won on the 1st) was used on the 4th
        "03-05": (4, 1, 1, 1, 0),
        "03-06": (0, 0, 0, 0, 0), "03-07": (0, 0, 0, 0, 0),
        "03-08": (1, 1, 0, 0, 0),
        "03-09": (0, 0, 0, 0, 0), "03-10": (0, 0, 0, 0, 0),
    }
    assert [d.day for d in days] == sorted(d.day for d in days)


def test_a_range_counts_the_draws_of_its_days_and_their_coupons_whenever_used(world):
    result = stats.activity_statistics(world.theme, D("2025-03-02"), D("2025-03-04"))

    assert figures_dict(result.figures) == dict(views=2, visitors=2, participants=3, draws=3, winners=1, wins=1,
                                                coupons_issued=1, coupons_redeemed=0, redeemers=0)
    # Alice's coupon was won on the 1st (outside), so the cards and prizes do not count it as redeemed,
    # but the trend shows its use on the 4th, the day it happened.
    assert [d.redeemed for d in result.days] == [0, 0, 1]
    assert {p.prize.name: p.awarded for p in result.prizes} == {"十元券": 1, "100积分": 0, "谢谢参与": 2}
    assert [s.count for s in result.funnel] == [2, 3, 1, 0]


def test_the_default_range_is_the_activitys_days_up_to_today(make, world):
    over = world.theme  # 2025-03-01 00:00 – 2025-03-11 00:00 Shanghai: its last day is the 10th
    assert stats.day_range(over, None, None, today=D("2025-06-01")) == WHOLE
    assert stats.day_range(over, None, None, today=D("2025-03-05")) == (D("2025-03-01"), D("2025-03-05"))
    assert stats.day_range(over, D("2025-03-03"), None, today=D("2025-06-01")) == (D("2025-03-03"), D("2025-03-10"))
    assert stats.day_range(over, D("2025-03-09"), D("2025-03-02"), today=D("2025-06-01")) == (
        D("2025-03-02"), D("2025-03-09"))  # put in order
    later = make.theme_activity(world.bank, start_at=sh("2025-07-01 08:00:00"), end_at=sh("2025-08-01 08:00:00"))
    assert stats.day_range(later, None, None, today=D("2025-06-01")) == (D("2025-07-01"), D("2025-07-01"))
    long = make.theme_activity(world.bank, start_at=sh("2023-01-01 00:00:00"), end_at=sh("2025-01-01 00:00:00"))
    first, last = stats.day_range(long, None, None, today=D("2025-06-01"))
    assert last == D("2024-12-31") and (last - first).days == 365  # at most a year


def test_an_activity_without_visits_or_draws_shows_zeros_on_every_day(make, world):
    quiet = make.wheel_theme(world.bank, start_at=sh("2025-03-01 00:00:00"), end_at=sh("2025-03-04 00:00:00"))

    result = stats.activity_statistics(quiet, D("2025-03-01"), D("2025-03-03"))

    assert figures_dict(result.figures) == dict.fromkeys(stats.FIGURE_NAMES, 0)
    assert [(d.views, d.draws, d.redeemed) for d in result.days] == [(0, 0, 0)] * 3
    assert [(s.count, s.step_pct) for s in result.funnel] == [(0, None)] * 4
    assert [(p.awarded, p.share_pct) for p in result.prizes] == [(0, None)]


def test_another_banks_visits_and_draws_never_count(world):
    result = stats.activity_statistics(world.other_theme, *WHOLE)

    assert (result.figures.views, result.figures.visitors, result.figures.draws) == (10, 2, 2)
    assert stats.activity_statistics(world.theme, *WHOLE).figures.draws == 6


# --- across activities ----------------------------------------------------------------------------------


def across(actor, params: ListParams | None = None, first=WHOLE[0], last=WHOLE[1]):
    params = params or ListParams(sort=stats.DEFAULT_SORT)
    stmt = stats.across_activities(actor, params.filters, first, last)
    return stats.across_page(stats.sorted_across(stmt, params), params), stats.across_totals(stmt)


def test_a_bank_sees_one_row_per_own_activity_with_the_same_figures_and_their_totals(make, world):
    bank_admin = make.operator(org=world.bank, roles=("viewer",))
    quiet = make.wheel_theme(world.bank, name="安静的活动", start_at=sh("2025-03-05 00:00:00"),
                             end_at=sh("2025-03-20 00:00:00"))
    visit(quiet, "oQuinn", "2025-03-06", 2)
    make.theme_activity(world.bank, name="去年的活动", start_at=sh("2024-01-01 00:00:00"), end_at=sh("2024-02-01 00:00:00"))

    page, totals = across(bank_admin)

    rows = {row.theme.name: figures_dict(row.figures) for row in page.items}
    assert set(rows) == {"春节转盘", "安静的活动"}  # not bank B's, not last year's
    assert rows["春节转盘"] == figures_dict(stats.activity_statistics(world.theme, *WHOLE).figures)
    assert rows["安静的活动"] == dict(dict.fromkeys(stats.FIGURE_NAMES, 0), views=2, visitors=1)
    assert [row.theme.name for row in page.items] == ["春节转盘", "安静的活动"]  # most draws first
    assert figures_dict(totals) == {k: rows["春节转盘"][k] + rows["安静的活动"][k] for k in stats.FIGURE_NAMES}
    assert page.total == 2


def test_platform_operators_see_every_bank_or_pick_one(make, world):
    root = make.operator(org=make.platform(), roles=("platform_admin",))

    page, totals = across(root)
    bank_b = ListParams(sort="draws", filters={"partner_bank_id": str(world.other_partner.id)})
    picked, picked_totals = across(root, bank_b)

    assert {row.theme.name for row in page.items} == {"春节转盘", "华南转盘"}
    assert (totals.draws, totals.views) == (8, 22)
    assert [row.theme.name for row in picked.items] == ["华南转盘"] and picked_totals.draws == 2


def test_the_rows_sort_by_any_figure_and_page_with_a_total_count(make, world):
    root = make.operator(org=make.platform(), roles=("platform_admin",))
    for n in range(3):
        extra = make.wheel_theme(world.bank, name=f"加场{n}", start_at=sh("2025-03-01 00:00:00"),
                                 end_at=sh("2025-03-11 00:00:00"))
        visit(extra, "oAlice", "2025-03-03", 20 + n)

    by_views, _ = across(root, ListParams(sort="views", direction="desc", per_page=10))
    ascending, _ = across(root, ListParams(sort="views", direction="asc", per_page=10))
    second, _ = across(root, ListParams(sort="views", direction="desc", per_page=10, page=1, filters={"name": "加场"}))
    paged, totals = across(root, ListParams(sort="name", direction="asc", per_page=2, page=3))

    assert [r.theme.name for r in by_views.items] == ["加场2", "加场1", "加场0", "春节转盘", "华南转盘"]
    assert [r.figures.views for r in ascending.items] == [10, 12, 20, 21, 22]
    assert [r.theme.name for r in second.items] == ["加场2", "加场1", "加场0"]
    assert (paged.total, paged.pages, len(paged.items)) == (5, 3, 1) and totals.views == 85


def test_the_number_of_statements_does_not_grow_with_the_data(make, world):
    def statements(run) -> int:
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            run()
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    root = make.operator(org=make.platform(), roles=("platform_admin",))

    def loaded():  # what a request has in hand before it asks for figures: the activity, the operator
        db.session.refresh(world.theme)
        db.session.refresh(root)
        return root.org

    loaded()
    one = statements(lambda: stats.activity_statistics(world.theme, *WHOLE))
    many = statements(lambda: across(root))
    for n in range(12):  # more customers, days and draws
        day = D("2025-03-06") + timedelta(days=n % 4)
        visit(world.theme, f"oMore{n:02d}", day.isoformat(), n + 1)
        spin(world.theme, f"oMore{n:02d}", f"{day.isoformat()} 10:00:00", THANKS if n % 2 else COUPON)
    loaded()

    assert statements(lambda: stats.activity_statistics(world.theme, *WHOLE)) == one == 5
    assert statements(lambda: across(root)) == many == 3
    assert stats.activity_statistics(world.theme, *WHOLE).figures.draws == 18
