"""Forms of members and products, and the labels of their levels, kinds and statuses.

The attribute fields of a product are not written out here: `attribute_form()` builds them from
`services.PRODUCT_ATTRIBUTES`, and each field's rule is the service's own check of that attribute.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Mapping

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import Form, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError

from app.core.choices import options
from app.core.money import MoneyError, fen_to_yuan, yuan_to_fen
from app.members import services
from app.members.models import MEMBER_LEVELS, PRODUCT_KINDS

LEVEL_LABELS = {
    "normal": _l("Normal"),
    "silver": _l("Silver"),
    "gold": _l("Gold"),
    "platinum": _l("Platinum"),
    "diamond": _l("Diamond"),
}
MEMBER_STATUS_LABELS = {"active": _l("Active"), "disabled": _l("Disabled")}
KIND_LABELS = {
    "financial": _l("Financial product"),
    "membership_card": _l("Membership card"),
    "coaching_package": _l("Coaching package"),
    "group_class": _l("Group class"),
    "goods": _l("Goods"),
}
PRODUCT_STATUS_LABELS = {"on_sale": _l("On sale"), "off_sale": _l("Off sale")}


class YuanField(StringField):
    """Money entered in yuan ('1,234.5'), held as integer fen in `.data`."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(fen_to_yuan(self.data))

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        try:
            self.data = yuan_to_fen(valuelist[0])
        except MoneyError:
            self.data = None
            raise ValueError(str(_l("Enter an amount in yuan, with at most two decimals."))) from None


class PercentField(StringField):
    """A rate entered in percent ('2.85'), held as integer basis points (285) in `.data`."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else f"{Decimal(self.data) / 100:.2f}"

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        raw = valuelist[0].strip().rstrip("%").strip()
        if not raw:
            self.data = None
            return
        try:
            basis_points = Decimal(raw) * 100
        except InvalidOperation:
            basis_points = Decimal("NaN")
        if not basis_points.is_finite() or basis_points != basis_points.to_integral_value():
            self.data = None
            raise ValueError(str(_l("Enter a percentage with at most two decimals.")))
        self.data = int(basis_points)


def _text(label, limit: int, required: bool = False) -> StringField:
    return StringField(label, validators=[DataRequired() if required else Optional(), Length(max=limit)])


class MemberForm(FlaskForm):
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    name = _text(_l("Name"), services.NAME_MAX, required=True)
    phone = StringField(_l("Mobile phone"), validators=[DataRequired(), Length(max=20)])
    level = SelectField(_l("Level"), choices=options((k, LEVEL_LABELS[k]) for k in MEMBER_LEVELS), default="normal")
    group_name = _text(_l("Group"), services.SHORT_TEXT_MAX)
    region = _text(_l("Region"), services.SHORT_TEXT_MAX)
    source_channel = _text(_l("Source channel"), services.SHORT_TEXT_MAX)
    wechat_openid = _text(_l("WeChat openid"), services.OPENID_MAX)
    alipay_user_id = _text(_l("Alipay user id"), services.OPENID_MAX)

    def details(self) -> services.MemberDetails:
        return services.MemberDetails(
            name=self.name.data, phone=self.phone.data, level=self.level.data, group_name=self.group_name.data,
            region=self.region.data, source_channel=self.source_channel.data,
            wechat_openid=self.wechat_openid.data, alipay_user_id=self.alipay_user_id.data)


class MemberEditForm(MemberForm):
    org_id = None  # a member stays in the organisation that registered them
    # Left blank, the phone stays as it is (an operator who may not see it cannot retype it).
    phone = StringField(_l("Mobile phone"), validators=[Optional(), Length(max=20)])

    @classmethod
    def for_member(cls, member: Any, show_phone: bool) -> "MemberEditForm":
        """The form filled from a member; the phone only for a role that may see it."""
        names = ("name", "level", "group_name", "region", "source_channel", "wechat_openid", "alipay_user_id")
        data = {name: getattr(member, name) for name in names}
        data["phone"] = member.phone if show_phone else ""
        return cls(data=data)


class ProductForm(FlaskForm):
    org_id = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    name = _text(_l("Name"), services.PRODUCT_NAME_MAX, required=True)
    kind = SelectField(_l("Kind"), choices=options((k, KIND_LABELS[k]) for k in PRODUCT_KINDS), default=PRODUCT_KINDS[0])
    price_fen = YuanField(_l("Price (yuan)"), validators=[InputRequired()])
    description = TextAreaField(_l("Description"), validators=[Optional(), Length(max=services.DESCRIPTION_MAX)])

    def details(self, attributes: Form) -> services.ProductDetails:
        return services.ProductDetails(name=self.name.data, price_fen=self.price_fen.data,
                                       attributes=attribute_values(attributes), description=self.description.data)


class ProductEditForm(ProductForm):
    org_id = None  # a product stays with its organisation
    kind = None  # and keeps its kind: its attributes (and anything sold of it) depend on it


class AttributeRule:
    """A form validator that applies the service's own check of one product attribute."""

    def __init__(self, attribute: services.Attribute):
        self.attribute = attribute
        self.field_flags = {"min": attribute.minimum} if attribute.minimum is not None else {}

    def __call__(self, form: Form, field: Any) -> None:
        if field.data in (None, ""):
            return  # blank: the required check speaks; unparsable: the field's own error does
        try:
            services.clean_attribute_value(self.attribute, field.data)
        except services.ProductError as exc:
            raise ValidationError(str(exc)) from None


def _attribute_field(attr: services.Attribute):
    validators = [InputRequired(message=_l("Required.")) if attr.required else Optional(), AttributeRule(attr)]
    if attr.type == "choice":
        return SelectField(attr.label, choices=options([("", "—"), *attr.choices]), validators=validators)
    if attr.type == "text":
        return StringField(attr.label, validators=[*validators, Length(max=attr.max_length)])
    field_class = {"money": YuanField, "percent": PercentField}.get(attr.type, IntegerField)
    return field_class(attr.label, validators=validators)


@lru_cache(maxsize=None)
def _attribute_form_class(kind: str) -> type[Form]:
    fields = {attr.name: _attribute_field(attr) for attr in services.PRODUCT_ATTRIBUTES[kind].attributes}
    return type(f"{kind.title().replace('_', '')}AttributesForm", (Form,), fields)


def attribute_form(kind: str, formdata: Any = None, stored: Mapping[str, Any] | None = None) -> Form:
    """The fields of one kind's attributes (named 'attr-<name>'), from a request's form data or stored values."""
    if kind not in services.PRODUCT_ATTRIBUTES:
        kind = PRODUCT_KINDS[0]
    form = _attribute_form_class(kind)(formdata=formdata, data=dict(stored or {}), prefix="attr-")
    form.kind = kind
    form.schema = services.PRODUCT_ATTRIBUTES[kind]
    return form


def attribute_values(form: Form) -> dict[str, Any]:
    """The attribute form's values in their stored units (fen, basis points), blanks left out."""
    return {name: f.data for name, f in form._fields.items() if f.data not in (None, "")}
