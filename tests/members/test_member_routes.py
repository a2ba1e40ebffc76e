"""The member screens: list, search, filters, sort, pages, fragments, forms, masking, detail, status."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.extensions import db
from app.members.models import Member
from tests.helpers import htmx_headers
from tests.members.pages import field_has_error, marked_ids, shown_phones


def member_count() -> int:
    return db.session.execute(select(func.count()).select_from(Member)).scalar_one()


def row_names(response) -> list[str]:
    numbers = marked_ids(response, "member-row-")
    names = dict(db.session.execute(select(Member.member_no, Member.name)).all())
    return [names[n] for n in numbers]


@pytest.fixture
def bank(make):
    return make.org(name="华东银行")


@pytest.fixture
def people(make, bank):
    return {
        "zhang3": make.member(bank, name="张三", phone="13812348000", level="gold", group_name="VIP", region="上海",
                              source_channel="手机银行"),
        "zhang4": make.member(bank, name="张四", phone="13812348001", level="normal", region="杭州",
                              source_channel="网点"),
        "li5": make.member(bank, name="李五", phone="13900000000", level="silver", group_name="VIP", region="上海",
                           source_channel="网点", status="disabled"),
    }


def test_list_is_a_full_page_and_its_rows_a_fragment(client, console, bank, people):
    console.login(bank)
    page = client.get("/members")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<html" in html and 'id="member-filters"' in html and 'id="member-rows"' in html
    assert sorted(row_names(page)) == sorted(["张三", "张四", "李五"])
    assert "HX-Request" in page.headers.get("Vary", "")

    fragment = client.get("/members", headers=htmx_headers("member-rows"))
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and 'id="member-filters"' not in body
    assert len(marked_ids(fragment, "member-row-")) == 3

    boosted = client.get("/members", headers=htmx_headers("member-rows", boosted=True))
    assert "<html" in boosted.get_data(as_text=True)


@pytest.mark.parametrize("q, expected", [
    ("张", ["张三", "张四"]),
    ("张三", ["张三"]),
    ("三", []),  # names match by their start only (an indexed prefix search)
    ("13812348000", ["张三"]),
    ("+86 138-1234-8001", ["张四"]),
    ("1381234", []),  # a phone is found by all 11 digits, never by a part of it
    ("%", []),
    ("_", []),
])
def test_search_box(client, console, bank, people, q, expected):
    console.login(bank)
    response = client.get("/members", query_string={"q": q}, headers=htmx_headers("member-rows"))
    assert sorted(row_names(response)) == sorted(expected)
    if not expected:
        assert 'data-testid="empty"' in response.get_data(as_text=True)


def test_search_by_member_number(client, console, bank, people):
    console.login(bank)
    number = people["li5"].member_no
    for q in (number, number.lower(), f"  {number} "):
        response = client.get("/members", query_string={"q": q}, headers=htmx_headers("member-rows"))
        assert row_names(response) == ["李五"]


def test_search_escapes_like_wildcards(client, console, make, bank):
    make.member(bank, name="100%满意")
    make.member(bank, name="1000客户")
    console.login(bank)
    response = client.get("/members", query_string={"q": "100%"}, headers=htmx_headers("member-rows"))
    assert row_names(response) == ["100%满意"]


@pytest.mark.parametrize("filters, expected", [
    ({"level": "gold"}, ["张三"]),
    ({"group": "VIP"}, ["张三", "李五"]),
    ({"region": "上海"}, ["张三", "李五"]),
    ({"channel": "网点"}, ["张四", "李五"]),
    ({"status": "disabled"}, ["李五"]),
    ({"status": "active", "region": "上海"}, ["张三"]),
    ({"level": "no-such-level"}, ["张三", "张四", "李五"]),
])
def test_filters(client, console, bank, people, filters, expected):
    console.login(bank)
    response = client.get("/members", query_string=filters, headers=htmx_headers("member-rows"))
    assert sorted(row_names(response)) == sorted(expected)


def test_filter_choices_come_from_the_visible_members(client, console, make, bank, people):
    other = make.org()
    make.member(other, name="外行", region="深圳")
    console.login(bank)
    html = client.get("/members").get_data(as_text=True)
    assert '<option value="杭州"' in html and '<option value="深圳"' not in html


def test_organisation_filter_takes_the_subtree(client, console, make, bank):
    branch = make.org(kind="store", parent=bank, name="静安支行")
    make.member(bank, name="总行客户")
    make.member(branch, name="支行客户")
    console.login(bank)
    whole = client.get("/members", query_string={"org_id": bank.id}, headers=htmx_headers("member-rows"))
    assert sorted(row_names(whole)) == sorted(["总行客户", "支行客户"])
    only_branch = client.get("/members", query_string={"org_id": branch.id}, headers=htmx_headers("member-rows"))
    assert row_names(only_branch) == ["支行客户"]


def test_registration_dates_are_shanghai_days(client, console, make, bank):
    # 2026-03-01 16:30 UTC is 2026-03-02 00:30 in Shanghai.
    make.member(bank, name="深夜", registered_at=datetime(2026, 3, 1, 16, 30, tzinfo=timezone.utc))
    make.member(bank, name="白天", registered_at=datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc))
    console.login(bank)

    def names(**filters):
        return sorted(row_names(client.get("/members", query_string=filters, headers=htmx_headers("member-rows"))))

    assert names(reg_from="2026-03-02") == ["深夜"]
    assert names(reg_to="2026-03-01") == ["白天"]
    assert names(reg_from="2026-03-01", reg_to="2026-03-01") == ["白天"]
    assert names(reg_from="2026-03-01", reg_to="2026-03-02") == sorted(["深夜", "白天"])
    assert names(reg_from="not-a-date") == sorted(["深夜", "白天"])


def test_sort_by_name_level_and_registration(client, console, make, bank):
    make.member(bank, name="bob", level="gold", registered_at=datetime(2026, 1, 2, tzinfo=timezone.utc))
    make.member(bank, name="alice", level="normal", registered_at=datetime(2026, 1, 3, tzinfo=timezone.utc))
    make.member(bank, name="carol", level="silver", registered_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    console.login(bank)

    def names(**args):
        return row_names(client.get("/members", query_string=args, headers=htmx_headers("member-rows")))

    assert names(sort="name", dir="asc") == ["alice", "bob", "carol"]
    assert names(sort="name", dir="desc") == ["carol", "bob", "alice"]
    assert names(sort="level", dir="asc") == ["alice", "carol", "bob"]  # normal < silver < gold
    assert names(sort="registered_at", dir="asc") == ["carol", "bob", "alice"]
    assert names() == ["alice", "bob", "carol"]  # default: newest registration first
    assert names(sort="phone_hash", dir="asc") == ["carol", "alice", "bob"]  # not sortable: newest created first


def test_pagination(client, console, make, bank):
    for i in range(25):
        make.member(bank, name=f"m{i:02d}", registered_at=datetime(2026, 1, 1, 0, i, tzinfo=timezone.utc))
    console.login(bank)
    response = client.get("/members", query_string={"per_page": 10, "page": 3, "sort": "name", "dir": "asc"},
                          headers=htmx_headers("member-rows"))
    assert row_names(response) == [f"m{i:02d}" for i in range(20, 25)]
    assert 'data-testid="total">' in response.get_data(as_text=True)
    assert "25" in response.get_data(as_text=True).split('data-testid="total">')[1].split("<")[0]
    beyond = client.get("/members", query_string={"per_page": 10, "page": 99, "sort": "name", "dir": "asc"},
                        headers=htmx_headers("member-rows"))
    assert row_names(beyond) == [f"m{i:02d}" for i in range(20, 25)]


def test_empty_list_says_what_to_do(client, console, bank):
    console.login(bank)
    response = client.get("/members")
    assert 'data-testid="empty"' in response.get_data(as_text=True)
    assert 'data-testid="new-member"' in response.get_data(as_text=True)


# --- masking ------------------------------------------------------------------------------------

def test_phone_is_masked_for_a_role_without_view_pii(client, console, bank, people):
    console.login(bank, roles=("operator",))
    html_list = client.get("/members", query_string={"q": "张三"})
    assert shown_phones(html_list) == ["138****8000"]
    assert "13812348000" not in html_list.get_data(as_text=True)
    detail = client.get(f"/members/{people['zhang3'].id}")
    assert shown_phones(detail) == ["138****8000"] and "13812348000" not in detail.get_data(as_text=True)
    form = client.get(f"/members/{people['zhang3'].id}/edit")
    assert form.status_code == 200 and "13812348000" not in form.get_data(as_text=True)


def test_full_phone_for_a_role_with_view_pii(client, console, bank, people):
    console.login(bank, roles=("org_admin",))
    assert shown_phones(client.get("/members", query_string={"q": "张三"})) == ["13812348000"]
    assert shown_phones(client.get(f"/members/{people['zhang3'].id}")) == ["13812348000"]
    assert 'value="13812348000"' in client.get(f"/members/{people['zhang3'].id}/edit").get_data(as_text=True)


# --- create and edit ----------------------------------------------------------------------------

def member_form(console, org, **values):
    data = {"csrf_token": console.csrf(), "org_id": org.id, "name": "王五", "phone": "13700001111", "level": "silver",
            "group_name": "新客", "region": "南京", "source_channel": "微信", "wechat_openid": "", "alipay_user_id": ""}
    data.update(values)
    return data


def test_create_member_in_the_modal(client, console, bank):
    console.login(bank)
    form = client.get("/members/new", headers=htmx_headers("modal-content"))
    assert form.status_code == 200 and "<html" not in form.get_data(as_text=True)
    response = client.post("/members/new", data=member_form(console, bank), headers=htmx_headers("modal-content"))
    assert response.status_code == 204
    events = json.loads(response.headers["HX-Trigger"])
    assert events["members-changed"] and events["modal:close"] and events["toast"]["level"] == "success"
    member = db.session.execute(select(Member)).scalar_one()
    assert (member.name, member.phone, member.level, member.org_id) == ("王五", "13700001111", "silver", bank.id)
    assert (member.group_name, member.region, member.source_channel) == ("新客", "南京", "微信")


def test_create_member_without_javascript_redirects(client, console, bank):
    console.login(bank)
    response = client.post("/members/new", data=member_form(console, bank))
    member = db.session.execute(select(Member)).scalar_one()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/members/{member.id}")


@pytest.mark.parametrize("values, field", [
    ({"phone": "12345"}, "phone"),
    ({"phone": ""}, "phone"),
    ({"name": ""}, "name"),
    ({"name": "张" * 51}, "name"),
    ({"level": "bronze"}, "level"),
])
def test_bad_input_is_422_and_changes_nothing(client, console, bank, values, field):
    console.login(bank)
    response = client.post("/members/new", data=member_form(console, bank, **values), headers=htmx_headers("modal-content"))
    assert response.status_code == 422
    assert field_has_error(response, field)
    assert 'value="南京"' in response.get_data(as_text=True)  # the input is kept
    assert member_count() == 0


def test_duplicate_phone_in_the_same_org_is_422(client, console, bank, people):
    console.login(bank)
    response = client.post("/members/new", data=member_form(console, bank, phone="138 1234 8000"),
                           headers=htmx_headers("modal-content"))
    assert response.status_code == 422 and field_has_error(response, "phone")
    assert member_count() == 3


def test_missing_csrf_token_changes_nothing(client, console, bank):
    console.login(bank)
    data = member_form(console, bank)
    del data["csrf_token"]
    response = client.post("/members/new", data=data)
    assert response.status_code == 400
    assert member_count() == 0


def test_edit_member(client, console, bank, people):
    console.login(bank)
    member = people["zhang4"]
    response = client.post(f"/members/{member.id}/edit", headers=htmx_headers("modal-content"), data={
        "csrf_token": console.csrf(), "name": "张四海", "phone": "", "level": "platinum", "group_name": "VIP",
        "region": "杭州", "source_channel": "网点", "wechat_openid": "oWX0001", "alipay_user_id": ""})
    assert response.status_code == 204
    db.session.refresh(member)
    assert (member.name, member.level, member.phone, member.wechat_openid) == ("张四海", "platinum", "13812348001", "oWX0001")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "member.update")).scalar_one()
    assert event.after["name"] == "张四海" and "phone" not in event.after


def test_edit_to_a_taken_phone_is_422_and_changes_nothing(client, console, bank, people):
    console.login(bank)
    member = people["zhang4"]
    response = client.post(f"/members/{member.id}/edit", headers=htmx_headers("modal-content"), data={
        "csrf_token": console.csrf(), "name": "改名", "phone": "13812348000", "level": "normal"})
    assert response.status_code == 422 and field_has_error(response, "phone")
    db.session.expire_all()
    assert (member.name, member.phone) == ("张四", "13812348001")


def test_a_viewer_cannot_create_or_edit(client, console, bank, people):
    console.login(bank, roles=("viewer",))
    assert client.get("/members").status_code == 200
    assert client.get("/members/new").status_code == 403
    assert client.post("/members/new", data=member_form(console, bank)).status_code == 403
    assert client.get(f"/members/{people['zhang3'].id}/edit").status_code == 403
    assert client.post(f"/members/{people['zhang3'].id}/status",
                       data={"csrf_token": console.csrf(), "status": "disabled"}).status_code == 403
    assert member_count() == 3 and people["zhang3"].status == "active"
    assert 'data-testid="new-member"' not in client.get("/members").get_data(as_text=True)


@pytest.mark.parametrize("phone, member_key, org_field, has_error", [
    ("13812348000", None, True, True),     # taken in this org
    ("12345", None, True, True),           # not a mobile number
    ("13700000000", None, True, False),    # free
    ("13812348000", "zhang3", False, False),  # a member's own number
    ("", "zhang3", False, False),          # blank on edit keeps the number
    ("13812348001", "zhang3", False, True),   # another member's number
])
def test_inline_phone_validation(client, console, bank, people, phone, member_key, org_field, has_error):
    console.login(bank)
    data = {"phone": phone}
    if org_field:
        data["org_id"] = bank.id
    query = {"member_id": people[member_key].id} if member_key else {}
    response = client.post("/members/validate/phone", query_string=query, data=data,
                           headers={**htmx_headers(), "X-CSRFToken": console.csrf()})
    assert response.status_code == 200
    assert bool(response.get_data(as_text=True).strip()) is has_error


def test_disable_and_enable(client, console, bank, people):
    console.login(bank)
    member = people["zhang3"]
    response = client.post(f"/members/{member.id}/status", data={"csrf_token": console.csrf(), "status": "disabled"},
                           headers={"Referer": f"http://localhost/members/{member.id}"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/members/{member.id}")
    db.session.refresh(member)
    assert member.status == "disabled"
    client.post(f"/members/{member.id}/status", data={"csrf_token": console.csrf(), "status": "active"})
    db.session.refresh(member)
    assert member.status == "active"
    client.post(f"/members/{member.id}/status", data={"csrf_token": console.csrf(), "status": "deleted"})
    db.session.refresh(member)
    assert member.status == "active"
    actions = db.session.execute(select(AuditEvent.action).where(AuditEvent.object_type == "member")
                                 .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["member.disable", "member.enable"]


def test_detail_page_lists_the_members_history(client, console, bank):
    console.login(bank)
    client.post("/members/new", data=member_form(console, bank))
    member = db.session.execute(select(Member)).scalar_one()
    client.post(f"/members/{member.id}/status", data={"csrf_token": console.csrf(), "status": "disabled"})
    page = client.get(f"/members/{member.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and member.member_no in html
    history = html.split('data-testid="member-history"')[1]
    assert "member.disable" in history and "member.create" in history
    assert history.index("member.disable") < history.index("member.create")  # newest first
    assert "13700001111" not in history
    card = client.get(f"/members/{member.id}", headers=htmx_headers("member-card"))
    assert "<html" not in card.get_data(as_text=True) and "member.create" in card.get_data(as_text=True)
