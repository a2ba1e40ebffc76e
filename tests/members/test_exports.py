"""CSV and XLSX exports of members and products: current filters, personal data masked, capped, audited."""
from __future__ import annotations

import csv
import io
import re
import threading

import pytest
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import insert, select

from app.core import crypto
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import Member
from tests.conftest import Auth


def csv_rows(response) -> list[list[str]]:
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def xlsx_rows(response) -> list[list]:
    sheet = load_workbook(io.BytesIO(response.get_data()), read_only=True).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


@pytest.fixture
def bank(make):
    return make.org(name="华东银行")


@pytest.fixture
def members(make, bank):
    make.member(bank, name="张三", phone="13812348000", region="上海", wechat_openid="oWX1234567890ABCD")
    make.member(bank, name="李四", phone="13912349000", region="杭州")
    make.member(bank, name="王五", phone="13700007000", region="上海", status="disabled")


@pytest.mark.parametrize("roles", [("operator",), ("org_admin",)])  # with and without members.view_pii
@pytest.mark.parametrize("fmt, read", [("csv", csv_rows), ("xlsx", xlsx_rows)])
def test_member_export_masks_phones_and_follows_filters(client, console, bank, members, roles, fmt, read):
    console.login(bank, roles=roles)
    response = client.get("/members/export", query_string={"format": fmt, "region": "上海", "sort": "name", "dir": "asc"})
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Content-Disposition"].endswith(f".{fmt}")
    rows = read(response)
    header, body = rows[0], rows[1:]
    assert len(header) == 12 and len(body) == 2
    phone_column = [row[2] for row in body]
    assert sorted(phone_column) == ["137****7000", "138****8000"]
    names = sorted(row[1] for row in body)
    assert names == sorted(["张三", "王五"])
    dump = repr(rows)
    for clear in ("13812348000", "13700007000", "13912349000", "oWX1234567890ABCD"):
        assert clear not in dump
    assert "oWX1****ABCD" in dump
    assert all(row[3] == "华东银行" for row in body)


def test_member_export_is_audited_with_the_filters_and_a_masked_search(client, console, bank, members):
    console.login(bank, roles=("operator",))
    client.get("/members/export", query_string={"format": "csv", "q": "13812348000", "status": "active"})
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "member.export")).scalar_one()
    assert event.after == {"format": "csv", "filters": {"q": "138****8000", "status": "active"}, "rows": 1}
    assert event.actor_id == console.operator.id and event.org_id == bank.id


def test_member_export_needs_the_export_permission(client, console, bank, members):
    console.login(bank, roles=("viewer",))
    assert client.get("/members/export", query_string={"format": "csv"}).status_code == 403
    assert 'data-testid="export-csv"' not in client.get("/members").get_data(as_text=True)
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "member.export")).first() is None


def test_member_export_refuses_more_rows_than_allowed(app, client, console, bank, members, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_MAX_ROWS", 2)
    console.login(bank)
    response = client.get("/members/export", query_string={"format": "xlsx", "region": "杭州"})
    assert response.status_code == 200 and len(xlsx_rows(response)) == 2  # one row: within the limit
    refused = client.get("/members/export", query_string={"format": "xlsx", "level": "normal"})
    assert refused.status_code == 302
    assert "/members?" in refused.headers["Location"] and "level=normal" in refused.headers["Location"]
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    toast = re.search(r'text-bg-warning[^>]*>\s*<div class="d-flex"><div class="toast-body">([^<]*)<', page)
    assert toast and "3" in toast.group(1) and "2" in toast.group(1)  # how many match, and the limit
    rows = db.session.execute(select(AuditEvent.after).where(AuditEvent.action == "member.export")).scalars().all()
    assert [r["rows"] for r in rows] == [1]


def test_unknown_export_format_is_not_found(client, console, bank):
    console.login(bank)
    assert client.get("/members/export", query_string={"format": "pdf"}).status_code == 404
    assert client.get("/products/export", query_string={"format": "pdf"}).status_code == 404


@pytest.mark.parametrize("fmt, read", [("csv", csv_rows), ("xlsx", xlsx_rows)])
def test_product_export(client, console, make, bank, fmt, read):
    make.product(bank, name="稳盈90天", kind="financial", price_fen=123456, attributes={
        "risk_level": "R2", "term_days": 90, "expected_yield_bp": 285, "min_purchase_fen": 100000})
    make.product(bank, name="保温杯", kind="goods", price_fen=8800, attributes={"stock": 5})
    make.product(make.org(), name="别家的杯", kind="goods", attributes={"stock": 1})
    console.login(bank, roles=("viewer",))
    response = client.get("/products/export", query_string={"format": fmt, "kind": "financial"})
    assert response.status_code == 200
    rows = read(response)
    assert len(rows) == 2
    code, name, org, _kind, price, attributes, _status, _created = rows[1]
    assert (name, org) == ("稳盈90天", "华东银行") and code.startswith("P")
    assert str(price) == "1234.56"
    assert "R2" in attributes and "2.85%" in attributes
    everything = read(client.get("/products/export", query_string={"format": fmt}))
    assert sorted(r[1] for r in everything[1:]) == sorted(["稳盈90天", "保温杯"])


def served_like_production(app, username: str, url: str) -> bytes:
    """GET `url` as `username` from a thread of its own, with no app context around the request.

    So the request pushes and tears down its own context as under a WSGI server, and a streamed
    body is read after the view's teardown has closed the request's database session.
    """
    outcome: dict = {}

    def run():
        try:
            client = FlaskClient(app, app.response_class, use_cookies=True)
            assert Auth(client).login(username).status_code == 302
            response = client.get(url)
            outcome["body"] = response.get_data()
        except BaseException as exc:  # re-raised in the test's own thread
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["body"]


def test_a_long_csv_export_streams_to_the_end(app, console, make, bank):
    """More rows than one streamed chunk: the rows are still read after the view has returned."""
    now = utcnow()
    db.session.execute(insert(Member), [
        {"org_id": bank.id, "member_no": f"M{i:011d}", "name": f"客户{i}", "level": "normal", "status": "active",
         "phone_enc": crypto.encrypt(f"139{i:08d}"), "phone_hash": crypto.lookup_hash(f"139{i:08d}"),
         "registered_at": now, "created_at": now, "updated_at": now} for i in range(2600)])
    db.session.commit()
    operator = make.operator(bank, roles=("operator",))
    body = served_like_production(app, operator.username, "/members/export?format=csv&sort=name&dir=asc")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert len(rows) == 2601
    assert {row[2][:3] + row[2][-4:] for row in rows[1:]} == {f"139{i % 10000:04d}" for i in range(2600)}
    assert all("****" in row[2] for row in rows[1:])
