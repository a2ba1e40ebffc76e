"""Members (customers) and products: the rules for creating and changing them, and look-ups.

A member's phone is validated here (mainland mobile, unique per organisation by its keyed
hash) and never reaches the audit trail in the clear. Products carry kind-specific attributes
whose schema is the single table `PRODUCT_ATTRIBUTES`: it drives validation here, the form
fields in `forms.py` and the attribute summary shown in lists and exports.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core import audit, crypto
from app.core.money import format_fen
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import MEMBER_LEVELS, MEMBER_STATUSES, PRODUCT_KINDS, PRODUCT_STATUSES, Member, Product
from app.orgs.models import Organisation

MOBILE_PHONE = re.compile(r"1[3-9]\d{9}")
MEMBER_NO = re.compile(r"M[0-9A-Z]{11}")
NAME_MAX = 50
SHORT_TEXT_MAX = 50
OPENID_MAX = 128
PRODUCT_NAME_MAX = 100
DESCRIPTION_MAX = 500
INTEGER_MAX = 2_147_483_647  # the database's integer columns (a card's visits, a price in fen)


class MemberError(ValueError):
    """A change to a member that the rules refuse; the message is for the person, `field` names the form field."""

    def __init__(self, message: str, field: str = "name"):
        super().__init__(message)
        self.field = field


class ProductError(ValueError):
    """A change to a product that the rules refuse; `field` is a form field or an attribute name."""

    def __init__(self, message: str, field: str = "name"):
        super().__init__(message)
        self.field = field


# --- members ----------------------------------------------------------------------------------

MEMBER_AUDITED_FIELDS = ("member_no", "org_id", "name", "wechat_openid", "alipay_user_id", "level", "group_name",
                         "region", "source_channel", "registered_at", "status")


def phone_lookup_hash(raw: str | None) -> str | None:
    """The keyed hash a phone is found by (after normalising +86, spaces and dashes away)."""
    return crypto.lookup_hash(crypto.normalise_phone(raw))


def looks_like_phone(raw: str | None) -> bool:
    return bool(MOBILE_PHONE.fullmatch(crypto.normalise_phone(raw) or ""))


def looks_like_member_no(raw: str | None) -> bool:
    return bool(MEMBER_NO.fullmatch((raw or "").strip().upper()))


def mask_identifier(value: str | None) -> str:
    """An openid or similar identifier with its middle hidden: 'oAbC****wXyZ'."""
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * len(value)
    return f"{value[:4]}****{value[-4:]}"


def find_member_by_phone(org: Organisation | int, phone: str | None) -> Member | None:
    """The member of exactly this organisation with this phone, found by the keyed hash."""
    digest = phone_lookup_hash(phone)
    if digest is None:
        return None
    org_id = org if isinstance(org, int) else org.id
    return db.session.execute(
        select(Member).where(Member.org_id == org_id, Member.phone_hash == digest)
    ).scalar_one_or_none()


def check_phone(org_id: int | None, raw: str | None, member_id: int | None = None) -> str:
    """The normalised phone if it is a mainland mobile number not used by another member of the org
    (with no org given, only the format is checked)."""
    phone = crypto.normalise_phone(raw)
    if not phone:
        raise MemberError(_("Enter the mobile phone number."), "phone")
    if not MOBILE_PHONE.fullmatch(phone):
        raise MemberError(_("Enter an 11-digit mainland mobile number starting with 13 to 19."), "phone")
    existing = find_member_by_phone(org_id, phone) if org_id is not None else None
    if existing is not None and existing.id != member_id:
        raise _phone_taken()
    return phone


@dataclass
class MemberDetails:
    """What an operator (or an import, or a job) says about a member.

    The phone may be left out (a member known only by an openid); on update, leaving it out keeps it.
    """

    name: str
    phone: str | None = None
    level: str = "normal"
    group_name: str | None = None
    region: str | None = None
    source_channel: str | None = None
    wechat_openid: str | None = None
    alipay_user_id: str | None = None

    def cleaned(self) -> "MemberDetails":
        def text(value: str | None, limit: int, field_name: str, label: str) -> str | None:
            value = (value or "").strip() or None
            if value and len(value) > limit:
                raise MemberError(_("%(label)s may have at most %(n)s characters.", label=label, n=limit), field_name)
            return value

        name = (self.name or "").strip()
        if not name:
            raise MemberError(_("Enter the member's name."), "name")
        if len(name) > NAME_MAX:
            raise MemberError(_("The name may have at most %(n)s characters.", n=NAME_MAX), "name")
        if self.level not in MEMBER_LEVELS:
            raise MemberError(_("Choose a level from the list."), "level")
        return MemberDetails(
            name=name,
            phone=self.phone,
            level=self.level,
            group_name=text(self.group_name, SHORT_TEXT_MAX, "group_name", _("The group")),
            region=text(self.region, SHORT_TEXT_MAX, "region", _("The region")),
            source_channel=text(self.source_channel, SHORT_TEXT_MAX, "source_channel", _("The source channel")),
            wechat_openid=text(self.wechat_openid, OPENID_MAX, "wechat_openid", _("The WeChat openid")),
            alipay_user_id=text(self.alipay_user_id, OPENID_MAX, "alipay_user_id", _("The Alipay user id")),
        )


def _member_snapshot(member: Member) -> dict[str, Any]:
    """The audited view of a member: the phone only masked, never in the clear."""
    values = audit.snapshot(member, MEMBER_AUDITED_FIELDS)
    values["phone"] = member.phone_masked
    return values


@contextmanager
def _refusing_duplicates(constraint: str, error: Callable[[], ValueError]) -> Iterator[None]:
    """Write and commit inside; a concurrent writer that got past our check first hits the unique
    constraint, and the person sees the same message as after the check."""
    try:
        yield
    except IntegrityError as exc:
        db.session.rollback()
        if constraint in str(exc.orig):
            raise error() from exc
        raise


def _phone_taken() -> MemberError:
    return MemberError(_("Another member of this organisation already has this phone number."), "phone")


def create_member(org: Organisation, details: MemberDetails, registered_at: datetime | None = None) -> Member:
    details = details.cleaned()
    phone = check_phone(org.id, details.phone) if (details.phone or "").strip() else None
    member = Member(org_id=org.id, name=details.name, level=details.level, group_name=details.group_name,
                    region=details.region, source_channel=details.source_channel,
                    wechat_openid=details.wechat_openid, alipay_user_id=details.alipay_user_id,
                    registered_at=registered_at or utcnow(), status="active")
    member.phone = phone
    with _refusing_duplicates("uq_members_org_phone", _phone_taken):
        db.session.add(member)
        db.session.flush()
        audit.record("member.create", "member", member.id, after=_member_snapshot(member), org_id=org.id)
        db.session.commit()
    return member


def update_member(member: Member, details: MemberDetails) -> Member:
    """Change a member's details; a `details.phone` of None (or blank) keeps the phone they have."""
    details = details.cleaned()
    new_phone = check_phone(member.org_id, details.phone, member.id) if (details.phone or "").strip() else None
    before = _member_snapshot(member)
    old_hash = member.phone_hash
    member.name, member.level = details.name, details.level
    member.group_name, member.region, member.source_channel = details.group_name, details.region, details.source_channel
    member.wechat_openid, member.alipay_user_id = details.wechat_openid, details.alipay_user_id
    if new_phone is not None and crypto.lookup_hash(new_phone) != old_hash:
        member.phone = new_phone
    old, new = audit.changed(before, _member_snapshot(member))
    if member.phone_hash != old_hash and "phone" not in new:
        # Two numbers can share a mask (same first three and last four digits); the change is still recorded.
        old["phone"], new["phone"] = before["phone"], member.phone_masked
    with _refusing_duplicates("uq_members_org_phone", _phone_taken):
        if new:
            audit.record("member.update", "member", member.id, before=old, after=new, org_id=member.org_id)
        db.session.commit()
    return member


def set_member_status(member: Member, status: str) -> Member:
    if status not in MEMBER_STATUSES:
        raise MemberError(_("Unknown status."), "status")
    if audit.change_status(member, "member", status, f"member.{'disable' if status == 'disabled' else 'enable'}",
                           member.org_id):
        db.session.commit()
    return member


def record_member_export(fmt: str, filters: Mapping[str, str], rows: int) -> None:
    """An export of members is itself audited: who took which slice of personal data, and how much."""
    audit.record("member.export", "member", None, after={"format": fmt, "filters": dict(filters), "rows": rows})
    db.session.commit()


# --- products ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attribute:
    """One kind-specific attribute of a product.

    `type` is how it is held and entered: `int`; `text`; `choice` (one of `choices`); `money`
    (held in fen, entered in yuan); `percent` (held in basis points, entered in percent).
    `summary` formats the value for lists, with `%(value)s`.
    """

    name: str
    label: Any
    type: str = "int"
    required: bool = True
    minimum: int | None = None
    maximum: int = INTEGER_MAX
    max_length: int = SHORT_TEXT_MAX
    choices: tuple[tuple[str, Any], ...] = ()
    summary: Any = "%(value)s"

    def display(self, value: Any) -> str:
        if self.type == "money":
            shown = format_fen(value)
        elif self.type == "percent":
            shown = f"{Decimal(value) / 100:.2f}%"
        elif self.type == "choice":
            shown = str(dict(self.choices).get(value, value))
        else:
            shown = str(value)
        return str(self.summary) % {"value": shown}


@dataclass(frozen=True)
class KindSchema:
    """The attributes of one product kind; `exactly_one_of` lists groups of attributes of which one is given."""

    attributes: tuple[Attribute, ...]
    exactly_one_of: tuple[tuple[str, ...], ...] = ()
    exactly_one_message: Any = ""

    def get(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)


RISK_LEVELS = tuple((f"R{n}", f"R{n}") for n in range(1, 6))
DURATION_UNITS = (("day", _l("days")), ("month", _l("months")), ("year", _l("years")))

PRODUCT_ATTRIBUTES: dict[str, KindSchema] = {
    "financial": KindSchema((
        Attribute("risk_level", _l("Risk level"), "choice", choices=RISK_LEVELS),
        Attribute("term_days", _l("Term (days)"), minimum=1, summary=_l("%(value)s days")),
        Attribute("expected_yield_bp", _l("Expected annual yield (%)"), "percent", minimum=0,
                  summary=_l("yield %(value)s")),
        Attribute("min_purchase_fen", _l("Minimum purchase (yuan)"), "money", minimum=0,
                  summary=_l("from %(value)s")),
    )),
    "membership_card": KindSchema(
        (
            Attribute("duration_value", _l("Valid for"), required=False, minimum=1),
            Attribute("duration_unit", _l("Unit"), "choice", required=False, choices=DURATION_UNITS),
            Attribute("visits", _l("Number of visits"), required=False, minimum=1, summary=_l("%(value)s visits")),
        ),
        exactly_one_of=(("duration_value", "duration_unit"), ("visits",)),
        exactly_one_message=_l("Give either a period of validity or a number of visits (exactly one of the two)."),
    ),
    "coaching_package": KindSchema((
        Attribute("lessons", _l("Lessons"), minimum=1, summary=_l("%(value)s lessons")),
        Attribute("course_name", _l("Course"), "text"),
    )),
    "group_class": KindSchema((
        Attribute("course_name", _l("Course"), "text"),
        Attribute("capacity", _l("Capacity (people)"), minimum=1, summary=_l("%(value)s people")),
        Attribute("duration_minutes", _l("Duration (minutes)"), minimum=1, summary=_l("%(value)s min")),
    )),
    "goods": KindSchema((
        Attribute("sku", _l("SKU"), "text", required=False, summary=_l("SKU %(value)s")),
        Attribute("stock", _l("Stock"), minimum=0, summary=_l("stock %(value)s")),
    )),
}
assert set(PRODUCT_ATTRIBUTES) == set(PRODUCT_KINDS)

PRODUCT_AUDITED_FIELDS = ("code", "org_id", "name", "kind", "price_fen", "description", "attributes", "status")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def clean_attribute_value(attr: Attribute, value: Any) -> Any:
    """One given (non-blank) attribute value in its stored type, or ProductError naming the attribute."""
    if attr.type in ("text", "choice"):
        value = str(value).strip()
        if attr.type == "choice" and value not in dict(attr.choices):
            raise ProductError(_("Choose one of the listed values."), attr.name)
        if len(value) > attr.max_length:
            raise ProductError(_("At most %(n)s characters.", n=attr.max_length), attr.name)
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ProductError(_("Enter a whole number."), attr.name) from None
    if attr.minimum is not None and value < attr.minimum:
        raise ProductError(_("Enter a number of at least %(n)s.", n=attr.minimum), attr.name)
    if value > attr.maximum:
        most = format_fen(attr.maximum) if attr.type == "money" else f"{attr.maximum:,}"
        raise ProductError(_("Enter a number of at most %(n)s.", n=most), attr.name)
    return value


def clean_attributes(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a product of `kind`, checked against its schema and in their stored units
    (fen, basis points); unknown keys are dropped. Raises ProductError naming the attribute at fault."""
    if kind not in PRODUCT_ATTRIBUTES:
        raise ProductError(_("Choose a kind from the list."), "kind")
    schema = PRODUCT_ATTRIBUTES[kind]
    given = {a.name for a in schema.attributes if not _blank(values.get(a.name))}
    if schema.exactly_one_of:
        chosen = [group for group in schema.exactly_one_of if given & set(group)]
        if len(chosen) != 1:
            raise ProductError(str(schema.exactly_one_message), schema.exactly_one_of[0][0])
        for name in chosen[0]:
            if name not in given:
                raise ProductError(_("Required."), name)
    cleaned: dict[str, Any] = {}
    for attr in schema.attributes:
        if attr.name not in given:
            if attr.required:
                raise ProductError(_("Required."), attr.name)
            continue
        cleaned[attr.name] = clean_attribute_value(attr, values[attr.name])
    return cleaned


def attribute_summary(kind: str, attributes: Mapping[str, Any] | None) -> str:
    """'R2 · 90 days · yield 2.85% · from ¥1,000.00': the attributes as one short line."""
    schema = PRODUCT_ATTRIBUTES.get(kind)
    if schema is None or not attributes:
        return ""
    parts = []
    for attr in schema.attributes:
        value = attributes.get(attr.name)
        if value is None:
            continue
        if attr.name == "duration_value":  # "1 months" reads badly; the unit carries the plural
            unit = schema.get("duration_unit")
            parts.append(f"{value} {dict(unit.choices).get(attributes.get('duration_unit'), '')}".strip())
        elif attr.name != "duration_unit":
            parts.append(attr.display(value))
    return " · ".join(parts)


def product_name_taken(org_id: int, name: str, exclude_id: int | None = None) -> bool:
    stmt = select(Product.id).where(Product.org_id == org_id, Product.name == name.strip())
    if exclude_id:
        stmt = stmt.where(Product.id != exclude_id)
    return db.session.execute(stmt).first() is not None


@dataclass
class ProductDetails:
    name: str
    price_fen: int | None
    attributes: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def cleaned(self, org_id: int, kind: str, product_id: int | None = None) -> "ProductDetails":
        name = (self.name or "").strip()
        if not name:
            raise ProductError(_("Enter the product's name."), "name")
        if len(name) > PRODUCT_NAME_MAX:
            raise ProductError(_("The name may have at most %(n)s characters.", n=PRODUCT_NAME_MAX), "name")
        if product_name_taken(org_id, name, product_id):
            raise _product_name_taken()
        if self.price_fen is None or isinstance(self.price_fen, bool) or not isinstance(self.price_fen, int):
            raise ProductError(_("Enter the price."), "price_fen")
        if self.price_fen < 0:
            raise ProductError(_("The price cannot be negative."), "price_fen")
        if self.price_fen > INTEGER_MAX:
            raise ProductError(_("The price may be at most %(amount)s.", amount=format_fen(INTEGER_MAX)), "price_fen")
        description = (self.description or "").strip() or None
        if description and len(description) > DESCRIPTION_MAX:
            raise ProductError(_("The description may have at most %(n)s characters.", n=DESCRIPTION_MAX), "description")
        return ProductDetails(name=name, price_fen=self.price_fen, attributes=clean_attributes(kind, self.attributes),
                              description=description)


def _product_name_taken() -> ProductError:
    return ProductError(_("This organisation already has a product with this name."), "name")


def create_product(org: Organisation, kind: str, details: ProductDetails) -> Product:
    if kind not in PRODUCT_KINDS:
        raise ProductError(_("Choose a kind from the list."), "kind")
    details = details.cleaned(org.id, kind)
    product = Product(org_id=org.id, name=details.name, kind=kind, price_fen=details.price_fen,
                      description=details.description, attributes=details.attributes, status="on_sale")
    with _refusing_duplicates("uq_products_org_name", _product_name_taken):
        db.session.add(product)
        db.session.flush()
        audit.record("product.create", "product", product.id,
                     after=audit.snapshot(product, PRODUCT_AUDITED_FIELDS), org_id=org.id)
        db.session.commit()
    return product


def update_product(product: Product, details: ProductDetails) -> Product:
    """Change a product's name, price, description and attributes (its kind stays what it is)."""
    details = details.cleaned(product.org_id, product.kind, product.id)
    before = audit.snapshot(product, PRODUCT_AUDITED_FIELDS)
    product.name, product.price_fen = details.name, details.price_fen
    product.description, product.attributes = details.description, details.attributes
    old, new = audit.changed(before, audit.snapshot(product, PRODUCT_AUDITED_FIELDS))
    with _refusing_duplicates("uq_products_org_name", _product_name_taken):
        if new:
            audit.record("product.update", "product", product.id, before=old, after=new, org_id=product.org_id)
        db.session.commit()
    return product


def set_product_status(product: Product, status: str) -> Product:
    if status not in PRODUCT_STATUSES:
        raise ProductError(_("Unknown status."), "status")
    if audit.change_status(product, "product", status, f"product.{status}", product.org_id):
        db.session.commit()
    return product
