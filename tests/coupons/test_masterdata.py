"""Master data: institutions, banks and position numbers — validation, duplicates (409),
disable / enable, audit rows, export, permissions, and the type-ahead pickers."""
from __future__ import annotations

import io
import json
import re

import pytest
from flask_babel import force_locale
from openpyxl import load_workbook
from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.coupons import masterdata
from app.coupons.masterdata import PartyDetails
from app.coupons.models import Institution, PartnerBank, PositionNumber
from app.extensions import db
from tests.helpers import csrf_from, htmx_headers

NUMBER = "1" * 23


def in_english(client) -> None:
    """Messages are asserted in English (the console's default language is Chinese)."""
    client.post("/language", data={"locale": "en", "csrf_token": token(client)})


def login(auth, client, username: str) -> None:
    assert auth.login(username).status_code == 302
    in_english(client)


@pytest.fixture
def platform_admin(client, auth, make):
    operator = make.operator(make.platform(), roles=("platform_admin",), username="root")
    login(auth, client, "root")
    return operator


def token(client) -> str:
    return csrf_from(client.get("/dashboard"))


def post_form(client, url, data, target="modal-content"):
    headers = htmx_headers(target=target) if target else {}
    return client.post(url, data={**data, "csrf_token": token(client)}, headers=headers)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def field_error(response, name: str) -> str:
    """The error shown beside form field `name` ('' when none)."""
    html = response.get_data(as_text=True)
    block = re.search(rf'class="mb-3 field-{re.escape(name)}">(.*?)data-field-error>([^<]*)<', html, re.S)
    return block.group(2).strip() if block else ""


def institution(code="10000001", name="华东联合会", kind="commercial", **values) -> Institution:
    return masterdata.create_party(Institution, PartyDetails(code=code, name=name, kind=kind, **values))


def bank(make, code="20000001", name="工商银行", org=None, **values) -> PartnerBank:
    org = org or make.org(kind="bank", name=name)
    return masterdata.create_party(PartnerBank, PartyDetails(code=code, name=name, kind="state_owned", **values), org)


# --- institutions: validation, duplicates, audit ----------------------------------------------

INSTITUTION = {"code": "10000001", "name": "华东联合会", "kind": "commercial", "contact_name": "王经理",
               "contact_phone": "021-68881234"}


def test_an_institution_is_added_and_audited(client, platform_admin):
    response = post_form(client, "/masterdata/institutions/new", INSTITUTION)
    assert response.status_code == 204 and "institutions-changed" in response.headers["HX-Trigger"]
    row = db.session.execute(select(Institution)).scalar_one()
    assert (row.code, row.name, row.kind, row.contact_phone, row.status) == (
        "10000001", "华东联合会", "commercial", "021-68881234", "normal")
    [event] = events("institution.create")
    assert event.object_id == str(row.id) and event.actor_id == platform_admin.id
    assert event.after["code"] == "10000001" and event.after["name"] == "华东联合会"


@pytest.mark.parametrize("field, value, message", [
    ("code", "1234567", "exactly 8 digits"),
    ("code", "1234567a", "exactly 8 digits"),
    ("code", "", "Enter the 8-digit code"),
    ("name", "", "Enter the name"),
    ("name", "名" * 101, "100"),
    ("contact_phone", "12345", "mobile number"),
    ("contact_phone", "138123456789", "mobile number"),
])
def test_institution_fields_are_validated_with_clear_messages(client, platform_admin, field, value, message):
    response = post_form(client, "/masterdata/institutions/new", {**INSTITUTION, field: value})
    assert response.status_code == 422
    assert message in field_error(response, field)
    assert db.session.execute(select(func.count()).select_from(Institution)).scalar_one() == 0


@pytest.mark.parametrize("phone, stored", [("13812345678", "13812345678"), ("+86 138 1234 5678", "13812345678"),
                                           ("0571-8888888-123", "0571-8888888-123"), ("400-820-8820", "400-820-8820")])
def test_contact_phones_in_mainland_formats_are_accepted(phone, stored):
    assert masterdata.clean_phone(phone) == stored


def test_a_duplicate_code_is_a_409_with_a_field_error_and_input_kept(client, platform_admin):
    institution()
    response = post_form(client, "/masterdata/institutions/new", {**INSTITUTION, "name": "另一家"})
    assert response.status_code == 409
    assert "already used by an institution" in field_error(response, "code")
    assert 'value="另一家"' in response.get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(Institution)).scalar_one() == 1


def test_a_duplicate_code_is_reported_together_with_other_errors(client, platform_admin):
    institution()
    response = post_form(client, "/masterdata/institutions/new", {**INSTITUTION, "name": ""})
    assert field_error(response, "name") and "already used" in field_error(response, "code")


def test_inline_code_validation_while_typing(client, platform_admin):
    row = institution()
    url = "/masterdata/institutions/validate/code"
    assert "exactly 8 digits" in post_form(client, url, {"code": "123"}, target=None).get_data(as_text=True)
    assert "already used" in post_form(client, url, {"code": "10000001"}, target=None).get_data(as_text=True)
    assert post_form(client, f"{url}?id={row.id}", {"code": "10000001"}, target=None).get_data(as_text=True) == ""
    assert post_form(client, url, {"code": "10000002"}, target=None).get_data(as_text=True) == ""


def test_edit_records_only_what_changed(client, platform_admin):
    row = institution(contact_name="王经理", contact_phone="021-68881234")
    response = post_form(client, f"/masterdata/institutions/{row.id}/edit", {**INSTITUTION, "name": "华东联合会（新）"})
    assert response.status_code == 204
    [event] = events("institution.update")
    assert event.before == {"name": "华东联合会"} and event.after == {"name": "华东联合会（新）"}
    # Keeping its own code is not a duplicate; saving unchanged writes nothing.
    assert post_form(client, f"/masterdata/institutions/{row.id}/edit", {**INSTITUTION, "name": "华东联合会（新）"}
                     ).status_code == 204
    assert len(events("institution.update")) == 1


def test_disable_and_enable_are_audited(client, platform_admin):
    row = institution()
    response = post_form(client, f"/masterdata/institutions/{row.id}/status", {"status": "disabled"}, target=None)
    assert response.status_code == 302
    db.session.refresh(row)
    assert row.status == "disabled"
    post_form(client, f"/masterdata/institutions/{row.id}/status", {"status": "normal"}, target=None)
    db.session.refresh(row)
    assert row.status == "normal"
    assert [e.after for e in events("institution.disable") + events("institution.enable")] == [
        {"status": "disabled"}, {"status": "normal"}]


def test_the_list_searches_filters_and_pages(client, platform_admin):
    for n in range(25):
        institution(code=f"1000{n:04d}", name=f"机构{n:02d}", kind="local" if n % 2 else "commercial")
    masterdata.set_status(db.session.execute(select(Institution).filter_by(code="10000003")).scalar_one(), "disabled")
    page = client.get("/masterdata/institutions").get_data(as_text=True)
    assert page.count('data-testid="party-row-') == 20 and "25 in all" in page
    assert client.get("/masterdata/institutions?page=2").get_data(as_text=True).count('data-testid="party-row-') == 5
    found = client.get("/masterdata/institutions", query_string={"q": "机构1"}).get_data(as_text=True)
    assert found.count('data-testid="party-row-') == 10
    by_code = client.get("/masterdata/institutions", query_string={"q": "1000001"}).get_data(as_text=True)
    assert by_code.count('data-testid="party-row-') == 10
    disabled = client.get("/masterdata/institutions", query_string={"status": "disabled"}).get_data(as_text=True)
    assert re.findall(r'data-testid="party-row-(\d+)"', disabled) == ["10000003"]
    local = client.get("/masterdata/institutions", query_string={"kind": "local", "per_page": 50}).get_data(as_text=True)
    assert local.count('data-testid="party-row-') == 12
    rows = client.get("/masterdata/institutions", query_string={"q": "机构1"}, headers=htmx_headers(target="party-rows"))
    assert "<html" not in rows.get_data(as_text=True) and 'data-testid="party-row-10000010"' in rows.get_data(as_text=True)


def test_an_empty_list_says_what_to_do(client, platform_admin):
    assert "to add the first one" in client.get("/masterdata/institutions").get_data(as_text=True)


# --- banks ------------------------------------------------------------------------------------

def test_a_bank_names_a_bank_organisation_once(client, platform_admin, make):
    org = make.org(kind="bank", name="工行总行")
    data = {"code": "20000001", "name": "工商银行", "kind": "state_owned", "standard_code": "icbc", "org_id": org.id}
    assert post_form(client, "/masterdata/banks/new", data).status_code == 204
    row = db.session.execute(select(PartnerBank)).scalar_one()
    assert (row.standard_code, row.org_id) == ("ICBC", org.id)
    again = post_form(client, "/masterdata/banks/new", {**data, "code": "20000002"})
    assert again.status_code == 409 and "already has a bank" in field_error(again, "org_id")
    assert events("partner_bank.create")[0].after["org_id"] == org.id


def test_bank_rules(client, platform_admin, make):
    org, merchant = make.org(kind="bank"), make.org(kind="merchant")
    data = {"code": "20000001", "name": "工商银行", "kind": "state_owned", "org_id": org.id}
    bad = post_form(client, "/masterdata/banks/new", {**data, "standard_code": "IC-BC"})
    assert bad.status_code == 422 and "letters" in field_error(bad, "standard_code")
    # A merchant is not among the choices of the organisation field.
    assert post_form(client, "/masterdata/banks/new", {**data, "org_id": merchant.id}).status_code == 422
    with pytest.raises(masterdata.MasterDataError) as error:
        masterdata.create_party(PartnerBank, PartyDetails("20000009", "x", "local"), merchant)
    assert error.value.field == "org_id"


def test_bank_and_institution_codes_are_separate_registers(make):
    institution(code="30000001")
    assert bank(make, code="30000001").code == "30000001"
    with pytest.raises(masterdata.MasterDataError) as error:
        bank(make, code="30000001", name="另一家银行")
    assert error.value.conflict and error.value.field == "code"


# --- position numbers -------------------------------------------------------------------------

def test_a_position_number_is_23_digits(client, platform_admin):
    for bad, message in (("1" * 22, "exactly 23 digits (22 given)"), ("1" * 22 + "x", "digits only")):
        response = post_form(client, "/masterdata/positions/new", {"number": bad})
        assert response.status_code == 422 and message in field_error(response, "number")
    spaced = "1111 1111 1111 1111 1111 111"
    assert post_form(client, "/masterdata/positions/new", {"number": spaced, "note": "华东"}).status_code == 204
    row = db.session.execute(select(PositionNumber)).scalar_one()
    assert (row.number, row.note, row.status) == (NUMBER, "华东", "available")
    assert events("position_number.create")[0].after == {"number": NUMBER, "note": "华东", "status": "available"}


def test_a_duplicate_position_number_is_a_409_shown_in_the_form(client, platform_admin):
    masterdata.add_position_number(NUMBER)
    response = post_form(client, "/masterdata/positions/new", {"number": NUMBER})
    assert response.status_code == 409
    assert f"Position number {NUMBER} already exists" in field_error(response, "number")
    with pytest.raises(masterdata.MasterDataError) as error:
        masterdata.add_position_number(NUMBER)
    assert error.value.conflict


def test_bulk_add_reports_every_line(client, platform_admin):
    masterdata.add_position_number("2" * 23)
    pasted = "\n".join([NUMBER, "", "2" * 23, "123", NUMBER, "3" * 23 + " "])
    response = post_form(client, "/masterdata/positions/bulk", {"numbers": pasted, "note": "批量"})
    assert response.status_code == 200 and "positions-changed" in response.headers["HX-Trigger"]
    html = response.get_data(as_text=True)
    outcomes = dict(re.findall(r'data-testid="bulk-line-(\d+)" data-outcome="(\w+)"', html))
    assert outcomes == {"1": "added", "3": "exists", "4": "invalid", "5": "repeated", "6": "added"}
    assert "2 added, 3 not added" in html
    numbers = set(db.session.execute(select(PositionNumber.number)).scalars())
    assert numbers == {NUMBER, "2" * 23, "3" * 23}
    assert len(events("position_number.create")) == 3
    # The lines not added stay in the box to be corrected.
    box = re.search(r'<textarea[^>]*name="numbers"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    assert box.split() == ["2" * 23, "123", NUMBER]


def test_bulk_add_needs_something_and_has_a_cap():
    with pytest.raises(masterdata.MasterDataError) as nothing:
        masterdata.add_position_numbers("\n \n")
    with pytest.raises(masterdata.MasterDataError) as too_many, force_locale("en"):
        masterdata.add_position_numbers("\n".join(f"{n:023d}" for n in range(1001)))
    assert nothing.value.field == too_many.value.field == "numbers" and "1000" in str(too_many.value)
    assert not db.session.execute(select(PositionNumber.id)).first()


def test_availability_toggle_and_note_edit(client, platform_admin):
    row = masterdata.add_position_number(NUMBER, "旧")
    post_form(client, f"/masterdata/positions/{row.id}/status", {"status": "unavailable"}, target=None)
    db.session.refresh(row)
    assert row.status == "unavailable" and events("position_number.disable")[0].after == {"status": "unavailable"}
    post_form(client, f"/masterdata/positions/{row.id}/edit", {"note": "新"})
    db.session.refresh(row)
    assert row.note == "新" and events("position_number.update")[0].before == {"note": "旧"}


# --- export -----------------------------------------------------------------------------------

def xlsx_rows(response) -> list[list]:
    sheet = load_workbook(io.BytesIO(response.get_data()), read_only=True).active
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_export_follows_the_filters_and_is_audited(client, platform_admin, make):
    institution(code="10000001", name="甲", kind="local")
    institution(code="10000002", name="乙", kind="commercial")
    response = client.get("/masterdata/institutions/export", query_string={"format": "xlsx", "kind": "local"})
    assert response.status_code == 200 and response.headers["Content-Disposition"].endswith(".xlsx")
    rows = xlsx_rows(response)
    assert rows[0][:3] == ["Code", "Name", "Type"] and [r[0] for r in rows[1:]] == ["10000001"]
    [event] = events("institution.export")
    assert event.after == {"format": "xlsx", "filters": {"kind": "local"}, "rows": 1}
    bank(make, org=make.org(kind="bank", name="工行总行"))
    bank_rows = xlsx_rows(client.get("/masterdata/banks/export"))
    assert bank_rows[1][4] == "工行总行" and len(events("partner_bank.export")) == 1


def test_an_export_above_10000_rows_is_refused(client, platform_admin, app, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_MAX_ROWS", 2)
    for n in range(3):
        institution(code=f"1000000{n}", name=f"机构{n}")
    response = client.get("/masterdata/institutions/export", query_string={"format": "xlsx"})
    assert response.status_code == 302 and not events("institution.export")
    from app.core.exports import EXPORT_ROW_LIMIT
    assert EXPORT_ROW_LIMIT == 10_000


def test_position_export(client, platform_admin):
    masterdata.add_position_number(NUMBER, "备注")
    rows = xlsx_rows(client.get("/masterdata/positions/export"))
    assert rows[1][:3] == [NUMBER, "备注", "Available"]
    assert events("position_number.export")[0].after["rows"] == 1


# --- permissions ------------------------------------------------------------------------------

MANAGE_URLS = [("get", "/masterdata/institutions"), ("get", "/masterdata/banks/new"), ("get", "/masterdata/positions"),
               ("get", "/masterdata/positions/export"), ("post", "/masterdata/positions/new"),
               ("post", "/masterdata/institutions/validate/code")]


@pytest.mark.parametrize("method, url", MANAGE_URLS)
@pytest.mark.parametrize("role", ["org_admin", "operator", "viewer"])
def test_only_masterdata_managers_change_master_data(client, auth, make, method, url, role):
    make.operator(make.org(kind="bank"), roles=(role,), username="someone")
    login(auth, client, "someone")
    kwargs = {"data": {"csrf_token": token(client), "number": NUMBER}} if method == "post" else {}
    assert getattr(client, method)(url, **kwargs).status_code == 403
    assert db.session.execute(select(func.count()).select_from(PositionNumber)).scalar_one() == 0


def test_the_menu_shows_master_data_to_platform_admins_only(client, auth, make, platform_admin):
    assert "/masterdata/positions" in client.get("/dashboard").get_data(as_text=True)
    auth.logout()
    make.operator(make.org(kind="bank"), roles=("org_admin",), username="bank_admin")
    login(auth, client, "bank_admin")
    assert "/masterdata/" not in client.get("/dashboard").get_data(as_text=True)


# --- pickers ----------------------------------------------------------------------------------

def test_institution_picker_offers_only_normal_rows_by_name_or_code(client, auth, make):
    for n in range(25):
        institution(code=f"1000{n:04d}", name=f"华东机构{n:02d}")
    masterdata.set_status(db.session.execute(select(Institution).filter_by(code="10000000")).scalar_one(), "disabled")
    make.operator(make.org(kind="bank"), roles=("viewer",), username="viewer")  # coupons.view only
    login(auth, client, "viewer")
    results = client.get("/masterdata/institutions/search", query_string={"q": "华东"}).get_json()["results"]
    assert len(results) == 20 and "10000000" not in [r["code"] for r in results]
    assert results[0] == {"id": results[0]["id"], "value": str(results[0]["id"]), "code": "10000001",
                          "name": "华东机构01", "label": "华东机构01"}
    by_code = client.get("/masterdata/institutions/search", query_string={"q": "1000002"}).get_json()["results"]
    assert [r["code"] for r in by_code] == [f"1000002{n}" for n in range(5)]


def test_picker_htmx_options_and_pick(client, auth, make, platform_admin):
    row = institution(code="10000001", name="华东联合会")
    institution(code="10000009", name="西南联盟")
    headers = htmx_headers(target="inst-results")
    args = {"picker_q": "华东", "field": "institution_id", "picker": "inst"}
    html = client.get("/masterdata/institutions/search", query_string=args, headers=headers).get_data(as_text=True)
    assert 'data-testid="pick-10000001"' in html and 'hx-target="#inst-control"' in html
    assert 'data-testid="pick-10000009"' not in html  # what the picker's text input sent (picker_q) filters
    # Typing voids the earlier choice: the hidden value is emptied out of band.
    assert re.search(r'<input type="hidden" name="institution_id" id="inst-value" value="" [^>]*hx-swap-oob="true"', html)
    picked = client.get("/masterdata/institutions/pick", query_string={"id": row.id, "field": "institution_id",
                                                                        "picker": "inst"}, headers=headers)
    html = picked.get_data(as_text=True)
    assert f'name="institution_id" id="inst-value" value="{row.id}"' in html and 'value="华东联合会"' in html
    assert client.get("/masterdata/institutions/search", query_string={**args, "field": "x\"><script>"},
                      headers=headers).status_code == 400
    masterdata.set_status(row, "disabled")
    assert client.get("/masterdata/institutions/pick", query_string={"id": row.id, "field": "f", "picker": "p"},
                      headers=headers).status_code == 404


def test_bank_picker_shows_a_bank_only_its_own_bank(client, auth, make):
    own_org, other_org = make.org(kind="bank", name="甲行"), make.org(kind="bank", name="乙行")
    own = bank(make, code="20000001", name="甲银行", org=own_org)
    bank(make, code="20000002", name="乙银行", org=other_org)
    make.operator(own_org, roles=("operator",), username="teller")
    login(auth, client, "teller")
    results = client.get("/masterdata/banks/search", query_string={"q": "银行"}).get_json()["results"]
    assert [r["code"] for r in results] == ["20000001"]
    other = db.session.execute(select(PartnerBank).filter_by(code="20000002")).scalar_one()
    headers = htmx_headers(target="b-results")
    assert client.get("/masterdata/banks/pick", query_string={"id": other.id, "field": "bank_id", "picker": "b"},
                      headers=headers).status_code == 404
    assert client.get("/masterdata/banks/pick", query_string={"id": own.id, "field": "bank_id", "picker": "b"},
                      headers=headers).status_code == 200


def test_position_picker_offers_only_available_numbers(client, platform_admin):
    masterdata.add_position_number(NUMBER)
    masterdata.set_status(masterdata.add_position_number("1" * 22 + "2"), "unavailable")
    results = client.get("/masterdata/positions/search", query_string={"q": "1111"}).get_json()["results"]
    assert [r["value"] for r in results] == [NUMBER]


def test_pickers_need_a_coupon_permission(client, auth, make):
    make.operator(make.org(kind="merchant"), roles=("front_desk",), username="desk")
    login(auth, client, "desk")
    for url in ("/masterdata/institutions/search", "/masterdata/banks/search", "/masterdata/positions/search"):
        assert client.get(url).status_code == 403


def test_the_picker_macro_renders_a_chosen_row(app, make):
    row = institution(code="10000001", name="华东联合会")
    template = app.jinja_env.from_string(
        '{% from "macros/pickers.html" import picker %}'
        '{{ picker("institution", "institution_id", selected=sid, label="机构", required=True, error=err) }}')
    with app.test_request_context():
        html = template.render(sid=row.id, err="请选择")
        empty = template.render(sid=None, err=None)
    assert 'name="institution_id" id="institution_id-picker-value" value="%d"' % row.id in html
    assert 'value="华东联合会"' in html and "10000001" in html and "请选择" in html and "text-danger" in html
    assert 'form="institution_id-picker-search-only"' in html  # the typed text never goes with the form
    vals = json.loads(re.search(r"hx-vals='([^']+)'", html).group(1))
    assert vals == {"field": "institution_id", "picker": "institution_id-picker"}
    assert 'id="institution_id-picker-value" value=""' in empty and "请选择" not in empty
