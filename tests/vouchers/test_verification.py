"""Front-desk verification services against the live sandboxes: preview, confirm exactly once,
unknown outcomes, compensation, undo, tenancy."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select, update

from app.auth.models import Operator
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from app.gym import services as gym_services
from app.gym.models import ClassBooking, GymGrant, LessonBalance, MembershipCard
from app.members.services import find_member_by_phone
from app.providers.douyin import ShortLinkError
from app.providers.vouchers import VoucherCancelNotAllowed, VoucherExpired, VoucherNotFound, VoucherRefunded
from app.sandbox import douyin as dy_sandbox
from app.sandbox import meituan as mt_sandbox
from app.sandbox.douyin_models import SandboxDouyinVerification
from app.sandbox.meituan_models import SandboxMeituanConsumption
from app.vouchers import verification as desk
from app.vouchers.models import PlatformAccount, Voucher, VoucherVerification

PHONE = "13900001111"


def grants() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(GymGrant))


def reload(model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


# --- recognition ----------------------------------------------------------------------------------

def test_recognise_douyin_links_chosen_platform_and_auto_order():
    scanned = desk.recognise("https://v.douyin.com/abc/?encrypted_data=CgYIxyz&x=1")
    assert (scanned.code, scanned.encrypted_data, scanned.platforms) == (None, "CgYIxyz", ("douyin",))
    assert desk.recognise(" 1234 5678 ", "douyin").platforms == ("douyin",)
    assert desk.recognise("12345678").platforms == ("meituan", "douyin")
    assert desk.recognise("12345678").code == "12345678"
    scanned = desk.recognise("https://www.iesdouyin.com/share/?object_id=CgYIobj")
    assert (scanned.encrypted_data, scanned.short_link, scanned.platforms) == ("CgYIobj", None, ("douyin",))
    scanned = desk.recognise(" https://v.douyin.com/abc/ ", "meituan")  # a short link is Douyin's, whatever is chosen
    assert (scanned.code, scanned.encrypted_data, scanned.short_link, scanned.platforms) == (
        None, None, "https://v.douyin.com/abc/", ("douyin",))
    with pytest.raises(desk.DeskError):
        desk.recognise("douyin 12345")  # says Douyin, but is neither a link nor carries a voucher
    with pytest.raises(desk.DeskError):
        desk.recognise("   ")


def test_account_of_the_nearest_ancestor_serves_the_store(desk_env):
    account = desk.account_for(desk_env.store, "meituan")
    assert account.org_id == desk_env.merchant.id
    own = PlatformAccount(org_id=desk_env.store.id, platform="meituan", base_url="http://x", app_id="1",
                          store_ref="s", secrets_enc="")
    own.secrets = {"sign_key": "k", "app_auth_token": "t"}
    db.session.add(own)
    db.session.commit()
    assert desk.account_for(desk_env.store, "meituan").id == own.id
    lonely = desk_env.make.org(kind="merchant")
    with pytest.raises(desk.NoPlatformAccount):
        desk.account_for(lonely, "douyin")


# --- preview --------------------------------------------------------------------------------------

def test_preview_meituan_upserts_the_voucher_with_what_the_platform_said(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    assert found.platform == "meituan"
    assert found.product.id == desk_env.products["month"].id
    v = reload(Voucher, found.voucher.id)
    assert (v.platform, v.code, v.deal_id, v.org_id) == ("meituan", receipt.code, "710001", desk_env.store.id)
    assert (v.paid_price_fen, v.original_price_fen, v.uses_left, v.status) == (19900, 29900, 1, "unused")
    assert v.buyer_phone_masked == "138****5678"
    assert v.expires_at is not None and v.product_id == desk_env.products["month"].id
    assert len(found.request_id) == 32 and found.request_id != desk.preview(desk_env.clerk, receipt.code).request_id
    assert db.session.scalar(select(func.count()).select_from(Voucher)) == 1  # upserted, not duplicated


def test_preview_auto_asks_douyin_when_meituan_does_not_know_the_code(desk_env):
    cert = desk_env.dy_buy("DYSKU1004")
    found = desk.preview(desk_env.clerk, cert.code)
    assert found.platform == "douyin" and found.product.id == desk_env.products["coaching10"].id
    assert found.voucher.encrypted_code == cert.encrypted_code
    assert (found.voucher.paid_price_fen, found.voucher.original_price_fen) == (199900, 300000)


def test_preview_douyin_by_scanned_link(desk_env):
    cert = desk_env.dy_buy("DYSKU1001")
    found = desk.preview(desk_env.clerk, f"https://v.douyin.com/x/?encrypted_data={cert.encrypted_code}")
    assert found.platform == "douyin" and found.voucher.code == cert.code


def test_preview_douyin_by_scanned_short_link_that_carries_no_data(desk_env):
    cert = desk_env.dy_buy("DYSKU1001")
    link = f"{desk_env.base}/sandbox/douyin/s/{dy_sandbox.short_link_slug(cert)}/"
    found = desk.preview(desk_env.clerk, link)
    assert found.platform == "douyin" and found.voucher.code == cert.code
    assert found.voucher.encrypted_code == cert.encrypted_code
    with pytest.raises(ShortLinkError):
        desk.preview(desk_env.clerk, f"{desk_env.base}/sandbox/douyin/s/zzzzzzzz/")
    with pytest.raises(ShortLinkError):  # not Douyin's address, nor the account's: never fetched
        desk.preview(desk_env.clerk, "http://127.0.0.1:9/douyin/s/abc/")


def test_preview_refusals(desk_env):
    with pytest.raises(VoucherNotFound):
        desk.preview(desk_env.clerk, "999999999999")
    with pytest.raises(VoucherNotFound):
        desk.preview(desk_env.clerk, "999999999999", "douyin")
    expired = desk_env.mt_buy(710001, valid_from=utcnow() - timedelta(days=10), valid_to=utcnow() - timedelta(days=1))
    with pytest.raises(VoucherExpired) as exc:
        desk.preview(desk_env.clerk, expired.code)
    assert str(exc.value.message)  # the desk's message, translatable
    refunded = desk_env.mt_buy(710001, status="refunded")
    with pytest.raises(VoucherRefunded):
        desk.preview(desk_env.clerk, refunded.code)
    cert = desk_env.dy_buy("DYSKU1001")
    dy_sandbox.refund_certificate(cert)
    with pytest.raises(VoucherRefunded):
        desk.preview(desk_env.clerk, cert.code, "douyin")
    used = desk_env.mt_buy(710001, status="used")  # verified elsewhere: we have no verification of it
    with pytest.raises(desk.AlreadyVerified) as exc:
        desk.preview(desk_env.clerk, used.code)
    assert exc.value.verification is None


def test_preview_of_an_unmapped_deal_says_so_but_records_the_voucher(desk_env):
    receipt = desk_env.mt_buy(710002)  # the yearly card: not mapped
    with pytest.raises(desk.DealNotMapped) as exc, force_locale("en"):
        desk.preview(desk_env.clerk, receipt.code)
    assert "not mapped" in str(exc.value.message)
    assert db.session.execute(select(Voucher).filter_by(code=receipt.code)).scalar_one().product_id is None


# --- confirm --------------------------------------------------------------------------------------

def test_confirm_meituan_month_card_grants_once_and_marks_the_voucher(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    with force_locale("en"):
        v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE, member_name="李四")
    assert v.status == "verified", v.error
    assert v.platform_verify_id and v.amount_fen == 19900 and v.verified_at
    assert "Opened card" in v.granted["summary"]
    member = find_member_by_phone(desk_env.store.id, PHONE)
    assert member is not None and member.name == "李四" and v.member_id == member.id
    card = db.session.execute(select(MembershipCard).filter_by(member_id=member.id)).scalar_one()
    assert card.source == "meituan" and card.source_ref == f"voucher:{found.request_id}"
    voucher = reload(Voucher, found.voucher.id)
    assert (voucher.uses_left, voucher.status, voucher.member_id) == (0, "used", member.id)
    assert desk_env.mt_receipt(receipt.code).status == "used"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "voucher.verify", AuditEvent.actor_id == desk_env.clerk.id)) == 1

    again = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)  # the same form twice
    assert again.id == v.id and grants() == 1
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification)) == 1
    with pytest.raises(desk.AlreadyVerified) as exc:  # a new scan of the same code
        desk.preview(desk_env.clerk, receipt.code)
    assert exc.value.verification.id == v.id
    with pytest.raises(desk.AlreadyVerified):  # a stale form (another request id) of the same voucher
        desk.confirm(desk_env.clerk, found.voucher.id, desk.new_request_id(), 1, phone=PHONE)
    assert grants() == 1 and len(desk_env.mt_consumptions(receipt.code)) == 1


def test_confirm_meituan_multi_use_lessons_with_count(desk_env):
    receipt = desk_env.mt_buy(710004)  # 10 coaching lessons, multi-use
    found = desk.preview(desk_env.clerk, receipt.code)
    assert found.voucher.kind == "multi_use" and found.voucher.uses_left == 10
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 3, phone=PHONE)
    assert v.status == "verified", v.error
    member = find_member_by_phone(desk_env.store.id, PHONE)
    balance = db.session.execute(select(LessonBalance).filter_by(member_id=member.id)).scalar_one()
    assert balance.lessons_left == 3
    assert reload(Voucher, found.voucher.id).uses_left == 7 and desk_env.mt_receipt(receipt.code).uses_left == 7
    assert v.amount_fen == 298000 * 3 // 10


def test_confirm_douyin_class_booking_for_an_existing_member(desk_env):
    member = desk_env.make.member(desk_env.store, phone=PHONE)
    session = desk_env.session(capacity=3)
    cert = desk_env.dy_buy("DYSKU1005")
    found = desk.preview(desk_env.clerk, cert.code, "douyin")
    assert [s.id for s in found.sessions] == [session.id]
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE, session_id=session.id)
    assert v.status == "verified", v.error
    assert v.member_id == member.id and v.certificate_id == cert.certificate_id
    booking = db.session.execute(select(ClassBooking).filter_by(member_id=member.id)).scalar_one()
    assert booking.session_id == session.id and booking.status == "booked"
    assert desk_env.dy_cert(cert.code).status == "used"


def test_confirm_needs_a_valid_phone_and_creates_nothing_without_one(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    with pytest.raises(desk.DeskError):
        desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone="12")
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification)) == 0
    assert desk_env.mt_receipt(receipt.code).status == "unused"


def _confirm_in_thread(app, operator_id, voucher_id, request_id, barrier, results, index):
    with app.app_context():
        actor = db.session.get(Operator, operator_id)
        barrier.wait()
        try:
            results[index] = desk.confirm(actor, voucher_id, request_id, 1, phone=PHONE).status
        except desk.DeskError as exc:
            results[index] = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            results[index] = repr(exc)
        finally:
            db.session.remove()


@pytest.mark.parametrize("platform,buy", [("meituan", 710001), ("douyin", "DYSKU1001")])
def test_two_desks_confirming_the_same_voucher_at_once_verify_it_once(app, desk_env, platform, buy):
    code = (desk_env.mt_buy(buy) if platform == "meituan" else desk_env.dy_buy(buy)).code
    first = desk.preview(desk_env.clerk, code, platform)
    second = desk.preview(desk_env.manager, code, platform)
    assert first.voucher.id == second.voucher.id and first.request_id != second.request_id
    barrier = threading.Barrier(2)
    results: list = [None, None]
    threads = [threading.Thread(target=_confirm_in_thread, args=(app, op.id, first.voucher.id, p.request_id,
                                                                 barrier, results, i))
               for i, (op, p) in enumerate(((desk_env.clerk, first), (desk_env.manager, second)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted(["verified", results[1] if results[0] == "verified" else results[0]])
    assert results.count("verified") == 1, results
    loser = [r for r in results if r != "verified"][0]
    assert loser in ("AlreadyVerified", "BeingVerified"), results
    assert grants() == 1
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification).where(
        VoucherVerification.status == "verified")) == 1
    if platform == "meituan":
        assert len(desk_env.mt_consumptions(code)) == 1
    else:
        assert len(desk_env.dy_verifications(code)) == 1


def test_many_threads_same_form_and_other_forms_one_success(app, desk_env):
    code = desk_env.mt_buy(710001).code
    found = desk.preview(desk_env.clerk, code)
    ids = [found.request_id] * 3 + [desk.new_request_id() for _ in range(5)]
    barrier = threading.Barrier(len(ids))
    results: list = [None] * len(ids)
    threads = [threading.Thread(target=_confirm_in_thread, args=(app, desk_env.clerk.id, found.voucher.id, rid,
                                                                 barrier, results, i)) for i, rid in enumerate(ids)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r in ("verified", "verifying", "AlreadyVerified", "BeingVerified") for r in results), results
    assert grants() == 1 and len(desk_env.mt_consumptions(code)) == 1
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification).where(
        VoucherVerification.status == "verified")) == 1


# --- platform failures ----------------------------------------------------------------------------

def test_meituan_5xx_on_consume_is_unknown_nothing_granted_and_a_retry_verifies_once(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    mt_sandbox.set_misbehaviour("5xx")
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert v.status == "unknown" and v.error
    assert grants() == 0 and desk_env.mt_receipt(receipt.code).status == "unused"
    assert reload(Voucher, found.voucher.id).uses_left == 1
    with pytest.raises(desk.BeingVerified):  # another form must wait for this one to be resolved
        desk.confirm(desk_env.clerk, found.voucher.id, desk.new_request_id(), 1, phone=PHONE)
    mt_sandbox.set_misbehaviour(None)
    retried = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert retried.id == v.id and retried.status == "verified", retried.error
    assert grants() == 1 and len(desk_env.mt_consumptions(receipt.code)) == 1


def test_douyin_5xx_on_verify_is_unknown_and_the_retry_finds_the_verification(desk_env):
    cert = desk_env.dy_buy("DYSKU1001")
    found = desk.preview(desk_env.clerk, cert.code, "douyin")
    dy_sandbox.set_misbehave(status=503, only=["verify"])
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert v.status == "unknown" and grants() == 0
    assert desk_env.dy_cert(cert.code).status == "unused"  # the sandbox answered 503 before verifying
    dy_sandbox.clear_misbehave()
    retried = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert retried.status == "verified", retried.error
    assert grants() == 1 and len(desk_env.dy_verifications(cert.code)) == 1


def test_douyin_unavailable_before_verifying_is_a_failure(desk_env):
    cert = desk_env.dy_buy("DYSKU1001")
    found = desk.preview(desk_env.clerk, cert.code, "douyin")
    dy_sandbox.set_misbehave(status=503, only=["prepare"])
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert v.status == "failed" and grants() == 0 and desk_env.dy_cert(cert.code).status == "unused"


def test_class_full_at_fulfilment_is_compensated_on_meituan(desk_env):
    session = desk_env.session(capacity=1)
    gym_services.fulfil(desk_env.make.member(desk_env.store), desk_env.products["yoga"], 1, "other-booking",
                        desk_env.manager.id, session_id=session.id)
    receipt = desk_env.mt_buy(710005)
    found = desk.preview(desk_env.clerk, receipt.code)
    with force_locale("en"):
        v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE, session_id=session.id)
    assert v.status == "failed"
    assert "This class is full." in v.error and "cancelled on the platform" in v.error
    assert grants() == 1  # only the other booking
    sandbox_receipt = desk_env.mt_receipt(receipt.code)
    assert sandbox_receipt.status == "unused" and sandbox_receipt.uses_left == 1
    assert [c.reversed_at is not None for c in desk_env.mt_consumptions(receipt.code)] == [True]
    voucher = reload(Voucher, found.voucher.id)
    assert (voucher.uses_left, voucher.status) == (1, "unused")


def test_class_full_at_fulfilment_is_compensated_on_douyin(desk_env):
    session = desk_env.session(capacity=1)
    gym_services.fulfil(desk_env.make.member(desk_env.store), desk_env.products["yoga"], 1, "other-booking",
                        desk_env.manager.id, session_id=session.id)
    cert = desk_env.dy_buy("DYSKU1005")
    found = desk.preview(desk_env.clerk, cert.code, "douyin")
    with force_locale("en"):
        v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE, session_id=session.id)
    assert v.status == "failed" and "This class is full." in v.error
    assert desk_env.dy_cert(cert.code).status == "unused"
    assert [r.cancelled_at is not None for r in desk_env.dy_verifications(cert.code)] == [True]
    assert grants() == 1


# --- undo -----------------------------------------------------------------------------------------

def test_undo_meituan_within_the_day_reverses_both_sides(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    with pytest.raises(desk.DeskError):
        desk.undo(desk_env.manager, v.id, "  ")
    undone = desk.undo(desk_env.manager, v.id, "customer changed their mind")
    assert undone.status == "undone" and undone.undone_by == desk_env.manager.id
    assert undone.undo_reason == "customer changed their mind" and undone.granted["reversal"]
    card = db.session.execute(select(MembershipCard)).scalar_one()
    assert card.status == "closed"
    assert desk_env.mt_receipt(receipt.code).status == "unused"
    voucher = reload(Voucher, found.voucher.id)
    assert (voucher.uses_left, voucher.status) == (1, "unused")
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "voucher.undo", AuditEvent.actor_id == desk_env.manager.id)) == 1
    with pytest.raises(desk.NotUndoable):
        desk.undo(desk_env.manager, v.id, "again")
    # verified again afterwards with a new form
    again = desk.preview(desk_env.clerk, receipt.code)
    assert desk.confirm(desk_env.clerk, again.voucher.id, again.request_id, 1, phone=PHONE).status == "verified"


def test_undo_meituan_on_another_day_is_refused_and_changes_nothing(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    db.session.execute(update(SandboxMeituanConsumption).values(consumed_at=utcnow() - timedelta(days=2)))
    db.session.commit()
    with pytest.raises(desk.NotUndoable) as exc:
        desk.undo(desk_env.manager, v.id, "late")
    assert exc.value.message
    assert reload(VoucherVerification, v.id).status == "verified"
    assert db.session.execute(select(MembershipCard)).scalar_one().status == "active"


def test_undo_douyin_within_the_hour_and_refused_after_it(desk_env):
    cert = desk_env.dy_buy("DYSKU1004")
    found = desk.preview(desk_env.clerk, cert.code, "douyin")
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    assert v.status == "verified", v.error
    assert desk.undo(desk_env.manager, v.id, "wrong voucher").status == "undone"
    assert desk_env.dy_cert(cert.code).status == "unused"
    balance = db.session.execute(select(LessonBalance)).scalar_one()
    assert balance.lessons_left == 0

    again = desk.preview(desk_env.clerk, cert.code, "douyin")
    v2 = desk.confirm(desk_env.clerk, again.voucher.id, again.request_id, 1, phone=PHONE)
    assert v2.status == "verified"
    db.session.execute(update(SandboxDouyinVerification)
                       .where(SandboxDouyinVerification.verify_id == v2.platform_verify_id)
                       .values(verified_at=utcnow() - timedelta(hours=2)))
    db.session.commit()
    with pytest.raises(desk.NotUndoable) as exc:
        desk.undo(desk_env.manager, v2.id, "too late")
    assert exc.value.message == str(VoucherCancelNotAllowed.message)
    assert reload(VoucherVerification, v2.id).status == "verified"
    assert desk_env.dy_cert(cert.code).status == "used"
    assert db.session.execute(select(LessonBalance)).scalar_one().lessons_left == 10


def test_undo_refused_by_the_gym_when_lessons_were_used_leaves_the_platform_alone(desk_env):
    receipt = desk_env.mt_buy(710004)
    found = desk.preview(desk_env.clerk, receipt.code)
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 2, phone=PHONE)
    db.session.execute(update(LessonBalance).values(lessons_left=LessonBalance.lessons_left - 1,
                                                    version=LessonBalance.version + 1))
    db.session.commit()
    with pytest.raises(desk.NotUndoable):
        desk.undo(desk_env.manager, v.id, "changed mind")
    assert reload(VoucherVerification, v.id).status == "verified"
    assert desk_env.mt_receipt(receipt.code).uses_left == 8
    assert all(c.reversed_at is None for c in desk_env.mt_consumptions(receipt.code))


# --- tenancy --------------------------------------------------------------------------------------

def test_another_stores_desk_cannot_reach_the_verification_or_voucher(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    v = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, phone=PHONE)
    with pytest.raises(desk.DeskError):
        desk.get_verification(desk_env.other_clerk, v.id)
    with pytest.raises(desk.DeskError):
        desk.confirm(desk_env.other_clerk, found.voucher.id, desk.new_request_id(), 1, phone=PHONE)
    assert desk.recent(desk_env.other_clerk) == []
    assert [r.id for r in desk.recent(desk_env.clerk)] == [v.id]


def test_an_interrupted_verification_becomes_unknown_and_can_be_retried(desk_env):
    receipt = desk_env.mt_buy(710001)
    found = desk.preview(desk_env.clerk, receipt.code)
    member = desk_env.make.member(desk_env.store, phone=PHONE)
    started, fresh = desk._start(desk_env.clerk, found.voucher.id, found.request_id, 1, member)  # step (a) only
    assert fresh and started.status == "verifying"
    with pytest.raises(desk.BeingVerified):  # in flight at another desk
        desk.confirm(desk_env.clerk, found.voucher.id, desk.new_request_id(), 1, phone=PHONE)
    db.session.execute(update(VoucherVerification).values(created_at=utcnow() - timedelta(minutes=10)))
    db.session.commit()
    with pytest.raises(desk.BeingVerified):  # now known to be interrupted
        desk.confirm(desk_env.clerk, found.voucher.id, desk.new_request_id(), 1, phone=PHONE)
    assert reload(VoucherVerification, started.id).status == "unknown"
    retried = desk.confirm(desk_env.clerk, found.voucher.id, found.request_id, 1, member_id=member.id)
    assert retried.id == started.id and retried.status == "verified", retried.error
    assert grants() == 1 and len(desk_env.mt_consumptions(receipt.code)) == 1
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification)) == 1
