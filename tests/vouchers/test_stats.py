"""Voucher statistics on a small fixture: totals, rate, shares, daily figures, store filter,
tenancy, export."""
from __future__ import annotations

import io
import json
import re
from datetime import datetime, time, timedelta

import pytest
from openpyxl import load_workbook

from app.core.timeutil import BUSINESS_TZ, business_today, utcnow
from app.extensions import db
from app.vouchers.models import Voucher
from tests.vouchers.test_sync import add_verification, add_voucher


def local_noon(day) -> datetime:
    return datetime.combine(day, time(12), tzinfo=BUSINESS_TZ)


@pytest.fixture
def figures(make):
    merchant = make.org(kind="merchant", code="GYM", name="健身")
    store = make.org(kind="store", parent=merchant, code="GYM-1", name="一店")
    store2 = make.org(kind="store", parent=merchant, code="GYM-2", name="二店")
    other = make.org(kind="merchant", code="OTHER", name="别家")
    card = make.product(merchant, name="月卡", kind="membership_card",
                        attributes={"duration_value": 1, "duration_unit": "month"})
    lessons = make.product(merchant, name="私教10节", kind="coaching_package", attributes={"lessons": 10})
    make.operator(org=merchant, roles=("operator",), username="manager")
    make.operator(org=store, roles=("front_desk",), username="desk")
    today, yesterday = business_today(), business_today() - timedelta(days=1)
    used = add_voucher(store, "100000000001", product_id=card.id, status="used", uses_left=0, paid_price_fen=19900)
    add_voucher(store, "100000000002", product_id=card.id, paid_price_fen=19900)
    add_voucher(store, "100000000003", status="expired", paid_price_fen=19900)
    add_voucher(store, "100000000004", status="refunded", paid_price_fen=19900)
    multi = add_voucher(store2, "200000000001", platform="douyin", product_id=lessons.id, kind="multi_use",
                        uses_total=10, uses_left=8, status="partly_used", paid_price_fen=50000)
    add_voucher(store2, "200000000002", platform="douyin", status="refunding", paid_price_fen=4900)
    add_verification(used, verified_at=local_noon(today), amount_fen=19900)
    add_verification(multi, count=2, verified_at=local_noon(yesterday), amount_fen=10000)
    add_verification(used, status="undone", verified_at=local_noon(today), amount_fen=19900)  # not counted
    foreign = add_voucher(other, "900000000001", status="used", uses_left=0)
    add_verification(foreign, verified_at=local_noon(today), amount_fen=77700)
    # Recorded long before the range: out of the totals.
    old = add_voucher(store, "100000000099")
    db.session.execute(Voucher.__table__.update().where(Voucher.id == old.id).values(created_at=utcnow() - timedelta(days=60)))
    db.session.commit()
    return dict(merchant=merchant, store=store, store2=store2, other=other, today=today, yesterday=yesterday)


def kpis(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="kpi-(\w+)">([^<]*)<', page))


def chart(page: str, testid: str) -> tuple[list, list]:
    match = re.search(rf'data-testid="{testid}"[^>]*?data-labels=\'([^\']*)\'\s+data-values=\'([^\']*)\'', page, re.S)
    assert match, testid
    return json.loads(match.group(1)), json.loads(match.group(2))


def test_totals_rate_shares_and_daily_figures(client, auth, figures):
    auth.login("manager")
    page = client.get("/vouchers/stats").get_data(as_text=True)
    assert kpis(page) == {"total": "6", "verified": "2", "unverified": "1", "expired": "1", "refunded": "2",
                          "rate": "33.3%"}
    _, platform_counts = chart(page, "chart-platform")
    assert platform_counts == [2, 4]  # douyin, meituan (sorted by platform)
    assert re.search(r'data-testid="platform-meituan">.*?<td class="text-end">4</td><td class="text-end">1</td>'
                     r'<td class="text-end">25.0%</td><td class="text-end">¥796.00</td>', page)
    assert re.search(r'data-testid="platform-douyin">.*?<td class="text-end">2</td><td class="text-end">1</td>'
                     r'<td class="text-end">50.0%</td><td class="text-end">¥549.00</td>', page)
    _, type_counts = chart(page, "chart-type")
    assert type_counts == [1, 2, 3]  # coaching_package, membership_card, unmapped
    labels, daily = chart(page, "chart-daily-count")
    assert len(labels) == 30 and labels[-1] == figures["today"].strftime("%m-%d")
    assert daily[-1] == 1 and daily[-2] == 2 and sum(daily) == 3
    _, amounts = chart(page, "chart-daily-amount")
    assert amounts[-1] == 199.0 and amounts[-2] == 100.0 and sum(amounts) == 299.0


def test_store_filter_and_date_range(client, auth, figures):
    auth.login("manager")
    page = client.get(f"/vouchers/stats?org_id={figures['store2'].id}").get_data(as_text=True)
    assert kpis(page) == {"total": "2", "verified": "1", "unverified": "0", "expired": "0", "refunded": "1",
                          "rate": "50.0%"}
    _, daily = chart(page, "chart-daily-count")
    assert daily[-1] == 0 and daily[-2] == 2
    today = figures["today"].isoformat()
    page = client.get(f"/vouchers/stats?from={today}&to={today}").get_data(as_text=True)
    labels, daily = chart(page, "chart-daily-count")
    assert labels == [figures["today"].strftime("%m-%d")] and daily == [1]
    assert client.get(f"/vouchers/stats?org_id={figures['other'].id}").status_code == 404


def test_front_desk_sees_only_its_store_and_cannot_export(client, auth, figures):
    auth.login("desk")
    page = client.get("/vouchers/stats").get_data(as_text=True)
    assert kpis(page)["total"] == "4" and "export-stats" not in page
    assert client.get("/vouchers/stats/export").status_code == 403


def test_export_of_the_figures(client, auth, figures):
    auth.login("manager")
    response = client.get("/vouchers/stats/export")
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    rows = list(load_workbook(io.BytesIO(response.data)).active.values)
    assert rows[1][2] == (figures["today"] - timedelta(days=29)).isoformat() and rows[2][2] == figures["today"].isoformat()
    assert [row[2] for row in rows[3:9]] == [6, 2, 1, 1, 2, 33.3]
    daily = {row[1]: row[2] for row in rows if row[1] == figures["yesterday"].isoformat()}
    assert daily  # the daily rows are there
    assert [row[2] for row in rows if row[1] == figures["yesterday"].isoformat()] == [2, 100]
