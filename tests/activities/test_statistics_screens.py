"""The statistics screens of theme activities: one activity's page and its htmx fragment, the empty
state, the page across activities with its totals, the xlsx exports read back (audited), the links to
them, and another bank's activity answering 404."""
from __future__ import annotations

import io
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.extensions import db
from tests.activities.statistics_data import sh, statistics_world
from tests.helpers import htmx_headers, log_in_in_english

WHOLE = {"from": "2025-03-01", "to": "2025-03-10"}


@pytest.fixture
def world(make):
    world = statistics_world(make)
    make.operator(org=world.bank, roles=("viewer",), username="a_viewer")
    make.operator(org=world.other_bank, roles=("viewer",), username="b_viewer")
    make.operator(org=make.platform(), roles=("platform_admin",), username="root")
    return world


def text(response) -> str:
    return response.get_data(as_text=True)


def kpis(page: str) -> dict[str, str]:
    return {k: v.strip() for k, v in re.findall(r'data-testid="kpi-(\w+)">([^<]*)<', page)}


def cells(page: str, testid: str) -> list[str]:
    """The text of the cells of the row with this data-testid."""
    row = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    return [re.sub(r"<[^>]+>|\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def workbook(response):
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return load_workbook(io.BytesIO(response.data))


def sheet_rows(book, title: str) -> list[tuple]:
    return [tuple(row) for row in book[title].iter_rows(values_only=True)]


# --- one activity ---------------------------------------------------------------------------------------


def test_the_page_shows_the_cards_funnel_prizes_and_charts(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    page = client.get(f"/activities/{world.theme.id}/statistics", query_string=WHOLE)

    body = text(page)
    assert page.status_code == 200 and "<html" in body
    assert kpis(body) == dict(views="12", visitors="4", participants="4", draws="6", winners="3", wins="4",
                              coupons_issued="2", coupons_redeemed="1")
    assert cells(body, "funnel-visitors") == ["Visited the page", "4", "—", "100.0%"]
    assert cells(body, "funnel-winners") == ["Won a prize", "3", "75.0%", "75.0%"]
    assert cells(body, "funnel-redeemers") == ["Redeemed a coupon", "1", "33.3%", "25.0%"]
    assert cells(body, "day-2025-03-04") == ["2025-03-04", "1", "1", "1", "0", "1"]
    assert cells(body, "day-2025-03-07") == ["2025-03-07", "0", "0", "0", "0", "0"]
    prize_rows = re.findall(r'data-testid="prize-row".*?</tr>', body, re.S)
    assert len(prize_rows) == 3 and "十元券" in prize_rows[0] and "50.0%" in prize_rows[0]
    for chart in ("chart-funnel", "chart-trend", "chart-prizes"):
        assert f'data-testid="{chart}"' in body
    assert 'data-testid="no-visits"' not in body
    assert "2025-03-01 – 2025-03-10" in body


def test_without_dates_the_page_shows_the_activitys_own_days(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    body = text(client.get(f"/activities/{world.theme.id}/statistics"))

    assert "2025-03-01 – 2025-03-10" in body and 'value="2025-03-01"' in body and kpis(body)["draws"] == "6"


def test_the_date_filter_answers_only_the_results_block(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    fragment = client.get(f"/activities/{world.theme.id}/statistics", query_string={"from": "2025-03-02",
                                                                                    "to": "2025-03-04"},
                          headers=htmx_headers("statistics-body"))

    body = text(fragment)
    assert fragment.status_code == 200 and "<html" not in body and 'id="statistics-filters"' not in body
    assert kpis(body) == dict(views="2", visitors="2", participants="3", draws="3", winners="1", wins="1",
                              coupons_issued="1", coupons_redeemed="0")
    assert "2025-03-02 – 2025-03-04" in body and 'data-testid="chart-trend"' in body
    assert "from=2025-03-02" in body and "to=2025-03-04" in body  # the export keeps the range


def test_an_activity_nobody_visited_says_where_the_h5_link_is(client, auth, make, world):
    quiet = make.wheel_theme(world.bank, name="安静的活动", start_at=sh("2025-03-01 00:00:00"),
                             end_at=sh("2025-03-04 00:00:00"))
    log_in_in_english(client, auth, "a_viewer")

    body = text(client.get(f"/activities/{quiet.id}/statistics"))

    assert set(kpis(body).values()) == {"0"}
    assert 'data-testid="no-visits"' in body and "QR code and link" in body and 'data-testid="funnel-empty"' in body
    assert f"/activities/{quiet.id}?tab=entry" in body
    assert cells(body, "funnel-participants")[2:] == ["—", "—"]  # nothing to divide by
    assert "The prize pool has no prize with stock yet." in body


def test_more_participants_than_visitors_is_explained(client, auth, make, world):
    from tests.activities.statistics_data import spin

    log_in_in_english(client, auth, "a_viewer")
    spin(world.theme, "oApiOnly", "2025-03-06 10:00:00", 20, channel="api")
    spin(world.theme, "oApiOnly2", "2025-03-06 10:00:00", 20, channel="api")

    body = text(client.get(f"/activities/{world.theme.id}/statistics", query_string=WHOLE))

    assert 'data-testid="api-draws"' in body and cells(body, "funnel-participants")[2] == "150.0%"


def test_the_export_holds_four_sheets_and_is_audited(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    book = workbook(client.get(f"/activities/{world.theme.id}/statistics/export",
                               query_string={"from": "2025-03-02", "to": "2025-03-04"}))

    assert book.sheetnames == ["KPIs", "Funnel", "Prizes", "Daily"]
    kpi = dict(sheet_rows(book, "KPIs")[1:])
    assert kpi["Theme activity id"] == world.theme.theme_no and kpi["From"] == "2025-03-02"
    assert [kpi[k] for k in ("Page views", "Draws", "Wins", "Coupons issued", "Coupons redeemed")] == [2, 3, 1, 1, 0]
    assert kpi["Redemption rate (%)"] == 0 and kpi["Win rate (%)"] == 33.3
    assert sheet_rows(book, "Funnel") == [
        ("Step", "Customers", "Of the step before (%)", "Of the visitors (%)"),
        ("Visited the page", 2, None, 100), ("Drew", 3, 150, 150), ("Won a prize", 1, 33.3, 50),
        ("Redeemed a coupon", 0, 0, 0)]
    prizes = sheet_rows(book, "Prizes")
    assert prizes[0] == ("Prize", "Kind", "Stock", "Stock left", "Awarded", "Share of draws (%)", "Coupons issued",
                         "Coupons redeemed")
    assert prizes[1] == ("十元券", "Coupon", 5, 2, 1, 33.3, 1, 0)
    assert prizes[2] == ("100积分", "Points", 2, 1, 0, 0, None, None)
    assert prizes[3] == ("谢谢参与", "Thanks for taking part", None, None, 2, 66.7, None, None)
    assert sheet_rows(book, "Daily") == [
        ("Day", "Page views", "Unique visitors", "Draws", "Wins", "Coupons redeemed"),
        ("2025-03-02", 1, 1, 1, 0, 0), ("2025-03-03", 0, 0, 1, 1, 0), ("2025-03-04", 1, 1, 1, 0, 1)]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "theme_statistics.export")
                               ).scalar_one()
    assert event.object_id == str(world.theme.id) and event.org_id == world.bank.id
    assert event.after["from"] == "2025-03-02" and event.after["sheets"] == ["kpis", "funnel", "prizes", "daily"]


def test_an_export_with_nothing_to_divide_by_writes_a_dash(client, auth, make, world):
    quiet = make.wheel_theme(world.bank, start_at=sh("2025-03-01 00:00:00"), end_at=sh("2025-03-02 00:00:00"))
    log_in_in_english(client, auth, "a_viewer")

    book = workbook(client.get(f"/activities/{quiet.id}/statistics/export"))

    assert dict(sheet_rows(book, "KPIs")[1:])["Win rate (%)"] == "—"
    assert sheet_rows(book, "Funnel")[2] == ("Drew", 0, "—", "—")


@pytest.mark.parametrize("url", ["/activities/{id}/statistics", "/activities/{id}/statistics/export"])
def test_another_banks_activity_is_not_found(client, auth, world, url):
    log_in_in_english(client, auth, "b_viewer")

    assert client.get(url.format(id=world.theme.id)).status_code == 404
    assert client.get(url.format(id=world.other_theme.id)).status_code == 200
    assert db.session.execute(select(AuditEvent).where(AuditEvent.object_id == str(world.theme.id),
                                                       AuditEvent.action == "theme_statistics.export")
                              ).first() is None


def test_an_operator_without_the_permission_is_refused(client, auth, make, world):
    make.operator(org=world.bank, roles=("front_desk",), username="desk")
    log_in_in_english(client, auth, "desk")

    assert client.get(f"/activities/{world.theme.id}/statistics").status_code == 403
    assert client.get("/activities/statistics").status_code == 403


def test_the_activity_page_the_list_and_the_menu_link_to_the_statistics(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    detail = text(client.get(f"/activities/{world.theme.id}"))
    listing = text(client.get("/activities"))

    assert f'href="/activities/{world.theme.id}/statistics" data-testid="statistics"' in detail
    assert 'href="/activities/statistics" data-testid="statistics"' in listing
    menu = re.search(r'<aside class="sidebar.*?</aside>', listing, re.S).group(0)
    assert re.search(r'href="/activities/statistics">\s*<i class="bi bi-bar-chart-line"></i> Theme activity statistics',
                     menu)


# --- across activities ----------------------------------------------------------------------------------------


def test_a_bank_sees_its_own_activities_with_totals(client, auth, make, world):
    make.theme_activity(world.bank, name="去年的活动", start_at=sh("2024-01-01 00:00:00"), end_at=sh("2024-02-01 00:00:00"))
    log_in_in_english(client, auth, "a_viewer")

    body = text(client.get("/activities/statistics", query_string=WHOLE))

    assert f'data-testid="statistics-row-{world.theme.theme_no}"' in body
    assert world.other_theme.theme_no not in body and "去年的活动" not in body and "华南转盘" not in body
    row = cells(body, f"statistics-row-{world.theme.theme_no}")
    assert row[1:] == ["12", "4", "4", "6", "3", "4", "2", "1", "66.7%"]
    assert cells(body, "totals")[1:] == ["12", "4", "4", "6", "3", "4", "2", "1", "66.7%"]
    assert 'data-testid="chart-activities"' in body and "s-bank" not in body  # a bank picks no bank


def test_the_platform_sees_every_bank_sorts_and_pages_through_htmx(client, auth, world):
    log_in_in_english(client, auth, "root")

    page = text(client.get("/activities/statistics", query_string=WHOLE))
    fragment = client.get("/activities/statistics", query_string={**WHOLE, "sort": "views", "dir": "asc"},
                          headers=htmx_headers("statistics-rows"))
    picked = text(client.get("/activities/statistics",
                             query_string={**WHOLE, "partner_bank_id": world.other_partner.id}))

    assert "春节转盘" in page and "华南转盘" in page and 'id="s-bank"' in page
    assert cells(page, "totals")[1:5] == ["22", "6", "6", "8"]
    body = text(fragment)
    assert "<html" not in body and body.index("华南转盘") < body.index("春节转盘")  # 10 views before 12
    assert "华南转盘" in picked and "春节转盘" not in picked


def test_a_range_with_no_activity_says_so(client, auth, world):
    log_in_in_english(client, auth, "a_viewer")

    body = text(client.get("/activities/statistics", query_string={"from": "2024-05-01", "to": "2024-05-31"}))

    assert "No theme activity ran in these dates." in body and 'data-testid="totals"' not in body


def test_the_export_across_activities_has_the_table_and_its_totals(client, auth, make, world):
    log_in_in_english(client, auth, "root")

    book = workbook(client.get("/activities/statistics/export", query_string={**WHOLE, "sort": "draws", "dir": "desc"}))

    rows = sheet_rows(book, book.sheetnames[0])
    assert rows[0][:6] == ("Theme activity id", "Theme name", "Bank", "Status", "Start", "End")
    assert rows[0][6:] == ("Page views", "Unique visitors", "Participants", "Draws", "Winners", "Wins",
                           "Coupons issued", "Coupons redeemed", "Customers who redeemed", "Win rate (%)",
                           "Redemption rate (%)")
    assert [r[1] for r in rows[1:]] == ["春节转盘", "华南转盘", None]
    assert rows[1][2] == "华东银行" and rows[1][4] == "2025-03-01 00:00:00"
    assert rows[1][6:] == (12, 4, 4, 6, 3, 4, 2, 1, 1, 66.7, 50)
    assert rows[3][0] == "Total" and rows[3][6:] == (22, 6, 6, 8, 5, 6, 2, 1, 1, 75, 50)
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "theme_statistics.export")
                               ).scalar_one()
    assert event.object_id is None and event.after["rows"] == 2 and event.after["filters"]["from"] == "2025-03-01"
