"""Member rules: validation, phone uniqueness per organisation, encryption at rest, look-up by keyed hash."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from app.core.audit import AuditEvent, verify_chain
from app.extensions import db
from app.members import services
from app.members.models import Member
from app.members.services import MemberDetails, MemberError


def details(**values) -> MemberDetails:
    values.setdefault("name", "张三")
    values.setdefault("phone", "13812348000")
    return MemberDetails(**values)


def member_count() -> int:
    return db.session.execute(select(func.count()).select_from(Member)).scalar_one()


def test_create_member_stores_phone_encrypted_and_hashed(make):
    bank = make.org()
    member = services.create_member(bank, details(phone="+86 138-1234-8000", level="gold", region="上海",
                                                  group_name="VIP", source_channel="手机银行",
                                                  wechat_openid="oWx123456789"))
    assert member.phone == "13812348000"
    assert member.phone_masked == "138****8000"
    assert member.member_no.startswith("M") and len(member.member_no) == 12
    assert member.registered_at is not None and member.status == "active"

    raw = db.session.execute(text("SELECT phone_enc, phone_hash FROM members WHERE id = :id"),
                             {"id": member.id}).one()
    assert raw.phone_enc.startswith("v1:") and "13812348000" not in raw.phone_enc
    assert raw.phone_hash == services.phone_lookup_hash("13812348000")
    assert "13812348000" not in raw.phone_hash


def test_audit_never_holds_the_clear_phone(make):
    bank = make.org()
    member = services.create_member(bank, details())
    services.update_member(member, details(name="张三丰", phone="13912349000"))
    dumped = db.session.execute(text("SELECT coalesce(before::text, '') || coalesce(after::text, '') FROM audit_events")).scalars().all()
    assert len(dumped) == 2
    joined = " ".join(dumped)
    assert "13812348000" not in joined and "13912349000" not in joined
    assert "138****8000" in joined and "139****9000" in joined
    actions = db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["member.create", "member.update"]
    assert verify_chain().ok


@pytest.mark.parametrize("raw", ["", "   ", "12812348000", "1381234800", "138123480001", "abcdefghijk", "10012348000"])
def test_create_refuses_a_phone_that_is_not_a_mainland_mobile(make, raw):
    bank = make.org()
    if not raw.strip():
        # A blank phone is no phone (a member known only by an openid); the console form requires one.
        assert services.create_member(bank, details(phone=raw)).phone is None
        return
    with pytest.raises(MemberError) as error:
        services.create_member(bank, details(phone=raw))
    assert error.value.field == "phone"
    assert member_count() == 0


@pytest.mark.parametrize("values, field", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "张" * 51}, "name"),
    ({"level": "bronze"}, "level"),
    ({"region": "x" * 51}, "region"),
    ({"wechat_openid": "o" * 129}, "wechat_openid"),
])
def test_create_validates_fields(make, values, field):
    bank = make.org()
    with pytest.raises(MemberError) as error:
        services.create_member(bank, details(**values))
    assert error.value.field == field
    assert str(error.value)
    assert member_count() == 0


def test_name_of_fifty_characters_is_fine(make):
    assert services.create_member(make.org(), details(name="张" * 50)).name == "张" * 50


def test_phone_is_unique_within_an_organisation_only(make):
    bank_a, bank_b = make.org(), make.org()
    services.create_member(bank_a, details())
    with pytest.raises(MemberError) as error:
        services.create_member(bank_a, details(name="李四", phone="138 1234 8000"))
    assert error.value.field == "phone"
    other = services.create_member(bank_b, details(name="李四"))
    assert other.phone == "13812348000"
    assert member_count() == 2


def test_a_concurrent_duplicate_ends_as_the_same_error(make, monkeypatch):
    """Two requests that both passed the check: the unique constraint decides, with the same message."""
    bank = make.org()
    services.create_member(bank, details())
    monkeypatch.setattr(services, "find_member_by_phone", lambda org, phone: None)
    with pytest.raises(MemberError) as error:
        services.create_member(bank, details(name="李四"))
    assert error.value.field == "phone"
    assert member_count() == 1


def test_find_member_by_phone_uses_the_org_and_the_keyed_hash(make):
    bank_a, bank_b = make.org(), make.org()
    member = services.create_member(bank_a, details())
    assert services.find_member_by_phone(bank_a, "+8613812348000").id == member.id
    assert services.find_member_by_phone(bank_a.id, "138-1234-8000").id == member.id
    assert services.find_member_by_phone(bank_b, "13812348000") is None
    assert services.find_member_by_phone(bank_a, "13812348001") is None
    assert services.find_member_by_phone(bank_a, "") is None


def test_update_keeps_the_phone_when_left_blank_and_checks_a_new_one(make):
    bank = make.org()
    first = services.create_member(bank, details())
    services.create_member(bank, details(name="李四", phone="13900000001"))
    services.update_member(first, details(name="张三丰", phone="", level="silver"))
    db.session.refresh(first)
    assert (first.name, first.level, first.phone) == ("张三丰", "silver", "13812348000")

    with pytest.raises(MemberError) as error:
        services.update_member(first, details(phone="13900000001"))
    assert error.value.field == "phone"
    db.session.refresh(first)
    assert first.phone == "13812348000"

    services.update_member(first, details(name="张三丰", phone="13812348000", level="silver"))  # own number: fine
    assert db.session.execute(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "member.update")).scalar_one() == 1  # nothing changed


def test_a_phone_change_with_the_same_mask_is_still_audited(make):
    bank = make.org()
    member = services.create_member(bank, details(phone="13812348000"))
    services.update_member(member, details(phone="13899998000"))  # same 138****8000 mask
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "member.update")).scalar_one()
    assert event.after == {"phone": "138****8000"}
    assert services.find_member_by_phone(bank, "13899998000").id == member.id


def test_set_member_status_is_audited_once(make):
    member = services.create_member(make.org(), details())
    services.set_member_status(member, "disabled")
    services.set_member_status(member, "disabled")
    with pytest.raises(MemberError):
        services.set_member_status(member, "deleted")
    events = db.session.execute(select(AuditEvent).where(AuditEvent.action == "member.disable")).scalars().all()
    assert len(events) == 1 and events[0].after == {"status": "disabled"}
    assert member.status == "disabled"


def test_helpers_recognise_search_input():
    assert services.looks_like_phone("+86 138 1234 8000")
    assert not services.looks_like_phone("1381234")
    assert services.looks_like_member_no("m0123456789a")
    assert not services.looks_like_member_no("M123")
    assert services.mask_identifier("oAbCdefghijkWXYZ") == "oAbC****WXYZ"
    assert services.mask_identifier("short") == "*****"
    assert services.mask_identifier(None) == ""
