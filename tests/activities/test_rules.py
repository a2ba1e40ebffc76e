"""The rules of theme activities (app.activities.services): every check of the add and edit forms,
the generated id, the background image checks, and the audit trail of each change."""
from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.activities import backgrounds
from app.activities import services as svc
from app.activities.models import ThemeActivity, ThemeActivityBank, ThemeActivityInstitution
from app.core.audit import AuditEvent
from app.coupons.models import CouponIssue
from app.extensions import db
from tests.activities.conftest import GIF, JPEG, NOW, PNG, create, details, pending_image


def problems(world, theme=None, now=NOW, actor=None, **changes) -> dict[str, str]:
    return svc.problems(actor or world.admin, details(world, **changes), theme, now=now)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


# --- adding ---------------------------------------------------------------------------------------

def test_valid_details_pass_and_create_an_active_theme_of_the_banks_org(world):
    assert problems(world) == {}
    theme = create(world)
    assert theme.org_id == world.bank.id and theme.status == "active" and not theme.wheel_enabled
    assert theme.institution_id == world.institution.id and theme.partner_bank_id == world.partner.id
    assert theme.rules == "1. 每人每天可参与一次\n2. 奖品以实际到账为准"
    assert theme.created_by == world.admin.id == theme.updated_by
    # The institution and bank are enrolled in the link lists at once.
    assert db.session.execute(select(ThemeActivityInstitution.institution_id)).scalars().all() == [world.institution.id]
    assert db.session.execute(select(ThemeActivityBank.partner_bank_id)).scalars().all() == [world.partner.id]
    event, = events("theme_activity.create")
    assert event.org_id == world.bank.id and event.after["theme_no"] == theme.theme_no


@pytest.mark.parametrize("name, message", [
    (None, "Enter the theme's name."), ("   ", "Enter the theme's name."),
    ("名" * 101, "at most 100 characters"),
])
def test_the_name_is_required_and_at_most_100_characters(world, name, message):
    assert message in problems(world, name=name)["name"]
    assert "name" not in problems(world, name="名" * 100)


def test_the_rules_are_required_at_most_1000_characters_and_keep_line_breaks(world):
    assert "Enter the participation rules" in problems(world, rules=" \n ")["rules"]
    assert "at most 1000" in problems(world, rules="规" * 1001)["rules"]
    theme = create(world, rules="第一条\r\n第二条\r\n\r\n第三条")
    assert theme.rules == "第一条\n第二条\n\n第三条"


def test_the_institution_and_bank_are_required_in_normal_use_and_visible(world, make):
    assert "Choose the enrolling institution" in problems(world, institution_id=None)["institution_id"]
    assert "Choose the bank" in problems(world, partner_bank_id=None)["partner_bank_id"]
    world.other_institution.status = "disabled"
    db.session.commit()
    assert "normal use" in problems(world, institution_id=world.other_institution.id)["institution_id"]
    # A bank's operator may not create a theme for another bank (it is not offered to them).
    assert "normal use" in problems(world, partner_bank_id=world.other_partner.id)["partner_bank_id"]
    # The platform may, and the theme then belongs to that bank's organisation.
    theme = create(world, actor=world.platform_admin, partner_bank_id=world.other_partner.id)
    assert theme.org_id == world.other_bank.id


def test_the_position_number_is_optional_and_must_be_available(world):
    assert "position_no" not in problems(world, position_no=None)
    assert "position_no" in problems(world, position_no="9" * 23)
    world.position.status = "unavailable"
    db.session.commit()
    assert "available position number" in problems(world)["position_no"]


def test_the_time_window(world):
    assert "may not be in the past" in problems(world, start_at=NOW - timedelta(minutes=2))["start_at"]
    assert "start_at" not in problems(world, start_at=NOW.replace(second=0))  # the current minute counts
    assert "after the start" in problems(world, end_at=NOW + timedelta(minutes=30))["end_at"]
    assert "Enter the start time" in problems(world, start_at=None)["start_at"]
    assert "Enter the end time" in problems(world, end_at=None)["end_at"]


@pytest.mark.parametrize("total, daily, field", [
    (-1, None, "participation_limit"), (1000, None, "participation_limit"), (None, 1000, "daily_limit"),
    (3, 4, "daily_limit"), (0, 1, "daily_limit"),
])
def test_limits_out_of_range_or_daily_above_total(world, total, daily, field):
    assert field in problems(world, participation_limit=total, daily_limit=daily)


@pytest.mark.parametrize("total, daily", [(None, None), (0, 0), (0, None), (999, 999), (5, None), (None, 3), (1, 1)])
def test_limits_empty_means_no_cap_and_zero_means_nobody(world, total, daily):
    assert problems(world, participation_limit=total, daily_limit=daily) == {}
    theme = create(world, participation_limit=total, daily_limit=daily)
    assert (theme.participation_limit, theme.daily_limit) == (total, daily)


def test_the_background_is_required_and_moved_from_pending_when_saved(world, uploads):
    assert "Choose the background image" in problems(world, background_ref=None)["background"]
    assert "no longer there" in problems(world, background_ref="pending/" + "0" * 32 + ".png")["background"]
    assert "no longer there" in problems(world, background_ref="../../etc/passwd")["background"]
    ref = pending_image(GIF)
    theme = create(world, background_ref=ref)
    assert backgrounds.is_ref(theme.background_image, pending=False) and theme.background_image.endswith(".gif")
    assert backgrounds.path_of(theme.background_image).read_bytes() == GIF
    assert not (uploads / ref).exists()
    # A saved image cannot be adopted by another theme as if it were a fresh upload.
    assert "no longer there" in problems(world, background_ref=theme.background_image)["background"]


@pytest.mark.parametrize("data, kind", [(PNG, "png"), (JPEG, "jpg"), (GIF, "gif")])
def test_images_are_recognised_by_content(world, data, kind):
    ref = backgrounds.store_pending(io.BytesIO(data))
    assert ref.startswith("pending/") and ref.endswith("." + kind)


@pytest.mark.parametrize("data, message", [
    (b"", "Choose an image file"), (b"%PDF-1.7 not an image", "Only JPG, PNG and GIF"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "Only JPG, PNG and GIF"),
    (PNG + b"\x00" * (5 * 1024 * 1024), "at most 5 MB"),
])
def test_images_of_other_kinds_or_over_5_mb_are_refused(world, uploads, data, message):
    with pytest.raises(backgrounds.InvalidImage, match=message):
        backgrounds.store_pending(io.BytesIO(data))
    assert not (uploads / "pending").exists() or not any((uploads / "pending").iterdir())


def test_an_image_of_exactly_5_mb_is_accepted(world):
    ref = backgrounds.store_pending(io.BytesIO(PNG + b"\x00" * (5 * 1024 * 1024 - len(PNG))))
    assert backgrounds.exists(ref)


def test_stale_pending_images_are_purged(world, uploads):
    import os
    import time

    old, fresh = pending_image(), pending_image()
    os.utime(uploads / old, (time.time() - 2 * 86400,) * 2)
    assert backgrounds.purge_stale_pending() == 1
    assert not (uploads / old).exists() and (uploads / fresh).exists()


# --- the generated id ------------------------------------------------------------------------------

def test_ids_are_10_digits_counted_from_5000000001_skipping_taken_ones(world, make):
    first = create(world)
    assert first.theme_no == "5000000001"
    make.theme_activity(world.bank, theme_no="5000000002")  # taken by other means (an import, say)
    assert create(world).theme_no == "5000000003"


def test_ids_are_never_handed_out_twice_under_concurrency(app, world):
    from app.auth.models import Operator

    # Everything the threads use is read here: objects of this thread's session stay in this thread.
    wanted = [details(world) for _ in range(8)]
    admin_id = world.admin.id
    numbers, errors = [], []

    def add(theme_details):
        with app.app_context():
            try:
                actor = db.session.get(Operator, admin_id)
                numbers.append(svc.create_theme(actor, theme_details, now=NOW).theme_no)
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=add, args=(d,)) for d in wanted]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == [str(5_000_000_001 + i) for i in range(8)]


def test_a_failed_creation_does_not_keep_the_image(world, uploads, monkeypatch):
    ref = pending_image()

    def broken(*args, **kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(svc.audit, "record", broken)
    with pytest.raises(RuntimeError):
        svc.create_theme(world.admin, details(world, background_ref=ref), now=NOW)
    assert db.session.execute(select(ThemeActivity)).first() is None
    assert not any(p.is_file() for p in uploads.rglob("*"))


# --- editing -----------------------------------------------------------------------------------------

def edit(world, theme, now=NOW, **changes):
    base = svc.ThemeDetails.of(theme)
    for name, value in changes.items():
        setattr(base, name, value)
    return svc.update_theme(world.admin, theme, base, now=now)


def edit_problems(world, theme, now=NOW, **changes):
    base = svc.ThemeDetails.of(theme)
    for name, value in changes.items():
        setattr(base, name, value)
    return svc.problems(world.admin, base, theme, now=now)


def test_an_unchanged_edit_passes_and_writes_nothing(world):
    theme = create(world)
    assert edit_problems(world, theme) == {}
    edit(world, theme)
    assert events("theme_activity.update") == []


def test_an_edit_is_audited_with_before_and_after(world):
    theme = create(world)
    edit(world, theme, name="元宵主题活动", rules="新规则", participation_limit=20)
    event, = events("theme_activity.update")
    assert event.before == {"name": "春节主题活动", "rules": "1. 每人每天可参与一次\n2. 奖品以实际到账为准",
                            "participation_limit": 10}
    assert event.after == {"name": "元宵主题活动", "rules": "新规则", "participation_limit": 20}


def test_the_institution_and_bank_are_locked(world):
    theme = create(world)
    edit(world, theme, institution_id=world.other_institution.id, partner_bank_id=world.other_partner.id)
    db.session.refresh(theme)
    assert theme.institution_id == world.institution.id and theme.partner_bank_id == world.partner.id
    assert theme.org_id == world.bank.id


@pytest.mark.parametrize("field, before, after, ok", [
    ("participation_limit", 10, 11, True), ("participation_limit", 10, None, True),
    ("participation_limit", 10, 9, False), ("participation_limit", None, 999, False),
    ("participation_limit", 0, 1, True), ("daily_limit", 2, 1, False), ("daily_limit", None, None, True),
    ("daily_limit", 2, 3, True),
])
def test_limits_may_only_be_raised(world, field, before, after, ok):
    theme = create(world, participation_limit=None if field == "daily_limit" else before,
                   daily_limit=before if field == "daily_limit" else None)
    found = edit_problems(world, theme, **{field: after})
    assert (field not in found) is ok
    if not ok:
        assert "may only be raised" in found[field]


def test_a_started_theme_keeps_its_start_and_may_not_end_in_the_past(world):
    theme = create(world)
    later = NOW + timedelta(hours=2)  # it started an hour ago
    assert "has started" in edit_problems(world, theme, now=later, start_at=later + timedelta(hours=1))["start_at"]
    assert "may not be in the past" in edit_problems(world, theme, now=later, end_at=later - timedelta(minutes=1))["end_at"]
    assert edit_problems(world, theme, now=later, end_at=later + timedelta(days=60)) == {}


def test_the_window_may_not_exclude_coupons_already_issued(world, make):
    theme = create(world, start_at=NOW + timedelta(minutes=5), end_at=NOW + timedelta(days=30))
    coupon = make.coupon_activity(theme=theme, start_at=theme.start_at, end_at=theme.end_at)
    issued_at = NOW + timedelta(days=3)
    for n, (status, at) in enumerate([("succeeded", issued_at), ("failed", NOW + timedelta(days=20))]):
        db.session.add(CouponIssue(order_no=f"ORD{n}", call_trade_no=f"T{n}", coupon_activity_id=coupon.id,
                                   openid_enc="x", openid_hash=f"h{n}", openid_masked="o***", status=status,
                                   issued_at=at, org_id=theme.org_id))
    db.session.commit()
    found = edit_problems(world, theme, end_at=issued_at)
    assert "issued until" in found["end_at"]
    # The failed issue of day 20 does not count: ending on day 10 keeps every coupon inside.
    assert edit_problems(world, theme, end_at=NOW + timedelta(days=10)) == {}
    assert "issued from" in edit_problems(world, theme, start_at=NOW + timedelta(days=4))["start_at"]
    assert edit_problems(world, theme, start_at=NOW + timedelta(days=2)) == {}


def test_an_expired_theme_is_view_only(world):
    theme = create(world)
    found = edit_problems(world, theme, now=theme.end_at + timedelta(seconds=1), name="改名")
    assert "expired" in found["name"]
    with pytest.raises(svc.InvalidTheme):
        edit(world, theme, now=theme.end_at, name="改名")


def test_replacing_the_background_removes_the_old_file(world, uploads):
    theme = create(world)
    old = theme.background_image
    edit(world, theme, background_ref=pending_image(JPEG))
    assert theme.background_image.endswith(".jpg") and backgrounds.exists(theme.background_image)
    assert not (uploads / old).exists()
    event, = events("theme_activity.update")
    assert event.before == {"background_image": old}


# --- status -------------------------------------------------------------------------------------

def test_a_passed_end_counts_as_expired_before_the_job_writes_it(world):
    theme = create(world)
    assert svc.effective_status(theme, theme.end_at - timedelta(seconds=1)) == "active"
    assert svc.effective_status(theme, theme.end_at) == "expired"
    theme.status = "paused"
    assert svc.effective_status(theme, theme.end_at) == "expired"
