"""The audit trail page: filters, detail, export, fragments and tenancy."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.core import audit
from app.core.audit import AuditEvent
from app.extensions import db
from tests.helpers import htmx_headers


def record_at(monkeypatch, when_utc: datetime, actor: str, action: str, object_type: str, object_id, org_id,
              before=None, after=None) -> int:
    """Append an event as if it happened at `when_utc` (the chain itself stays real)."""
    monkeypatch.setattr(audit, "utcnow", lambda: when_utc)
    with audit.acting_as(audit.Actor(None, actor, org_id, "10.1.2.3")):
        event = audit.record(action, object_type, object_id, before=before, after=after, org_id=org_id)
    db.session.commit()
    monkeypatch.undo()
    return event.id


@pytest.fixture
def events(world, monkeypatch):
    """Three events around Shanghai midnight, in banks A and B, and one platform-wide event."""
    utc = timezone.utc
    return {
        # 2026-03-01 00:30 in Shanghai is still 28 February in UTC.
        "a_member": record_at(monkeypatch, datetime(2026, 2, 28, 16, 30, tzinfo=utc), "alice", "member.update",
                              "member", 7, world.bank_a.id, before={"name": "张三", "level": "normal"},
                              after={"name": "张三丰", "level": "normal"}),
        "a_product": record_at(monkeypatch, datetime(2026, 3, 2, 15, 59, tzinfo=utc), "bob", "product.create",
                               "product", 11, world.bank_a.id, after={"name": "保温杯", "price_fen": 8800}),
        "b_member": record_at(monkeypatch, datetime(2026, 3, 3, 2, 0, tzinfo=utc), "alice", "member.update",
                              "member", 8, world.bank_b.id, before={"level": "normal"}, after={"level": "gold"}),
        "platform": record_at(monkeypatch, datetime(2026, 3, 3, 3, 0, tzinfo=utc), "system", "org.create",
                              "organisation", 1, None, after={"code": "PLATFORM"}),
    }


def rows_shown(response) -> set[int]:
    html = response.get_data(as_text=True)
    return {int(part.split('"')[0]) for part in html.split('data-testid="audit-row-')[1:]}


def test_platform_admin_sees_every_event_newest_first(client, auth, world, events):
    auth.login("boss")
    response = client.get("/audit")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html
    assert set(events.values()) <= rows_shown(response)
    # Newest first: the platform-wide event (recorded last) comes before the first one.
    assert html.index(f'audit-row-{events["platform"]}') < html.index(f'audit-row-{events["a_member"]}')
    assert "2026-03-01 00:30:00" in html  # shown in Shanghai time


@pytest.mark.parametrize("query, expected", [
    ("actor=ali", {"a_member", "b_member"}),
    ("actor=BOB", {"a_product"}),
    ("action=product.create", {"a_product"}),
    ("object_type=member&object_id=8", {"b_member"}),
    ("object_type=organisation", {"platform"}),
    ("date_from=2026-03-01&date_to=2026-03-01", {"a_member"}),  # by Shanghai date, not UTC date
    ("date_to=2026-02-28", set()),
    ("date_from=2026-03-02&date_to=2026-03-02", {"a_product"}),
    ("date_from=2026-03-03&date_to=2026-03-31", {"b_member", "platform"}),
    ("date_from=2026-03-03", {"b_member", "platform", "login"}),  # open-ended: today's login too
    ("actor=alice&date_from=2026-03-02", {"b_member"}),
])
def test_filters(client, auth, world, events, query, expected):
    auth.login("boss")
    login = db.session.execute(select(AuditEvent.id).where(AuditEvent.action == "auth.login")).scalar_one()
    known = dict(events, login=login)
    response = client.get(f"/audit?{query}", headers=htmx_headers("audit-rows"))
    assert response.status_code == 200
    assert rows_shown(response) == {known[name] for name in expected}


def test_filter_choices_and_bad_dates(client, auth, world, events):
    auth.login("boss")
    html = client.get("/audit").get_data(as_text=True)
    for action in ("member.update", "product.create", "org.create", "auth.login"):
        assert f'<option value="{action}"' in html
    assert '<option value="organisation"' in html
    garbled = client.get("/audit?date_from=yesterday&actor=alice", headers=htmx_headers("audit-rows"))
    assert rows_shown(garbled) == {events["a_member"], events["b_member"]}


def test_rows_fragment_for_its_target_full_page_otherwise(client, auth, world, events):
    auth.login("boss")
    fragment = client.get("/audit?action=member.update", headers=htmx_headers("audit-rows"))
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and 'data-testid="audit-filters"' not in html
    assert f'audit-row-{events["a_member"]}' in html
    assert "HX-Request" in fragment.headers.get("Vary", "")
    boosted = client.get("/audit?action=member.update", headers=htmx_headers("audit-rows", boosted=True))
    assert "<html" in boosted.get_data(as_text=True)
    paged = client.get("/audit?per_page=10&page=1", headers=htmx_headers("audit-rows"))
    assert 'data-testid="total"' in paged.get_data(as_text=True)


def test_pagination_counts_and_pages(client, auth, world, monkeypatch):
    for n in range(23):
        record_at(monkeypatch, datetime(2026, 4, 1, 1, n, tzinfo=timezone.utc), "carol", "thing.update", "thing",
                  n, world.bank_a.id, after={"n": n})
    auth.login("boss")
    first = client.get("/audit?actor=carol&per_page=10", headers=htmx_headers("audit-rows"))
    third = client.get("/audit?actor=carol&per_page=10&page=3", headers=htmx_headers("audit-rows"))
    assert len(rows_shown(first)) == 10 and len(rows_shown(third)) == 3
    assert "23" in first.get_data(as_text=True).split('data-testid="total"')[1][:40]


def test_detail_shows_before_and_after_side_by_side(client, auth, world, events):
    auth.login("boss")
    event_id = events["a_member"]
    modal = client.get(f"/audit/{event_id}", headers=htmx_headers("modal-content"))
    html = modal.get_data(as_text=True)
    assert modal.status_code == 200 and "<html" not in html
    assert 'data-field="name" class="table-warning"' in html  # changed
    assert 'data-field="level" class=""' in html  # named, unchanged
    name_row = html.split('data-field="name"')[1].split("</tr>")[0]
    assert name_row.index("张三") < name_row.index("张三丰")  # before, then after
    full = client.get(f"/audit/{event_id}")
    assert "<html" in full.get_data(as_text=True) and "张三丰" in full.get_data(as_text=True)
    assert client.get("/audit/999999").status_code == 404


def test_bank_operator_sees_only_their_banks_events(client, auth, world, events):
    auth.login("a_admin")
    shown = rows_shown(client.get("/audit", headers=htmx_headers("audit-rows")))
    assert {events["a_member"], events["a_product"]} <= shown
    assert events["b_member"] not in shown and events["platform"] not in shown
    assert client.get(f"/audit/{events['b_member']}").status_code == 404
    assert client.get(f"/audit/{events['platform']}").status_code == 404
    assert client.get(f"/audit/{events['a_member']}").status_code == 200
    html = client.get("/audit").get_data(as_text=True)
    assert '<option value="org.create"' not in html  # not even the other rows' actions leak


def test_csv_export_follows_filters_and_tenancy(client, auth, world, events):
    auth.login("boss")
    response = client.get("/audit/export?fmt=csv&actor=alice")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    ids = {int(row[0]) for row in rows[1:]}
    assert ids == {events["a_member"], events["b_member"]}
    a_row = next(row for row in rows if row[0] == str(events["a_member"]))
    assert "2026-03-01 00:30:00" in a_row and "甲银行" in a_row and "member.update" in a_row
    assert any("张三丰" in cell for cell in a_row)

    auth.logout()
    auth.login("a_admin")
    rows = list(csv.reader(io.StringIO(client.get("/audit/export?fmt=csv&actor=alice").get_data(as_text=True))))
    assert {int(row[0]) for row in rows[1:]} == {events["a_member"]}


def test_xlsx_export(client, auth, world, events):
    auth.login("boss")
    response = client.get("/audit/export?fmt=xlsx&action=member.update")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = list(sheet.values)
    assert len(values) == 3  # header and two events
    assert {row[0] for row in values[1:]} == {events["a_member"], events["b_member"]}
    assert client.get("/audit/export?fmt=pdf").status_code == 404


def test_csv_export_streams_past_one_batch(client, auth, world):
    for n in range(1150):  # the export reads in batches of 1000 while the file streams out
        audit.record("thing.update", "thing", n, after={"n": n}, org_id=world.bank_a.id)
    db.session.commit()
    auth.login("boss")
    response = client.get("/audit/export?fmt=csv&action=thing.update")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 1 + 1150
    assert rows[1][6] == "1149" and rows[-1][6] == "0"  # newest first, every row there
