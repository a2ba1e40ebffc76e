"""The theme activity statistics in Chromium: one activity's page with its three ECharts charts drawn,
the date range re-rendering the results through htmx (charts drawn again), and the page across
activities with its chart and totals, and an activity nobody visited yet pointing to its H5 link; no
JavaScript error on the way (the `page` fixture checks).

Elements are found by data-testid or name, never by visible text.
"""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.activities.statistics_data import statistics_world


def test_statistics_pages_draw_their_charts_and_follow_the_dates(page, login, make, shot):
    world = statistics_world(make)
    make.operator(org=world.bank, roles=("viewer",), username="stats_viewer")
    login("stats_viewer")

    page.goto(f"/activities/{world.theme.id}")
    page.get_by_test_id("statistics").click()
    expect(page).to_have_url(re.compile(rf"/activities/{world.theme.id}/statistics$"))
    expect(page.get_by_test_id("kpi-draws")).to_have_text("6")
    for chart in ("chart-funnel", "chart-trend", "chart-prizes"):
        expect(page.locator(f"[data-testid={chart}] canvas")).to_have_count(1)  # ECharts drew it
    expect(page.get_by_test_id("no-visits")).to_have_count(0)
    shot("activity")

    page.get_by_test_id("filter-from").fill("2025-03-02")
    page.get_by_test_id("filter-to").fill("2025-03-04")
    page.get_by_test_id("search").click()
    expect(page.get_by_test_id("kpi-draws")).to_have_text("3")
    expect(page).to_have_url(re.compile(r"from=2025-03-02&to=2025-03-04"))
    expect(page.locator("[data-testid=chart-trend] canvas")).to_have_count(1)  # drawn again in the new block
    expect(page.get_by_test_id("range")).to_contain_text("2025-03-02 – 2025-03-04")
    shot("activity-range")

    page.get_by_test_id("all-statistics").click()  # the same dates, across the activities
    expect(page.locator("[data-testid=totals] [data-col=draws]")).to_have_text("3")
    page.get_by_test_id("filter-from").fill("2025-03-01")
    page.get_by_test_id("filter-to").fill("2025-03-10")
    page.get_by_test_id("search").click()
    expect(page.locator("[data-testid=totals] [data-col=draws]")).to_have_text("6")
    expect(page.locator("[data-testid=chart-activities] canvas")).to_have_count(1)
    expect(page.locator("[data-testid^=statistics-row-]")).to_have_count(1)  # not bank B's
    shot("across")

    quiet = make.wheel_theme(world.bank, name="还没人来的活动")
    page.goto(f"/activities/{quiet.id}/statistics")
    expect(page.get_by_test_id("no-visits")).to_be_visible()
    expect(page.get_by_test_id("kpi-views")).to_have_text("0")
    expect(page.get_by_test_id("funnel-empty")).to_be_visible()
    expect(page.locator("[data-testid=chart-trend] canvas")).to_have_count(1)  # a trend of zeros draws without an error
    shot("empty")
    page.get_by_test_id("entry-tab").click()
    expect(page.get_by_test_id("pane-entry")).to_be_visible()
