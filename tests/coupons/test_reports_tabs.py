"""A coupon activity's issued-coupons and redemptions tabs: KPI cards, filters, the page / tab /
table answers, the download, and tenancy (bank B's activity is a 404)."""
from __future__ import annotations

import io

from openpyxl import load_workbook

from tests.coupons.test_reports import data, kpis, login, table  # noqa: F401  (data is a fixture)
from tests.helpers import htmx_headers


def test_issues_tab_figures_and_filters(client, auth, data):  # noqa: F811
    login(client, auth, "a_viewer")
    url = f"/coupons/activities/{data['threshold'].id}/issues"
    page = client.get(url).get_data(as_text=True)
    # Threshold activity: 3 issued (2 used), 2 failed, 1 processing.
    assert kpis(page) == {"issued": "3", "redeemed": "2", "unredeemed": "1", "redemption_pct": "66.7%"}
    assert len(table(page)) == 6 and "<html" in page
    assert [r["state"] for r in table(client.get(url, query_string={"state": "failed"}).get_data(as_text=True))] == [
        "Failed", "Failed"]
    failed = table(client.get(url, query_string={"serial": data["march_failed"].order_no}).get_data(as_text=True))
    assert [(r["serial"], r["result"]) for r in failed] == [(data["march_failed"].order_no, "100002 库存不足")]
    one_day = client.get(url, query_string={"from": "2025-04-02", "to": "2025-04-02"}).get_data(as_text=True)
    assert len(table(one_day)) == 3


def test_the_tab_answers_a_page_a_tab_or_its_table(client, auth, data):  # noqa: F811
    login(client, auth, "a_viewer")
    url = f"/coupons/activities/{data['threshold'].id}/redemptions"
    lazy = client.get(url, headers=htmx_headers(target="tab-content")).get_data(as_text=True)
    assert "<html" not in lazy and 'id="activity-redemptions"' in lazy and len(table(lazy)) == 2
    inner = client.get(url, query_string={"merchant_no": "", "serial": "RT0001"},
                       headers=htmx_headers(target="activity-redemptions")).get_data(as_text=True)
    assert 'id="activity-redemptions"' not in inner and [r["trade_serial"] for r in table(inner)] == ["RT0001"]
    boosted = client.get(url, headers=htmx_headers(boosted=True)).get_data(as_text=True)
    assert "<html" in boosted
    # Paging links keep the activity in the path.
    assert f'/coupons/activities/{data["threshold"].id}/redemptions?page=1' in lazy


def test_download_of_the_tab(client, auth, data):  # noqa: F811
    login(client, auth, "a_viewer")
    response = client.get(f"/coupons/activities/{data['threshold'].id}/issues/export", query_string={"state": "used"})
    rows = list(load_workbook(io.BytesIO(response.data)).active.values)
    assert rows[0][:3] == ("Coupon id", "OpenID", "Member id") and len(rows) == 3


def test_bank_b_gets_404_on_bank_a_tabs(client, auth, data):  # noqa: F811
    login(client, auth, "b_viewer")
    for path in ("issues", "redemptions", "issues/export"):
        assert client.get(f"/coupons/activities/{data['threshold'].id}/{path}").status_code == 404
    assert client.get(f"/coupons/activities/{data['other'].id}/issues").status_code == 200
