"""Coupon reports on a known data set: the six reports' rows and KPI cards (Shanghai day and month
boundaries, month-on-month growth), filters, the column picker, paging, the xlsx export (audited,
refused beyond the limit), and bank A never seeing bank B's figures."""
from __future__ import annotations

import io
import re
from datetime import datetime

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.timeutil import BUSINESS_TZ
from app.extensions import db
from tests.coupons.issue_rows import add_issue

MONTHS = {"from_month": "2025-03", "to_month": "2025-06"}
DAYS = {"from": "2025-03-31", "to": "2025-04-02"}
ALL_DAYS = {"from": "2025-03-01", "to": "2025-06-30"}


def sh(text: str) -> datetime:
    """A Shanghai wall-clock time 'YYYY-MM-DD HH:MM:SS' as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=BUSINESS_TZ)


@pytest.fixture
def data(make):
    """Bank A: a threshold (¥10 off), a 9折 and a cash (¥5) activity; bank B: one activity.

    The first two issues straddle a Shanghai midnight that is 16:00 UTC of March 31, so UTC
    grouping would put both on March 31 (and both in March)."""
    bank_a, bank_b = make.org(kind="bank", name="甲银行"), make.org(kind="bank", name="乙银行")
    make.operator(org=bank_a, roles=("viewer",), username="a_viewer")
    make.operator(org=bank_b, roles=("viewer",), username="b_viewer")
    make.operator(org=make.platform(), roles=("platform_admin",), username="root")
    theme = make.theme_activity(bank_a, theme_no="5000000084")
    threshold = make.coupon_activity(theme=theme, name="满100减10", code="WX5000000084_1742000000",
                                     promo_amount_fen=1000, threshold_fen=10000)
    discount = make.coupon_activity(org=bank_a, name="九折券", coupon_type="discount", promo_amount_fen=0,
                                    discount_bp=9000, threshold_fen=0)
    cash = make.coupon_activity(org=bank_a, name="五元代金", coupon_type="cash", promo_amount_fen=500, threshold_fen=0)
    other = make.coupon_activity(org=bank_b, name="乙行券", promo_amount_fen=2000, threshold_fen=10000)
    rows = dict(
        last_of_march=add_issue(threshold, created_at=sh("2025-03-31 23:59:59"), openid="oAlice000000000001",
                                redemption_status="used", used_at=sh("2025-04-01 00:30:00"), promo_amount_fen=1000,
                                total_amount_fen=12000, org_amount_fen=11000, merchant_no="M001", merchant_name="一号店",
                                redemption_trade_no="RT0001", call_trade_no="BANKSERIAL01"),
        march_failed=add_issue(threshold, created_at=sh("2025-03-15 10:00:00"), status="failed", res_code="100002",
                               fail_msg="库存不足"),
        march_cash=add_issue(cash, created_at=sh("2025-03-15 12:00:00")),
        first_of_april=add_issue(threshold, created_at=sh("2025-04-01 00:00:00")),
        april_used=add_issue(threshold, created_at=sh("2025-04-02 09:00:00"), redemption_status="used",
                             used_at=sh("2025-04-02 10:00:00"), promo_amount_fen=1000, total_amount_fen=15000),
        april_discount=add_issue(discount, created_at=sh("2025-04-02 11:00:00")),
        april_processing=add_issue(threshold, created_at=sh("2025-04-02 12:00:00"), status="processing"),
        april_failed=add_issue(threshold, created_at=sh("2025-04-02 13:00:00"), status="failed", res_code="999999"),
        june_expired=add_issue(cash, created_at=sh("2025-06-10 08:00:00"), redemption_status="expired",
                               used_at=sh("2025-06-20 00:00:00")),
        bank_b_used=add_issue(other, created_at=sh("2025-04-01 10:00:00"), redemption_status="used",
                         used_at=sh("2025-04-01 11:00:00"), promo_amount_fen=2000, total_amount_fen=30000),
    )
    return dict(bank_a=bank_a, bank_b=bank_b, threshold=threshold, discount=discount, cash=cash, other=other, **rows)


def login(client, auth, username: str) -> None:
    """Log in and read the console in English (the words asserted below)."""
    auth.login(username)
    with client.session_transaction() as session:
        session["locale"] = "en"


def kpis(page: str) -> dict[str, str]:
    return {k: v.strip() for k, v in re.findall(r'data-testid="kpi-(\w+)">([^<]*)<', page)}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def table(page: str) -> list[dict[str, str]]:
    """The report table's rows as {column key: cell text}."""
    rows = re.findall(r'<tr data-testid="report-row">(.*?)</tr>', page, re.S)
    return [{key: _text(cell) for key, cell in re.findall(r'<td[^>]*data-col="(\w+)">(.*?)</td>', row, re.S)}
            for row in rows]


def get(client, url: str, **args) -> str:
    response = client.get(url, query_string=args)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_monthly_issue_summary_groups_shanghai_months_with_growth(client, auth, data):
    login(client, auth, "a_viewer")
    page = get(client, "/coupons/reports/issues/monthly", **MONTHS,
               cols="period,requested,issued,failed,pending,success_pct,face_fen,growth,amount_growth")
    rows = table(page)
    assert [r["period"] for r in rows] == ["2025-03", "2025-04", "2025-05", "2025-06"]
    assert [(r["requested"], r["issued"], r["failed"], r["pending"]) for r in rows] == [
        ("3", "2", "1", "0"), ("5", "3", "1", "1"), ("0", "0", "0", "0"), ("1", "1", "0", "0")]
    assert [r["success_pct"] for r in rows] == ["66.7%", "60.0%", "-", "100.0%"]
    assert [r["face_fen"] for r in rows] == ["¥15.00", "¥20.00", "¥0.00", "¥5.00"]
    # issued 2 → 3 → 0 → 1: "-" first, +50%, -100%, then "-" after an empty month
    assert [r["growth"] for r in rows] == ["-", "+50.0%", "-100.0%", "-"]
    assert [r["amount_growth"] for r in rows] == ["-", "+33.3%", "-100.0%", "-"]
    assert kpis(page) == {"requested": "9", "issued": "6", "face_fen": "¥40.00", "success_pct": "66.7%",
                          "monthly_average": "1.5"}


def test_daily_issue_summary_newest_first_per_type(client, auth, data):
    login(client, auth, "a_viewer")
    page = get(client, "/coupons/reports/issues/daily", **DAYS)
    rows = table(page)
    assert [r["period"] for r in rows] == ["2025-04-02", "2025-04-01", "2025-03-31"]
    assert [(r["requested"], r["issued"], r["failed"], r["success_pct"], r["face_fen"]) for r in rows] == [
        ("4", "2", "1", "50.0%", "¥10.00"), ("1", "1", "0", "100.0%", "¥10.00"), ("1", "1", "0", "100.0%", "¥10.00")]
    assert [(r["issued_by_type_threshold"], r["issued_by_type_discount"], r["issued_by_type_cash"]) for r in rows] == [
        ("1", "1", "0"), ("1", "0", "0"), ("1", "0", "0")]
    assert kpis(page) == {"requested": "6", "issued": "4", "face_fen": "¥30.00", "success_pct": "66.7%",
                          "active_days": "3"}
    labels = re.search(r'data-testid="chart-counts"[^>]*data-labels=\'([^\']*)\'\s+data-values=\'([^\']*)\'', page)
    assert labels.group(1) == '["03-31", "04-01", "04-02"]' and labels.group(2) == "[1, 1, 2]"


def test_redemption_summaries(client, auth, data):
    login(client, auth, "a_viewer")
    daily = get(client, "/coupons/reports/redemptions/daily", **DAYS,
                cols="period,redeemed,redeemed_fen,issued,redemption_pct")
    assert [(r["period"], r["redeemed"], r["redeemed_fen"], r["issued"], r["redemption_pct"])
            for r in table(daily)] == [
        ("2025-04-02", "1", "¥10.00", "2", "50.0%"),
        ("2025-04-01", "1", "¥10.00", "1", "100.0%"),  # used at 00:30 Shanghai, still March 31 in UTC
        ("2025-03-31", "0", "¥0.00", "1", "0.0%")]
    assert kpis(daily) == {"redeemed": "2", "redeemed_fen": "¥20.00", "redemption_pct": "50.0%",
                           "average_fen": "¥10.00"}

    monthly = get(client, "/coupons/reports/redemptions/monthly", **MONTHS)
    rows = table(monthly)
    assert [(r["period"], r["redeemed"], r["redemption_pct"], r["growth"]) for r in rows] == [
        ("2025-03", "0", "0.0%", "-"), ("2025-04", "2", "66.7%", "-"), ("2025-05", "0", "-", "-100.0%"),
        ("2025-06", "0", "0.0%", "-")]  # the June coupon expired: not a redemption
    assert kpis(monthly) == {"redeemed": "2", "redeemed_fen": "¥20.00", "redemption_pct": "33.3%",
                             "monthly_average": "0.5"}


def test_issue_details_filters_statuses_and_masks_openids(client, auth, data):
    login(client, auth, "a_viewer")
    page = get(client, "/coupons/reports/issues", **ALL_DAYS, per_page="50")
    rows = table(page)
    assert len(rows) == 9 and rows[0]["issued_at"] == "2025-06-10 08:00:00"
    assert "oAli****0001" in page and "oAlice000000000001" not in page
    assert rows[-1]["face_value"] == "¥10.00" and rows[-1]["threshold"] == "¥100.00"
    discount_row = next(r for r in rows if r["issued_at"] == "2025-04-02 11:00:00")
    assert discount_row["face_value"] == "pays 90% of the price"

    def states(**filters):
        return sorted(r["state"] for r in table(get(client, "/coupons/reports/issues", **ALL_DAYS, **filters)))

    assert states(state="used") == ["Used", "Used"]
    assert states(state="failed") == ["Failed", "Failed"]
    assert states(state="issuing") == ["Issuing"]
    assert states(state="expired") == ["Expired"]
    assert states(state="issued") == ["Issued"] * 3
    assert states(openid="oAlice000000000001") == ["Used"]
    assert states(openid="oAlice") == []  # an OpenID is matched whole, never by a part
    assert states(serial="BANKSERIAL01") == ["Used"]
    assert states(serial=data["april_failed"].order_no) == ["Failed"]
    assert len(states(activity="WX5000000084")) == 6
    assert len(states(theme_no="5000000084")) == 6
    assert states(coupon_type="cash") == ["Expired", "Issued"]
    # The default range is the last 30 days: this data set is older.
    assert table(get(client, "/coupons/reports/issues")) == []


def test_redemption_details(client, auth, data):
    login(client, auth, "a_viewer")
    rows = table(get(client, "/coupons/reports/redemptions", **ALL_DAYS))
    assert [(r["serial"], r["trade_serial"], r["redeemed_fen"], r["order_fen"], r["merchant"], r["used_at"],
             r["redemption"]) for r in rows] == [
        (data["april_used"].order_no, "-", "¥10.00", "¥150.00", "-", "2025-04-02 10:00:00", "Redeemed"),
        (data["last_of_march"].order_no, "RT0001", "¥10.00", "¥120.00", "M001 一号店", "2025-04-01 00:30:00", "Redeemed")]
    only_m001 = table(get(client, "/coupons/reports/redemptions", **ALL_DAYS, merchant_no="M001"))
    assert [r["serial"] for r in only_m001] == [data["last_of_march"].order_no]
    # The redemption date filter is by the Shanghai day of use.
    assert len(table(get(client, "/coupons/reports/redemptions", **{"from": "2025-04-01", "to": "2025-04-01"}))) == 1


def test_bank_a_never_sees_bank_b_and_the_platform_sees_both(client, auth, data):
    login(client, auth, "b_viewer")
    rows = table(get(client, "/coupons/reports/issues/monthly", **MONTHS))
    assert [r["issued"] for r in rows] == ["0", "1", "0", "0"]
    assert [r["serial"] for r in table(get(client, "/coupons/reports/redemptions", **ALL_DAYS))] == [
        data["bank_b_used"].order_no]
    assert kpis(get(client, "/coupons/reports/redemptions/daily", **DAYS))["redeemed_fen"] == "¥20.00"
    # Naming bank A's organisation in the filter is refused, not answered with its figures.
    assert client.get("/coupons/reports/issues", query_string={"org_id": data["bank_a"].id}).status_code == 404
    auth.logout()

    login(client, auth, "root")
    page = get(client, "/coupons/reports/issues/monthly", **MONTHS)
    assert kpis(page)["issued"] == "7"
    assert f'<option value="{data["bank_b"].id}"' in page  # the platform may narrow to one bank
    assert kpis(get(client, "/coupons/reports/issues/monthly", **MONTHS, org_id=data["bank_b"].id))["issued"] == "1"


def test_column_picker_in_the_url_and_remembered(client, auth, data):
    login(client, auth, "a_viewer")
    page = get(client, "/coupons/reports/issues", **ALL_DAYS, cols=["openid", "serial"])
    headers = re.findall(r'<th[^>]*data-col="(\w+)"', page)
    assert headers == ["serial", "openid"]  # the report's own order
    assert 'name="cols" value="openid" form="report-filters" id="col-report-filters-openid" checked' in page
    assert "cols=serial,openid" in page  # paging and export links carry the choice
    # Back from the menu (no cols in the URL): the choice is remembered.
    assert re.findall(r'<th[^>]*data-col="(\w+)"', get(client, "/coupons/reports/issues")) == ["serial", "openid"]
    # Unknown columns only: the defaults.
    default = re.findall(r'<th[^>]*data-col="(\w+)"', get(client, "/coupons/reports/issues", cols="nonsense"))
    assert default == ["serial", "theme_no", "code", "openid", "coupon_type", "face_value", "threshold", "issued_at",
                       "state"]


def test_paging_and_fragments(client, auth, data):
    login(client, auth, "a_viewer")
    response = client.get("/coupons/reports/issues", query_string={**ALL_DAYS, "per_page": 10, "page": 1},
                          headers={"HX-Request": "true", "HX-Target": "report-body"})
    body = response.get_data(as_text=True)
    assert "<html" not in body and 'id="report-filters"' not in body and len(table(body)) == 9 and "9 in all" in body
    second = client.get("/coupons/reports/issues", query_string={**ALL_DAYS, "per_page": 10, "page": 2},
                        headers={"HX-Request": "true", "HX-Target": "report-body"}).get_data(as_text=True)
    assert len(table(second)) == 9  # page 2 of one page is the last page
    daily = get(client, "/coupons/reports/issues/daily", **{"from": "2025-03-01", "to": "2025-04-30"}, per_page="10",
                page="2")
    assert "61 in all" in daily and [r["period"] for r in table(daily)][0] == "2025-04-20"


def test_export_xlsx_audited_with_picked_columns(client, auth, data):
    login(client, auth, "a_viewer")
    response = client.get("/coupons/reports/issues/export",
                          query_string={**ALL_DAYS, "cols": "serial,openid,face_value,state"})
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = list(sheet.values)
    assert values[0] == ("Issue serial", "OpenID", "Amount (yuan)", "Status")
    assert len(values) == 10
    assert ("oAli****0001" in {row[1] for row in values}) and all("oAlice0" not in str(row[1]) for row in values)
    assert {row[3] for row in values[1:]} == {"Used", "Failed", "Issued", "Issuing", "Expired"}
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_report.export")).scalar_one()
    assert event.after["rows"] == 9 and event.after["columns"] == ["serial", "openid", "face_value", "state"]
    assert event.org_id == data["bank_a"].id

    monthly = client.get("/coupons/reports/issues-monthly/export", query_string=MONTHS)
    rows = list(load_workbook(io.BytesIO(monthly.data)).active.values)
    growth = rows[0].index("Month on month (issued) (%)")
    assert rows[1][0] == "2025-03" and rows[2][growth] == 50.0 and rows[1][growth] in ("", None)
    assert rows[2][rows[0].index("Face value issued (yuan)")] == 20  # yuan, a number


def test_export_beyond_the_limit_is_refused(client, auth, data, monkeypatch):
    from app.coupons import report_routes

    monkeypatch.setattr(report_routes, "EXPORT_ROW_LIMIT", 5)
    login(client, auth, "a_viewer")
    response = client.get("/coupons/reports/issues/export", query_string=ALL_DAYS)
    assert response.status_code == 302 and "/coupons/reports/issues?" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "9 rows match, more than the 5 an export may hold" in page
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_report.export")).first() is None
