"""The voucher list, a voucher's page, export, "sync now", the reconciliation page: filters,
search, pagination, masking, permissions and tenancy."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from rq.job import Job
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.jobruns import JobRun
from app.core.timeutil import business_today, utcnow
from app.extensions import db
from app.vouchers.models import ReconciliationItem, Voucher
from tests.helpers import csrf_from, htmx_headers
from tests.vouchers.test_sync import add_verification, add_voucher, meituan_account

ROW = re.compile(r'data-testid="voucher-row-([0-9A-Za-z]+)"')


@pytest.fixture
def shop(make):
    merchant = make.org(kind="merchant", code="GYM", name="健身")
    store = make.org(kind="store", parent=merchant, code="GYM-1", name="一店")
    other = make.org(kind="merchant", code="OTHER", name="别家")
    card = make.product(merchant, name="月卡", kind="membership_card",
                        attributes={"duration_value": 1, "duration_unit": "month"})
    manager = make.operator(org=merchant, roles=("operator",), username="manager")
    make.operator(org=store, roles=("front_desk",), username="desk")
    make.operator(org=other, roles=("org_admin",), username="other_admin")
    member = make.member(store, name="李四", phone="13812345678")
    vouchers = {
        "mt": add_voucher(store, "111100001111", product_id=card.id, buyer_phone_masked="138****5678",
                          expires_at=utcnow() + timedelta(days=30)),
        "dy": add_voucher(store, "222200002222", platform="douyin", deal_id="DYSKU1003", title="20 次健身次卡",
                          kind="multi_use", uses_total=20, uses_left=0, status="used"),
        "refunded": add_voucher(store, "333300003333", status="refunded", member_id=member.id),
        "foreign": add_voucher(other, "999900009999"),
    }
    return dict(merchant=merchant, store=store, other=other, card=card, manager=manager, member=member, **vouchers)


def codes(response) -> list[str]:
    assert response.status_code == 200
    return ROW.findall(response.get_data(as_text=True))


def test_list_shows_own_vouchers_with_search_and_filters(client, auth, shop):
    auth.login("manager")
    assert sorted(codes(client.get("/vouchers"))) == ["111100001111", "222200002222", "333300003333"]
    assert codes(client.get("/vouchers?q=2222 0000 2222")) == ["222200002222"]
    assert codes(client.get("/vouchers?q=999900009999")) == []  # another organisation's code is not found
    assert codes(client.get("/vouchers?q=138-1234-5678")) == ["333300003333"]  # the member's phone
    assert codes(client.get("/vouchers?platform=douyin")) == ["222200002222"]
    assert codes(client.get("/vouchers?kind=multi_use")) == ["222200002222"]
    assert codes(client.get("/vouchers?status=refunded")) == ["333300003333"]
    assert sorted(codes(client.get(f"/vouchers?org_id={shop['store'].id}"))) == [
        "111100001111", "222200002222", "333300003333"]
    assert client.get(f"/vouchers?org_id={shop['other'].id}").status_code == 404
    db.session.execute(Voucher.__table__.update().where(Voucher.id == shop["mt"].id)
                       .values(created_at=utcnow() - timedelta(days=10)))
    db.session.commit()
    since = (business_today() - timedelta(days=2)).isoformat()
    assert sorted(codes(client.get(f"/vouchers?from={since}"))) == ["222200002222", "333300003333"]
    old = (business_today() - timedelta(days=9)).isoformat()
    assert codes(client.get(f"/vouchers?to={old}")) == ["111100001111"]
    page = client.get("/vouchers").get_data(as_text=True)
    assert "138****5678" in page and "13812345678" not in page


def test_list_sorts_and_paginates_with_a_fragment_for_htmx(client, auth, shop):
    for n in range(10):
        add_voucher(shop["store"], f"5555{n:08d}", paid_price_fen=100 * (n + 1))
    auth.login("manager")
    first = client.get("/vouchers?per_page=10&sort=paid_price&dir=asc")
    assert len(codes(first)) == 10 and 'data-testid="total"' in first.get_data(as_text=True)
    assert "13 " in re.search(r'data-testid="total">([^<]*)<', first.get_data(as_text=True)).group(1)
    assert codes(first)[0] == "555500000000"  # the cheapest first
    second = client.get("/vouchers?per_page=10&page=2&sort=paid_price&dir=asc",
                        headers=htmx_headers(target="voucher-rows"))
    body = second.get_data(as_text=True)
    assert len(codes(second)) == 3 and "<html" not in body and 'id="voucher-filters"' not in body
    dearest = codes(client.get("/vouchers?per_page=10&sort=paid_price&dir=desc"))
    assert dearest[:3] == ["333300003333", "222200002222", "111100001111"]  # ¥199 each; then the newest first


def test_export_csv_and_xlsx_are_masked_and_audited(client, auth, shop):
    auth.login("manager")
    response = client.get("/vouchers/export?format=csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 4 and {r[0] for r in rows[1:]} == {"111100001111", "222200002222", "333300003333"}
    text = response.get_data(as_text=True)
    assert "138****5678" in text and "13812345678" not in text
    response = client.get("/vouchers/export?format=xlsx&platform=meituan&q=13812345678")
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = list(sheet.values)
    assert len(values) == 2 and values[1][0] == "333300003333"
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "voucher.export")
                               .order_by(AuditEvent.id.desc())).scalars().first()
    assert event.after["rows"] == 1 and event.after["q"] == "138****5678"
    assert client.get("/vouchers/export?format=pdf").status_code == 404


def test_detail_shows_the_verification_log_and_other_organisations_get_404(client, auth, shop):
    first = add_verification(shop["dy"], count=1)
    first.operator_id = shop["manager"].id
    undone = add_verification(shop["dy"], count=2, status="undone")
    undone.undone_at, undone.undone_by, undone.undo_reason = utcnow(), shop["manager"].id, "顾客改主意"
    db.session.commit()
    auth.login("manager")
    page = client.get(f"/vouchers/{shop['dy'].id}").get_data(as_text=True)
    assert f'data-testid="verification-{first.id}"' in page and f'data-testid="verification-{undone.id}"' in page
    assert "顾客改主意" in page and "测试用户" in page and "222200002222" in page
    empty = client.get(f"/vouchers/{shop['mt'].id}").get_data(as_text=True)
    assert 'data-testid="empty"' in empty
    assert client.get(f"/vouchers/{shop['foreign'].id}").status_code == 404
    auth.logout()
    auth.login("other_admin")
    assert client.get(f"/vouchers/{shop['dy'].id}").status_code == 404
    assert codes(client.get("/vouchers")) == ["999900009999"]


def test_front_desk_views_but_cannot_sync_or_export(client, auth, shop):
    account = meituan_account(shop["store"])
    auth.login("desk")
    page = client.get("/vouchers")
    assert len(codes(page)) == 3
    body = page.get_data(as_text=True)
    assert "sync-account" not in body and "export-csv" not in body
    token = csrf_from(page)
    assert client.post("/vouchers/sync", data={"csrf_token": token, "account_id": account.id}).status_code == 403
    assert client.post("/vouchers/reconciliation/run", data={"csrf_token": token, "account_id": account.id}).status_code == 403
    assert client.get("/vouchers/export?format=csv").status_code == 403
    assert client.get("/vouchers/reconciliation").status_code == 200
    assert db.session.execute(select(JobRun)).first() is None


def test_sync_now_starts_jobs_for_an_account_or_the_selection(client, auth, shop):
    account = meituan_account(shop["store"])
    foreign_account = meituan_account(shop["other"])
    auth.login("manager")
    page = client.get("/vouchers")
    assert f'data-testid="sync-account-{account.id}"' in page.get_data(as_text=True)
    token = csrf_from(page)
    response = client.post("/vouchers/sync", data={"csrf_token": token, "account_id": account.id})
    assert response.status_code == 302
    runs = db.session.execute(select(JobRun).order_by(JobRun.id)).scalars().all()
    assert [r.name for r in runs] == ["jobs.vouchers.sync_voucher_orders", "jobs.vouchers.sync_voucher_statuses"]
    assert all(r.org_id == shop["store"].id and r.started_by == shop["manager"].id for r in runs)
    assert Job.fetch(runs[0].rq_job_id, connection=client.application.extensions["redis"]).args == (account.id,)

    response = client.post("/vouchers/sync", data={"csrf_token": token, "voucher_ids": [
        shop["mt"].id, shop["dy"].id, shop["foreign"].id]})
    assert response.status_code == 302
    run = db.session.execute(select(JobRun).order_by(JobRun.id.desc())).scalars().first()
    job = Job.fetch(run.rq_job_id, connection=client.application.extensions["redis"])
    assert sorted(job.kwargs["voucher_ids"]) == sorted([shop["mt"].id, shop["dy"].id])  # not the other org's
    assert client.post("/vouchers/sync", data={"csrf_token": token, "account_id": foreign_account.id}).status_code == 404
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "job.start")).scalars().all()
    # The list shows the runs' progress, each polling for itself until finished.
    listing = client.get("/vouchers").get_data(as_text=True)
    assert f'id="voucher-job-{run.id}"' in listing
    progress = client.get(f"/vouchers/jobs/{run.id}", headers=htmx_headers(target=f"voucher-job-{run.id}"))
    assert progress.status_code == 200 and "every 1s" in progress.get_data(as_text=True)
    run.status, run.progress, run.finished_at = "succeeded", 100, utcnow()
    db.session.commit()
    assert client.get(f"/vouchers/jobs/{run.id}", headers=htmx_headers(target=f"voucher-job-{run.id}")).status_code == 286


def test_reconciliation_page_lists_differences_with_filters_and_runs_now(client, auth, shop):
    account = meituan_account(shop["store"])
    day = business_today() - timedelta(days=1)
    for code, kind in (("111100001111", "local_only"), ("444400004444", "platform_only")):
        db.session.add(ReconciliationItem(org_id=shop["store"].id, account_id=account.id, platform="meituan", day=day,
                                          code=code, kind=kind, platform_count=int(kind == "platform_only"),
                                          local_count=int(kind == "local_only")))
    foreign = meituan_account(shop["other"])
    db.session.add(ReconciliationItem(org_id=shop["other"].id, account_id=foreign.id, platform="meituan", day=day,
                                      code="999900009999", kind="platform_only", platform_count=1, local_count=0))
    db.session.commit()
    auth.login("manager")
    page = client.get("/vouchers/reconciliation").get_data(as_text=True)
    assert 'data-testid="difference-111100001111-local_only"' in page
    assert 'data-testid="difference-444400004444-platform_only"' in page
    assert "999900009999" not in page
    only = client.get("/vouchers/reconciliation?kind=platform_only", headers=htmx_headers(target="difference-rows"))
    body = only.get_data(as_text=True)
    assert "444400004444" in body and "111100001111" not in body and "<html" not in body
    token = csrf_from(client.get("/vouchers/reconciliation"))
    response = client.post("/vouchers/reconciliation/run", data={"csrf_token": token, "account_id": account.id,
                                                                 "day": day.isoformat()})
    assert response.status_code == 302
    run = db.session.execute(select(JobRun)).scalar_one()
    assert (run.name, run.queue) == ("jobs.vouchers.reconcile_vouchers", "reports")
    job = Job.fetch(run.rq_job_id, connection=client.application.extensions["redis"])
    assert job.args == (account.id,) and job.kwargs["day"] == day.isoformat()
    assert client.post("/vouchers/reconciliation/run", data={"csrf_token": token, "account_id": foreign.id}).status_code == 404


def test_menu_links_for_viewers(client, auth, shop):
    auth.login("desk")
    page = client.get("/vouchers").get_data(as_text=True)
    for path in ("/vouchers/stats", "/vouchers/reconciliation"):
        assert f'href="{path}"' in page
