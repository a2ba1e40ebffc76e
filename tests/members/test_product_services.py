"""Product rules: kind-specific attributes from one schema table, names unique per organisation."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.core.audit import AuditEvent
from app.demo import PRODUCTS
from app.extensions import db
from app.members import services
from app.members.models import PRODUCT_KINDS, Product
from app.members.services import ProductDetails, ProductError, clean_attributes

VALID = {
    "financial": {"risk_level": "R2", "term_days": 90, "expected_yield_bp": 285, "min_purchase_fen": 100000},
    "membership_card": {"duration_value": 1, "duration_unit": "month"},
    "coaching_package": {"lessons": 10, "course_name": "私教"},
    "group_class": {"course_name": "动感单车", "capacity": 20, "duration_minutes": 45},
    "goods": {"sku": "CUP-001", "stock": 0},
}


def product_count() -> int:
    return db.session.execute(select(func.count()).select_from(Product)).scalar_one()


def test_every_kind_has_a_schema_and_a_valid_example():
    assert set(services.PRODUCT_ATTRIBUTES) == set(PRODUCT_KINDS) == set(VALID)
    for kind, values in VALID.items():
        assert clean_attributes(kind, values) == values


def test_the_demo_products_fit_their_schemas():
    for products in PRODUCTS.values():
        for _name, kind, _price, attributes in products:
            assert clean_attributes(kind, attributes) == attributes


@pytest.mark.parametrize("kind, values, field", [
    ("financial", {**VALID["financial"], "risk_level": "R6"}, "risk_level"),
    ("financial", {**VALID["financial"], "term_days": 0}, "term_days"),
    ("financial", {**VALID["financial"], "expected_yield_bp": -1}, "expected_yield_bp"),
    ("financial", {**VALID["financial"], "min_purchase_fen": -100}, "min_purchase_fen"),
    ("financial", {k: v for k, v in VALID["financial"].items() if k != "term_days"}, "term_days"),
    ("financial", {**VALID["financial"], "term_days": "ninety"}, "term_days"),
    ("financial", {**VALID["financial"], "term_days": True}, "term_days"),
    ("membership_card", {"duration_value": 1, "duration_unit": "month", "visits": 20}, "duration_value"),
    ("membership_card", {}, "duration_value"),
    ("membership_card", {"duration_value": 3}, "duration_unit"),
    ("membership_card", {"duration_unit": "year"}, "duration_value"),
    ("membership_card", {"duration_value": 1, "duration_unit": "week"}, "duration_unit"),
    ("membership_card", {"visits": 0}, "visits"),
    ("membership_card", {"visits": 2_147_483_648}, "visits"),  # past the card's integer column
    ("financial", {**VALID["financial"], "min_purchase_fen": 10**20}, "min_purchase_fen"),
    ("coaching_package", {"lessons": 0, "course_name": "私教"}, "lessons"),
    ("coaching_package", {"lessons": 10}, "course_name"),
    ("coaching_package", {"lessons": 10, "course_name": "x" * 51}, "course_name"),
    ("group_class", {"course_name": "瑜伽", "capacity": 0, "duration_minutes": 60}, "capacity"),
    ("group_class", {"course_name": "瑜伽", "capacity": 10, "duration_minutes": 0}, "duration_minutes"),
    ("group_class", {"capacity": 10, "duration_minutes": 60}, "course_name"),
    ("goods", {"stock": -1}, "stock"),
    ("goods", {"sku": "A-1"}, "stock"),
    ("lottery", {}, "kind"),
])
def test_attribute_rules(kind, values, field):
    with pytest.raises(ProductError) as error:
        clean_attributes(kind, values)
    assert error.value.field == field
    assert str(error.value)


def test_attributes_are_normalised_and_unknown_keys_dropped():
    assert clean_attributes("goods", {"stock": "12", "sku": "  ", "colour": "red"}) == {"stock": 12}
    assert clean_attributes("membership_card", {"visits": "20", "duration_unit": ""}) == {"visits": 20}
    assert clean_attributes("coaching_package", {"lessons": 5, "course_name": "  普拉提 "}) == {
        "lessons": 5, "course_name": "普拉提"}


def test_attribute_summary_reads_from_the_schema():
    summary = services.attribute_summary("financial", VALID["financial"])
    assert summary.split(" · ")[0] == "R2"
    assert "90" in summary and "2.85%" in summary and "¥1,000.00" in summary
    assert services.attribute_summary("membership_card", {"visits": 20}).startswith("20")
    assert services.attribute_summary("goods", {"stock": 3}).endswith("3")
    assert services.attribute_summary("goods", {}) == ""


def test_create_product_and_audit(make):
    bank = make.org()
    product = services.create_product(bank, "financial", ProductDetails(
        name=" 稳盈90天 ", price_fen=100000, attributes={**VALID["financial"], "extra": 1}, description="  "))
    assert (product.name, product.kind, product.price_fen, product.status) == ("稳盈90天", "financial", 100000, "on_sale")
    assert product.attributes == VALID["financial"] and product.description is None
    assert product.code.startswith("P")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "product.create")).scalar_one()
    assert event.object_id == str(product.id) and event.after["attributes"] == VALID["financial"]


def test_product_name_is_unique_per_organisation(make):
    bank_a, bank_b = make.org(), make.org()
    services.create_product(bank_a, "goods", ProductDetails(name="保温杯", price_fen=100, attributes={"stock": 1}))
    with pytest.raises(ProductError) as error:
        services.create_product(bank_a, "goods", ProductDetails(name="保温杯", price_fen=200, attributes={"stock": 1}))
    assert error.value.field == "name"
    services.create_product(bank_b, "goods", ProductDetails(name="保温杯", price_fen=100, attributes={"stock": 1}))
    assert product_count() == 2


@pytest.mark.parametrize("price, field", [(None, "price_fen"), (-1, "price_fen"), (1.5, "price_fen")])
def test_price_must_be_whole_fen_not_negative(make, price, field):
    with pytest.raises(ProductError) as error:
        services.create_product(make.org(), "goods", ProductDetails(name="杯", price_fen=price, attributes={"stock": 1}))
    assert error.value.field == field
    assert product_count() == 0


def test_update_product_keeps_kind_and_checks_attributes(make):
    bank = make.org()
    product = services.create_product(bank, "goods", ProductDetails(name="杯", price_fen=100, attributes={"stock": 1}))
    other = services.create_product(bank, "goods", ProductDetails(name="壶", price_fen=100, attributes={"stock": 1}))
    with pytest.raises(ProductError) as error:
        services.update_product(product, ProductDetails(name="杯", price_fen=100, attributes={"stock": -5}))
    assert error.value.field == "stock"
    with pytest.raises(ProductError):
        services.update_product(other, ProductDetails(name="杯", price_fen=100, attributes={"stock": 1}))
    services.update_product(product, ProductDetails(name="大杯", price_fen=150, attributes={"stock": 9, "sku": "B"}))
    db.session.refresh(product)
    assert (product.name, product.price_fen, product.attributes, product.kind) == ("大杯", 150, {"sku": "B", "stock": 9}, "goods")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "product.update")).scalar_one()
    assert event.before == {"name": "杯", "price_fen": 100, "attributes": {"stock": 1}}


def test_product_status(make):
    product = services.create_product(make.org(), "goods", ProductDetails(name="杯", price_fen=1, attributes={"stock": 1}))
    services.set_product_status(product, "off_sale")
    assert product.status == "off_sale"
    with pytest.raises(ProductError):
        services.set_product_status(product, "sold_out")
    assert db.session.execute(select(AuditEvent.action).where(AuditEvent.action.like("product.%"))
                              .order_by(AuditEvent.id)).scalars().all() == ["product.create", "product.off_sale"]


def test_a_price_past_the_integer_column_is_refused_with_the_largest_allowed(make):
    org = make.org(kind="bank")
    details = ProductDetails(name="理财A", price_fen=2_147_483_648, attributes=VALID["financial"])
    with pytest.raises(ProductError) as error:
        services.create_product(org, "financial", details)
    assert error.value.field == "price_fen" and "21,474,836.47" in str(error.value)
    assert product_count() == 0
