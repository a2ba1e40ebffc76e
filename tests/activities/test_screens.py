"""The theme activity screens: the list (filters in the URL, paging, batch pause, export), the add and
edit forms (with the background upload), a theme activity's page and its lazy tabs (batch data, link
lists with import, QR code and link), permissions and tenancy."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, text

from app.activities import backgrounds, entry
from app.activities.models import ThemeActivity
from app.core.audit import AuditEvent
from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons.models import CouponIssue
from app.extensions import db
from tests.activities.conftest import GIF, PNG, create
from tests.coupons.test_activities_screens import Console  # logs in (in English), posts with the CSRF token
from tests.helpers import htmx_headers

LIST = "/activities"


@pytest.fixture
def console(client, auth, make):
    return Console(client, auth, make)


def theme_nos_on(response) -> list[str]:
    return re.findall(r'data-testid="theme-row-(\d{10})"', response.get_data(as_text=True))


def local(dt) -> str:
    return dt.astimezone(BUSINESS_TZ).strftime("%Y-%m-%dT%H:%M:%S")


def form_data(world, **changes) -> dict:
    now = utcnow()
    data = {"name": "春节主题活动", "position_no": world.position.number, "institution_id": str(world.institution.id),
            "partner_bank_id": str(world.partner.id), "start_at": local(now + timedelta(hours=1)),
            "end_at": local(now + timedelta(days=30)), "rules": "每人每天一次\n奖品以到账为准",
            "participation_limit": "10", "daily_limit": "2", "background_ref": ""}
    data.update(changes)
    return data


def with_image(data: dict, image: bytes = PNG, filename: str = "bg.png") -> dict:
    return {**data, "background": (io.BytesIO(image), filename)}


# --- permissions and the menu --------------------------------------------------------------------------

@pytest.mark.parametrize("role, can_view, can_manage", [
    ("org_admin", True, True), ("operator", True, True), ("viewer", True, False), ("approver", True, False),
    ("front_desk", False, False),
])
def test_roles(console, world, role, can_view, can_manage):
    console.login(world.bank, roles=(role,))
    theme = create(world)
    assert console.client.get(LIST).status_code == (200 if can_view else 403)
    assert console.client.get(f"{LIST}/{theme.id}").status_code == (200 if can_view else 403)
    assert console.client.get(f"{LIST}/new").status_code == (200 if can_manage else 403)
    paused = console.post(f"{LIST}/{theme.id}/status", {"status": "paused"})
    assert paused.status_code == (302 if can_manage else 403)
    if can_view and not can_manage:
        body = console.client.get(LIST).get_data(as_text=True)
        assert 'data-testid="new-theme"' not in body and 'data-testid="batch-pause"' not in body


def test_theme_activities_come_first_in_the_coupons_menu(console, world):
    console.login(world.bank, roles=("viewer",))
    body = console.client.get(LIST).get_data(as_text=True)
    menu = body[body.index('class="sidebar'):body.index("</aside>")]
    links = re.findall(r'href="(/[^"]*)"', menu)
    assert links.index("/activities") + 1 == links.index("/coupons/activities")


# --- the list --------------------------------------------------------------------------------------

def test_a_bank_sees_only_its_own_theme_activities(console, world, make):
    mine = make.theme_activity(world.bank)
    theirs = make.theme_activity(world.other_bank)
    console.login(world.bank, roles=("viewer",))
    assert theme_nos_on(console.client.get(LIST)) == [mine.theme_no]
    assert console.client.get(f"{LIST}/{theirs.id}").status_code == 404
    console.auth.logout()
    console.login(world.platform)
    assert sorted(theme_nos_on(console.client.get(LIST))) == sorted([mine.theme_no, theirs.theme_no])


def test_filters_live_in_the_url_and_narrow_the_list(console, world, make):
    now = utcnow()
    a = make.theme_activity(world.bank, name="春节红包活动", position_no="1" * 23, institution_id=world.institution.id,
                            partner_bank_id=world.partner.id, wheel_enabled=True)
    b = make.theme_activity(world.bank, name="中秋活动", position_no="2" * 23, institution_id=world.other_institution.id,
                            partner_bank_id=world.partner.id, status="paused",
                            start_at=now + timedelta(days=40), end_at=now + timedelta(days=50))
    c = make.theme_activity(world.bank, name="春季踏青", start_at=now - timedelta(days=10), end_at=now - timedelta(days=1))
    console.login(world.bank, roles=("viewer",))

    def shown(**query):
        return sorted(theme_nos_on(console.client.get(LIST, query_string=query)))

    assert shown(theme_no=a.theme_no) == [a.theme_no]
    assert shown(theme_no=a.theme_no[:5]) == []  # the id is matched exactly
    assert shown(name="春") == sorted([a.theme_no, c.theme_no])
    assert shown(position_no="222") == [b.theme_no]
    assert shown(institution_id=world.other_institution.id) == [b.theme_no]
    assert shown(partner_bank_id=world.partner.id) == sorted([a.theme_no, b.theme_no])
    assert shown(wheel="yes") == [a.theme_no] and shown(wheel="no") == sorted([b.theme_no, c.theme_no])
    assert shown(status="active") == [a.theme_no] and shown(status="paused") == [b.theme_no]
    assert shown(status="expired") == [c.theme_no]  # its end has passed, though the job has not run yet
    day = (now + timedelta(days=45)).astimezone(BUSINESS_TZ).date().isoformat()
    assert shown(**{"from": day, "to": day}) == [b.theme_no]
    # The filtered rows as an htmx fragment, with the query kept in the pushed URL's links.
    fragment = console.client.get(LIST, query_string={"name": "中秋"}, headers=htmx_headers(target="theme-rows"))
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and theme_nos_on(fragment) == [b.theme_no] and "name=%E4%B8%AD%E7%A7%8B" in body


def test_paging_total_and_jump(console, world, make):
    for _ in range(12):
        make.theme_activity(world.bank)
    console.login(world.bank, roles=("viewer",))
    first = console.client.get(LIST, query_string={"per_page": 10})
    assert len(theme_nos_on(first)) == 10 and "12 in all" in first.get_data(as_text=True)
    second = console.client.get(LIST, query_string={"per_page": 10, "page": 2})
    assert len(theme_nos_on(second)) == 2
    assert 'data-testid="jump"' in first.get_data(as_text=True)
    assert not set(theme_nos_on(first)) & set(theme_nos_on(second))


def test_an_empty_list_says_what_to_do(console, world):
    console.login(world.bank)
    assert "New theme activity" in console.client.get(LIST).get_data(as_text=True)
    assert "No theme activity matches" in console.client.get(LIST, query_string={"name": "x"}).get_data(as_text=True)


def test_the_bank_filter_does_not_name_a_bank_the_operator_cannot_see(console, world):
    console.login(world.bank, roles=("viewer",))
    body = console.client.get(LIST, query_string={"partner_bank_id": world.other_partner.id}).get_data(as_text=True)
    assert "华南银行" not in body


# --- pause and enable ----------------------------------------------------------------------------------

def test_batch_pause_from_the_list(console, world, make):
    a, b = make.theme_activity(world.bank), make.theme_activity(world.bank, status="paused")
    foreign = make.theme_activity(world.other_bank)
    console.login(world.bank)
    response = console.post(f"{LIST}/status", {"status": "paused", "ids": [a.id, b.id, foreign.id]},
                            headers=htmx_headers(target="theme-rows"))
    assert response.status_code == 204
    events = json.loads(response.headers["HX-Trigger"])
    assert events["theme-activities-changed"] and events["selection-cleared"] == "theme-activities"
    assert "1 theme activities paused" in events["toast"]["message"] and "1 skipped" in events["toast"]["message"]
    db.session.expire_all()
    assert [db.session.get(ThemeActivity, t.id).status for t in (a, b, foreign)] == ["paused", "paused", "active"]


def test_pause_and_enable_without_javascript(console, world, make):
    theme = make.theme_activity(world.bank)
    console.login(world.bank)
    response = console.post(f"{LIST}/{theme.id}/status", {"status": "paused", "next": f"{LIST}?name=x"})
    assert response.status_code == 302 and response.headers["Location"] == f"{LIST}?name=x"
    response = console.post(f"{LIST}/{theme.id}/status", {"status": "active", "next": "//evil.example/"})
    assert response.headers["Location"] == LIST
    db.session.expire_all()
    assert db.session.get(ThemeActivity, theme.id).status == "active"
    assert console.post(f"{LIST}/{theme.id}/status", {"status": "expired"}).status_code == 400


# --- export ---------------------------------------------------------------------------------------------

def test_export_follows_the_filters_and_is_audited(console, world, make):
    make.theme_activity(world.bank, name="春节活动", partner_bank_id=world.partner.id, participation_limit=5)
    make.theme_activity(world.bank, name="中秋活动")
    console.login(world.bank, roles=("viewer",))
    response = console.client.get(f"{LIST}/export", query_string={"name": "春节"})
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert re.search(r"filename\*=UTF-8''" + re.escape(quote("主题活动列表")) + r"_\d{8}_\d{6}\.xlsx$", disposition)
    rows = [list(r) for r in load_workbook(io.BytesIO(response.get_data()), read_only=True).active.iter_rows(values_only=True)]
    assert len(rows) == 2 and rows[1][2] == "春节活动" and rows[1][4] == "华东银行" and rows[1][7] == 5
    assert rows[1][8] == "No cap" and rows[1][10] == "Active"
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "theme_activity.export")).scalar_one()
    assert event.after["rows"] == 1 and event.after["filters"] == {"name": "春节"}


def test_export_refuses_more_than_ten_thousand_rows(console, world):
    console.login(world.bank)
    db.session.execute(text("""
        INSERT INTO theme_activities (theme_no, name, start_at, end_at, wheel_enabled, status, paused_coupon_ids,
                                      org_id, created_at, updated_at)
        SELECT (6000000000 + n)::text, '主题' || n, now(), now() + interval '1 day', false, 'active', '[]', :org,
               now(), now()
        FROM generate_series(1, 10001) AS n"""), {"org": world.bank.id})
    db.session.commit()
    refused = console.client.get(f"{LIST}/export", follow_redirects=True)
    body = refused.get_data(as_text=True)
    assert refused.request.path == LIST and "10,001" in body
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "theme_activity.export")).first() is None
    assert console.client.get(f"{LIST}/export", query_string={"name": "主题1000"}).status_code == 200


# --- add and edit ---------------------------------------------------------------------------------------

def test_the_add_form_preselects_a_bank_operators_own_bank(console, world):
    console.login(world.bank)
    body = console.client.get(f"{LIST}/new", headers=htmx_headers(target="modal-content")).get_data(as_text=True)
    assert "<html" not in body
    assert re.search(r'name="partner_bank_id"[^>]*value="%d"' % world.partner.id, body)


def test_add_a_theme_activity_with_its_background(console, world):
    console.login(world.bank)
    response = console.client.post(f"{LIST}/new", data=with_image({**form_data(world), "csrf_token": console.csrf()}),
                                   content_type="multipart/form-data", headers=htmx_headers(target="modal-content"))
    assert response.status_code == 204, response.get_data(as_text=True)
    assert "5000000001" in json.loads(response.headers["HX-Trigger"])["toast"]["message"]
    theme = db.session.execute(select(ThemeActivity)).scalar_one()
    assert theme.name == "春节主题活动" and theme.org_id == world.bank.id and theme.rules == "每人每天一次\n奖品以到账为准"
    assert backgrounds.path_of(theme.background_image).read_bytes() == PNG
    served = console.client.get(f"{LIST}/{theme.id}/background")
    assert served.status_code == 200 and served.mimetype == "image/png" and served.data == PNG


def test_a_failed_add_keeps_the_input_and_the_chosen_image(console, world):
    console.login(world.bank)
    response = console.client.post(f"{LIST}/new", data=with_image({**form_data(world, name="", rules="x" * 1001),
                                                                     "csrf_token": console.csrf()}),
                                   content_type="multipart/form-data")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter the theme&#39;s name." in body and "at most 1000 characters" in body
    ref = re.search(r'name="background_ref" value="(pending/[0-9a-f]{32}\.png)"', body).group(1)
    assert 'data-testid="background-preview"' in body
    assert console.client.get(f"{LIST}/backgrounds/{ref}").data == PNG
    # Sent again without choosing the file again: the kept image is used.
    response = console.post(f"{LIST}/new", form_data(world, background_ref=ref))
    assert response.status_code == 302
    theme = db.session.execute(select(ThemeActivity)).scalar_one()
    assert backgrounds.path_of(theme.background_image).read_bytes() == PNG


def test_a_wrong_image_is_refused_with_a_message(console, world):
    console.login(world.bank)
    response = console.client.post(f"{LIST}/new", data=with_image({**form_data(world), "csrf_token": console.csrf()},
                                                                  b"%PDF-1.4", "bg.png"),
                                   content_type="multipart/form-data")
    assert response.status_code == 422 and "Only JPG, PNG and GIF" in response.get_data(as_text=True)
    assert db.session.execute(select(ThemeActivity)).first() is None


def test_the_image_is_uploaded_as_soon_as_it_is_chosen(console, world):
    console.login(world.bank)
    response = console.client.post(f"{LIST}/backgrounds", data={"csrf_token": console.csrf(),
                                                                 "background": (io.BytesIO(GIF), "x.gif")},
                                   content_type="multipart/form-data", headers=htmx_headers(target="background-field"))
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="background-field"' in body
    ref = re.search(r'value="(pending/[0-9a-f]{32}\.gif)"', body).group(1)
    assert console.client.get(f"{LIST}/backgrounds/{ref}").data == GIF
    assert console.client.get(f"{LIST}/backgrounds/theme_backgrounds/{ref.split('/')[1]}").status_code == 404
    refused = console.client.post(f"{LIST}/backgrounds", data={"csrf_token": console.csrf(),
                                                               "background": (io.BytesIO(b"GIF" + b"x" * 10), "x.gif")},
                                  content_type="multipart/form-data")
    assert "Only JPG, PNG and GIF" in refused.get_data(as_text=True)


def test_validation_while_typing(console, world):
    console.login(world.bank)
    assert "at most 100" in console.post(f"{LIST}/validate/name", form_data(world, name="名" * 101)).get_data(as_text=True)
    assert console.post(f"{LIST}/validate/name", form_data(world)).get_data(as_text=True) == ""
    past = local(utcnow() - timedelta(days=1))
    assert "past" in console.post(f"{LIST}/validate/start_at", form_data(world, start_at=past)).get_data(as_text=True)
    assert "0 to 999" in console.post(f"{LIST}/validate/daily_limit", form_data(world, daily_limit="1000")).get_data(as_text=True)
    assert console.post(f"{LIST}/validate/nope", form_data(world)).status_code == 404


def test_edit_keeps_the_id_institution_and_bank(console, world):
    theme = create(world)
    console.login(world.bank)
    page = console.client.get(f"{LIST}/{theme.id}/edit").get_data(as_text=True)
    assert 'data-testid="locked-id">5000000001' in page and "华东联合会" in page
    data = form_data(world, name="元宵主题活动", institution_id=str(world.other_institution.id),
                     partner_bank_id=str(world.other_partner.id), background_ref=theme.background_image,
                     start_at=local(theme.start_at), end_at=local(theme.end_at), participation_limit="20",
                     daily_limit="2")
    response = console.post(f"{LIST}/{theme.id}/edit", data)
    assert response.status_code == 302
    db.session.expire_all()
    theme = db.session.get(ThemeActivity, theme.id)
    assert theme.name == "元宵主题活动" and theme.participation_limit == 20
    assert theme.institution_id == world.institution.id and theme.partner_bank_id == world.partner.id
    lowered = console.post(f"{LIST}/{theme.id}/edit", {**data, "participation_limit": "5"})
    assert lowered.status_code == 422 and "may only be raised" in lowered.get_data(as_text=True)


def test_an_expired_theme_cannot_be_edited(console, world, make):
    theme = make.theme_activity(world.bank, start_at=utcnow() - timedelta(days=3), end_at=utcnow() - timedelta(days=1))
    console.login(world.bank)
    assert "can only be viewed" in console.client.get(f"{LIST}/{theme.id}/edit").get_data(as_text=True)
    assert 'data-testid="edit"' not in console.client.get(f"{LIST}/{theme.id}").get_data(as_text=True)


# --- one theme activity ---------------------------------------------------------------------------------

def test_the_page_and_its_lazy_tabs(console, world, make):
    theme = create(world)
    coupon = make.coupon_activity(theme=theme, promo_amount_fen=1250)
    for n, (status, used) in enumerate([("succeeded", "used"), ("succeeded", None), ("failed", None)]):
        db.session.add(CouponIssue(order_no=f"O{n}", call_trade_no=f"T{n}", coupon_activity_id=coupon.id,
                                   openid_enc="x", openid_hash=f"h{n}", openid_masked="o***", status=status,
                                   redemption_status=used, org_id=theme.org_id))
    db.session.commit()
    console.login(world.bank, roles=("viewer",))
    page = console.client.get(f"{LIST}/{theme.id}").get_data(as_text=True)
    assert 'data-testid="history"' in page and "每人每天可参与一次" in page
    assert 'data-testid="batches"' not in page  # the other tabs load when opened
    assert f'href="{LIST}/{theme.id}/prizes" data-testid="prize-pool"' in page

    batches = console.client.get(f"{LIST}/{theme.id}/batches", headers=htmx_headers(target="tab-batches"))
    body = batches.get_data(as_text=True)
    assert "<html" not in body and coupon.batch_no in body and "¥12.50" in body
    assert re.search(r'data-testid="issued">2<', body) and re.search(r'data-testid="redeemed">1<', body)
    # Loaded directly, a tab's URL is the whole page with that tab open.
    full = console.client.get(f"{LIST}/{theme.id}/batches").get_data(as_text=True)
    assert "<html" in full and 'data-testid="batches"' in full and 'data-testid="history"' not in full

    links_tab = console.client.get(f"{LIST}/{theme.id}/institutions", headers=htmx_headers(target="tab-institutions"))
    assert 'data-testid="link-10000001"' in links_tab.get_data(as_text=True)
    assert 'data-testid="add-institutions"' not in links_tab.get_data(as_text=True)  # a viewer does not add


def test_the_entry_tab_and_qr_code(console, world, app):
    theme = create(world)
    console.login(world.bank, roles=("viewer",))
    tab = console.client.get(f"{LIST}/{theme.id}/entry", headers=htmx_headers(target="tab-entry")).get_data(as_text=True)
    url = f"http://localhost/h5/activities/{theme.theme_no}"
    assert f'value="{url}"' in tab and f'data-copy="{url}"' in tab
    png = console.client.get(f"{LIST}/{theme.id}/qr.png")
    assert png.mimetype == "image/png" and png.data == entry.qr_png(url)
    download = console.client.get(f"{LIST}/{theme.id}/qr.png", query_string={"download": 1})
    assert f'filename="theme_{theme.theme_no}_qr.png"' in download.headers["Content-Disposition"]
    app.config["H5_BASE_URL"] = "https://h5.bank.example/"
    try:
        png = console.client.get(f"{LIST}/{theme.id}/qr.png")
        assert png.data == entry.qr_png(f"https://h5.bank.example/h5/activities/{theme.theme_no}")
    finally:
        app.config.pop("H5_BASE_URL")


# --- the link lists on the page ---------------------------------------------------------------------------

def test_add_and_delete_institutions_in_the_tab(console, world):
    theme = create(world)
    console.login(world.bank)
    target = htmx_headers(target="tab-institutions")
    added = console.post(f"{LIST}/{theme.id}/institutions", {"party_id": world.other_institution.id}, headers=target)
    assert added.status_code == 200 and 'data-testid="link-10000002"' in added.get_data(as_text=True)
    assert "华南联合会 added." == json.loads(added.headers["HX-Trigger"])["toast"]["message"]
    again = console.post(f"{LIST}/{theme.id}/institutions", {"party_id": world.other_institution.id}, headers=target)
    assert again.status_code == 422 and "already in the list" in json.loads(again.headers["HX-Trigger"])["toast"]["message"]
    link_ids = re.findall(r'name="link_ids" value="(\d+)"', added.get_data(as_text=True))
    deleted = console.post(f"{LIST}/{theme.id}/institutions/delete", {"link_ids": link_ids}, headers=target)
    message = json.loads(deleted.headers["HX-Trigger"])["toast"]["message"]
    assert "1 deleted." in message and "10000001 kept" in message
    assert 'data-testid="link-10000002"' not in deleted.get_data(as_text=True)


def test_import_institutions_from_the_template(console, world):
    theme = create(world)
    console.login(world.bank)
    template = console.client.get(f"{LIST}/{theme.id}/institutions/template")
    assert template.mimetype.endswith("spreadsheetml.sheet") and quote("主题活动报名机构导入模板") in template.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(template.data))
    book.active.append(["10000002"])
    book.active.append(["1234"])
    out = io.BytesIO()
    book.save(out)
    response = console.client.post(f"{LIST}/{theme.id}/institutions/import",
                                   data={"csrf_token": console.csrf(), "file": (io.BytesIO(out.getvalue()), "x.xlsx")},
                                   content_type="multipart/form-data", headers=htmx_headers(target="tab-institutions"))
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-testid="import-results"' in body
    assert 'data-testid="import-row-2"' in body and "Not an 8-digit code" in body
    assert "1 added, 1 not imported, of 2 rows." == json.loads(response.headers["HX-Trigger"])["toast"]["message"]
    bad = console.client.post(f"{LIST}/{theme.id}/institutions/import",
                              data={"csrf_token": console.csrf(), "file": (io.BytesIO(b"nope"), "x.xlsx")},
                              content_type="multipart/form-data", headers=htmx_headers(target="tab-institutions"))
    assert bad.status_code == 422 and "not an Excel workbook" in bad.get_data(as_text=True)


def test_link_lists_of_another_banks_theme_are_out_of_reach(console, world, make):
    theirs = create(world, actor=world.platform_admin, partner_bank_id=world.other_partner.id)
    console.login(world.bank)
    assert console.client.get(f"{LIST}/{theirs.id}/institutions").status_code == 404
    assert console.post(f"{LIST}/{theirs.id}/institutions", {"party_id": world.institution.id}).status_code == 404
    assert console.post(f"{LIST}/{theirs.id}/banks/delete", {"link_ids": [1]}).status_code == 404
    assert console.client.get(f"{LIST}/{theirs.id}/background").status_code == 404
