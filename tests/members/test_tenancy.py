"""An operator of bank A never reaches bank B's members or products: by URL, form field or HTMX partial."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.extensions import db
from app.members.models import Member, Product
from tests.helpers import htmx_headers
from tests.members.pages import marked_ids


@pytest.fixture
def world(make):
    bank_a, bank_b = make.org(name="A银行"), make.org(name="B银行")
    return {
        "bank_a": bank_a,
        "bank_b": bank_b,
        "member_a": make.member(bank_a, name="甲", phone="13800000001"),
        "member_b": make.member(bank_b, name="乙", phone="13800000002"),
        "product_a": make.product(bank_a, name="A杯", attributes={"stock": 1}),
        "product_b": make.product(bank_b, name="B杯", attributes={"stock": 1}),
    }


MEMBER_FORM = {"name": "改名", "phone": "13900000009", "level": "gold"}
PRODUCT_FORM = {"name": "改名", "price_fen": "1.00", "attr-stock": "9"}


@pytest.mark.parametrize("method, url, data, headers", [
    ("get", "/members/{member_b}", None, {}),
    ("get", "/members/{member_b}", None, htmx_headers("member-card")),
    ("get", "/members/{member_b}/edit", None, {}),
    ("get", "/members/{member_b}/edit", None, htmx_headers("modal-content")),
    ("post", "/members/{member_b}/edit", MEMBER_FORM, htmx_headers("modal-content")),
    ("post", "/members/{member_b}/status", {"status": "disabled"}, {}),
    ("post", "/members/validate/phone?member_id={member_b}", {"phone": "13800000002"}, htmx_headers()),
    ("post", "/members/validate/phone", {"phone": "13800000002", "org_id": "{bank_b}"}, htmx_headers()),
    ("get", "/members?org_id={bank_b}", None, htmx_headers("member-rows")),
    ("get", "/members/export?format=csv&org_id={bank_b}", None, {}),
    ("get", "/products/{product_b}/edit", None, htmx_headers("modal-content")),
    ("post", "/products/{product_b}/edit", PRODUCT_FORM, htmx_headers("modal-content")),
    ("post", "/products/{product_b}/status", {"status": "off_sale"}, {}),
    ("get", "/products?org_id={bank_b}", None, htmx_headers("product-rows")),
    ("post", "/members/new", {**MEMBER_FORM, "org_id": "{bank_b}"}, htmx_headers("modal-content")),
    ("post", "/products/new", {**PRODUCT_FORM, "org_id": "{bank_b}", "kind": "goods"}, htmx_headers("modal-content")),
])
def test_other_banks_rows_are_not_found(client, console, world, method, url, data, headers):
    ids = {key: row.id for key, row in world.items()}
    console.login(world["bank_a"])
    token = console.csrf()
    before = (db.session.execute(select(func.count()).select_from(Member)).scalar_one(),
              db.session.execute(select(func.count()).select_from(Product)).scalar_one(),
              db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    if data is not None:
        data = {k: v.format(**ids) for k, v in data.items()} | {"csrf_token": token}
    response = getattr(client, method)(url.format(**ids), data=data, headers={**headers, "X-CSRFToken": token})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "乙" not in body and "B杯" not in body and "13800000002" not in body
    db.session.expire_all()
    member_b, product_b = db.session.get(Member, ids["member_b"]), db.session.get(Product, ids["product_b"])
    assert (member_b.name, member_b.status, member_b.phone) == ("乙", "active", "13800000002")
    assert (product_b.name, product_b.status, product_b.attributes) == ("B杯", "on_sale", {"stock": 1})
    after = (db.session.execute(select(func.count()).select_from(Member)).scalar_one(),
             db.session.execute(select(func.count()).select_from(Product)).scalar_one(),
             db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())
    assert after == before


def test_lists_searches_and_exports_show_only_own_rows(client, console, world):
    console.login(world["bank_a"])
    assert marked_ids(client.get("/members"), "member-row-") == [world["member_a"].member_no]
    by_phone = client.get("/members", query_string={"q": "13800000002"})
    by_number = client.get("/members", query_string={"q": world["member_b"].member_no})
    assert marked_ids(by_phone, "member-row-") == [] and marked_ids(by_number, "member-row-") == []
    assert marked_ids(client.get("/products"), "product-row-") == [world["product_a"].code]
    assert marked_ids(client.get("/products", query_string={"q": world["product_b"].code}), "product-row-") == []
    export = client.get("/members/export", query_string={"format": "csv"}).get_data().decode("utf-8")
    assert "甲" in export and "乙" not in export
    products = client.get("/products/export", query_string={"format": "csv"}).get_data().decode("utf-8")
    assert "A杯" in products and "B杯" not in products


def test_forms_offer_only_visible_organisations(client, console, world):
    console.login(world["bank_a"])
    for url in ("/members/new", "/products/new", "/members", "/products"):
        html = client.get(url).get_data(as_text=True)
        assert f'value="{world["bank_a"].id}"' in html and "B银行" not in html, url


def test_the_platform_sees_every_bank(client, console, make, world):
    console.login(make.platform(), roles=("platform_admin",))
    assert sorted(marked_ids(client.get("/members"), "member-row-")) == sorted(
        [world["member_a"].member_no, world["member_b"].member_no])
    only_b = client.get("/members", query_string={"org_id": world["bank_b"].id}, headers=htmx_headers("member-rows"))
    assert marked_ids(only_b, "member-row-") == [world["member_b"].member_no]
