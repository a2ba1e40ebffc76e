"""The product screens: list, search, filters, sort, the modal form with kind-specific fields, on/off sale."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.members.models import Product
from tests.helpers import htmx_headers
from tests.members.pages import field_has_error, marked_ids


def product_count() -> int:
    return db.session.execute(select(func.count()).select_from(Product)).scalar_one()


def row_names(response) -> list[str]:
    codes = marked_ids(response, "product-row-")
    names = dict(db.session.execute(select(Product.code, Product.name)).all())
    return [names[c] for c in codes]


@pytest.fixture
def bank(make):
    return make.org(name="华东银行")


@pytest.fixture
def catalogue(make, bank):
    return {
        "fund": make.product(bank, name="稳盈90天", kind="financial", price_fen=123456, attributes={
            "risk_level": "R2", "term_days": 90, "expected_yield_bp": 285, "min_purchase_fen": 100000}),
        "card": make.product(bank, name="月卡", kind="membership_card", price_fen=29900,
                             attributes={"duration_value": 1, "duration_unit": "month"}),
        "cup": make.product(bank, name="保温杯", kind="goods", price_fen=8800, attributes={"stock": 500}),
    }


def test_list_page_and_fragment(client, console, bank, catalogue):
    console.login(bank, roles=("viewer",))
    page = client.get("/products")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html
    assert sorted(row_names(page)) == sorted(["稳盈90天", "月卡", "保温杯"])
    assert re.search(r'<td class="num" data-testid="price">¥1,234\.56</td>', html)  # right-aligned, in yuan
    assert 'data-testid="new-product"' not in html  # a viewer cannot add
    fragment = client.get("/products", headers=htmx_headers("product-rows"))
    assert "<html" not in fragment.get_data(as_text=True) and len(marked_ids(fragment, "product-row-")) == 3
    summary = re.findall(r'data-testid="attributes">([^<]*)<', html)
    assert any("R2" in s and "2.85%" in s and "¥1,000.00" in s for s in summary)


@pytest.mark.parametrize("args, expected", [
    ({"q": "杯"}, ["保温杯"]),
    ({"q": "卡"}, ["月卡"]),
    ({"kind": "financial"}, ["稳盈90天"]),
    ({"kind": "goods", "q": "稳"}, []),
    ({"status": "off_sale"}, []),
    ({"sort": "price", "dir": "asc"}, ["保温杯", "月卡", "稳盈90天"]),
    ({"sort": "price", "dir": "desc"}, ["稳盈90天", "月卡", "保温杯"]),
])
def test_search_filters_and_sort(client, console, bank, catalogue, args, expected):
    console.login(bank)
    response = client.get("/products", query_string=args, headers=htmx_headers("product-rows"))
    names = row_names(response)
    assert names == expected if "sort" in args else sorted(names) == sorted(expected)


def test_search_by_code(client, console, bank, catalogue):
    console.login(bank)
    response = client.get("/products", query_string={"q": catalogue["card"].code.lower()})
    assert row_names(response) == ["月卡"]


def test_sort_by_name(client, console, make, bank):
    for name in ("b", "c", "a"):
        make.product(bank, name=name, attributes={"stock": 1})
    console.login(bank)
    response = client.get("/products", query_string={"sort": "name", "dir": "asc"}, headers=htmx_headers("product-rows"))
    assert row_names(response) == ["a", "b", "c"]


def test_empty_state(client, console, bank):
    console.login(bank)
    assert 'data-testid="empty"' in client.get("/products").get_data(as_text=True)


def test_kind_switch_fragment_holds_that_kinds_fields(client, console, bank):
    console.login(bank)
    fields = {}
    for kind in ("financial", "membership_card", "coaching_package", "group_class", "goods"):
        response = client.get("/products/kind-fields", query_string={"kind": kind}, headers=htmx_headers("kind-fields"))
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" not in html and 'id="kind-fields"' in html
        fields[kind] = set(re.findall(r'name="attr-([a-z_]+)"', html))
    assert fields == {
        "financial": {"risk_level", "term_days", "expected_yield_bp", "min_purchase_fen"},
        "membership_card": {"duration_value", "duration_unit", "visits"},
        "coaching_package": {"lessons", "course_name"},
        "group_class": {"course_name", "capacity", "duration_minutes"},
        "goods": {"sku", "stock"},
    }
    assert client.get("/products/kind-fields", query_string={"kind": "lottery"}).status_code == 404


def test_the_form_follows_the_kind_asked_for(client, console, bank):
    console.login(bank)
    html = client.get("/products/new", query_string={"kind": "group_class"}, headers=htmx_headers("modal-content")).get_data(as_text=True)
    assert 'name="attr-capacity"' in html and 'name="attr-risk_level"' not in html
    assert 'hx-get="/products/kind-fields"' in html


def product_form(console, org, kind, **values):
    data = {"csrf_token": console.csrf(), "org_id": org.id, "name": "新产品", "kind": kind, "price_fen": "1,234.5",
            "description": "说明"}
    data.update(values)
    return data


def test_create_financial_product_with_yuan_and_percent(client, console, bank):
    console.login(bank)
    response = client.post("/products/new", headers=htmx_headers("modal-content"), data=product_form(
        console, bank, "financial", **{"attr-risk_level": "R3", "attr-term_days": "91", "attr-expected_yield_bp": "3.2",
                                       "attr-min_purchase_fen": "10000"}))
    assert response.status_code == 204
    assert json.loads(response.headers["HX-Trigger"])["products-changed"]
    product = db.session.execute(select(Product)).scalar_one()
    assert (product.name, product.kind, product.price_fen, product.org_id) == ("新产品", "financial", 123450, bank.id)
    assert product.attributes == {"risk_level": "R3", "term_days": 91, "expected_yield_bp": 320,
                                  "min_purchase_fen": 1000000}


def test_create_membership_card_by_visits(client, console, bank):
    console.login(bank)
    response = client.post("/products/new", data=product_form(console, bank, "membership_card", **{
        "attr-visits": "20", "attr-duration_value": "", "attr-duration_unit": ""}))
    assert response.status_code == 302
    assert db.session.execute(select(Product.attributes)).scalar_one() == {"visits": 20}


@pytest.mark.parametrize("kind, attrs, field", [
    ("financial", {"attr-risk_level": "R9", "attr-term_days": "90", "attr-expected_yield_bp": "2", "attr-min_purchase_fen": "1"}, "attr-risk_level"),
    ("financial", {"attr-risk_level": "R1", "attr-term_days": "0", "attr-expected_yield_bp": "2", "attr-min_purchase_fen": "1"}, "attr-term_days"),
    ("financial", {"attr-risk_level": "R1", "attr-term_days": "9", "attr-expected_yield_bp": "2.555", "attr-min_purchase_fen": "1"}, "attr-expected_yield_bp"),
    ("financial", {"attr-risk_level": "R1", "attr-term_days": "9", "attr-expected_yield_bp": "2", "attr-min_purchase_fen": "1.001"}, "attr-min_purchase_fen"),
    ("membership_card", {"attr-visits": "10", "attr-duration_value": "1", "attr-duration_unit": "month"}, "attr-duration_value"),
    ("membership_card", {"attr-duration_value": "1"}, "attr-duration_unit"),
    ("coaching_package", {"attr-lessons": "ten", "attr-course_name": "私教"}, "attr-lessons"),
    ("group_class", {"attr-course_name": "", "attr-capacity": "10", "attr-duration_minutes": "45"}, "attr-course_name"),
    ("goods", {"attr-stock": "-1"}, "attr-stock"),
    ("goods", {"attr-stock": "1", "price_fen": "-5"}, "price_fen"),
    ("goods", {"attr-stock": "1", "price_fen": "abc"}, "price_fen"),
    ("goods", {"attr-stock": "1", "name": ""}, "name"),
])
def test_bad_attributes_are_422_beside_the_field(client, console, bank, kind, attrs, field):
    console.login(bank)
    response = client.post("/products/new", data=product_form(console, bank, kind, **attrs),
                           headers=htmx_headers("modal-content"))
    assert response.status_code == 422
    assert field_has_error(response, field)
    assert f'data-kind="{kind}"' in response.get_data(as_text=True)  # the chosen kind's fields come back
    assert product_count() == 0


def test_duplicate_name_in_the_org_is_422(client, console, bank, catalogue):
    console.login(bank)
    response = client.post("/products/new", data=product_form(console, bank, "goods", name="保温杯", **{"attr-stock": "1"}),
                           headers=htmx_headers("modal-content"))
    assert response.status_code == 422 and field_has_error(response, "name")
    assert product_count() == 3


def test_edit_shows_stored_units_as_entered_and_saves(client, console, bank, catalogue):
    console.login(bank)
    fund = catalogue["fund"]
    html = client.get(f"/products/{fund.id}/edit", headers=htmx_headers("modal-content")).get_data(as_text=True)
    assert 'value="1234.56"' in html and 'value="2.85"' in html and 'value="1000.00"' in html
    assert 'name="kind"' not in html  # the kind stays what it is
    response = client.post(f"/products/{fund.id}/edit", headers=htmx_headers("modal-content"), data={
        "csrf_token": console.csrf(), "name": "稳盈91天", "price_fen": "1000", "description": "",
        "attr-risk_level": "R2", "attr-term_days": "91", "attr-expected_yield_bp": "2.85",
        "attr-min_purchase_fen": "1000", "kind": "goods"})
    assert response.status_code == 204
    db.session.refresh(fund)
    assert (fund.name, fund.kind, fund.price_fen) == ("稳盈91天", "financial", 100000)
    assert fund.attributes == {"risk_level": "R2", "term_days": 91, "expected_yield_bp": 285, "min_purchase_fen": 100000}


def test_edit_with_a_bad_attribute_changes_nothing(client, console, bank, catalogue):
    console.login(bank)
    cup = catalogue["cup"]
    response = client.post(f"/products/{cup.id}/edit", headers=htmx_headers("modal-content"), data={
        "csrf_token": console.csrf(), "name": "大杯", "price_fen": "1", "attr-stock": "-3"})
    assert response.status_code == 422 and field_has_error(response, "attr-stock")
    db.session.refresh(cup)
    assert (cup.name, cup.attributes) == ("保温杯", {"stock": 500})


def test_off_and_on_sale(client, console, bank, catalogue):
    console.login(bank)
    cup = catalogue["cup"]
    assert client.post(f"/products/{cup.id}/status", data={"csrf_token": console.csrf(), "status": "off_sale"}).status_code == 302
    db.session.refresh(cup)
    assert cup.status == "off_sale"
    listed = client.get("/products", query_string={"status": "off_sale"}, headers=htmx_headers("product-rows"))
    assert row_names(listed) == ["保温杯"] and f'data-testid="on-sale-{cup.code}"' in listed.get_data(as_text=True)
    client.post(f"/products/{cup.id}/status", data={"csrf_token": console.csrf(), "status": "on_sale"})
    db.session.refresh(cup)
    assert cup.status == "on_sale"


def test_products_manage_permission(client, console, bank, catalogue):
    console.login(bank, roles=("viewer",))
    cup = catalogue["cup"]
    assert client.get("/products/new").status_code == 403
    assert client.get("/products/kind-fields", query_string={"kind": "goods"}).status_code == 403
    assert client.post("/products/new", data=product_form(console, bank, "goods", **{"attr-stock": "1"})).status_code == 403
    assert client.post(f"/products/{cup.id}/edit", data={"csrf_token": console.csrf(), "name": "x", "price_fen": "1",
                                                          "attr-stock": "1"}).status_code == 403
    assert client.post(f"/products/{cup.id}/status", data={"csrf_token": console.csrf(), "status": "off_sale"}).status_code == 403
    db.session.refresh(cup)
    assert (cup.name, cup.status, product_count()) == ("保温杯", "on_sale", 3)


def test_front_desk_cannot_see_products(client, console, bank):
    console.login(bank, roles=("front_desk",))
    assert client.get("/products").status_code == 403
    assert client.get("/members").status_code == 200
