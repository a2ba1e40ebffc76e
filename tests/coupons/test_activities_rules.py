"""The rules of coupon activities (app.coupons.activities): every check of the add and edit forms,
unique names, the generated code, the lifecycle (derived status, terminate, enable / disable) and
the audit trail of each change."""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.coupons import activities as svc
from app.coupons.models import CouponActivity, Institution, PartnerBank
from app.extensions import db

NOW = utcnow().replace(microsecond=0)


@pytest.fixture(autouse=True)
def english():
    """The assertions read the English messages, whatever the translations say."""
    with force_locale("en"):
        yield


@pytest.fixture
def bank(make):
    return make.org(kind="bank", code="HDBANK", name="华东银行")


@pytest.fixture
def admin(make, bank):
    return make.operator(org=bank, roles=("org_admin",))


@pytest.fixture
def theme(make, bank):
    return make.theme_activity(bank, theme_no="5000000074", start_at=NOW - timedelta(days=1),
                               end_at=NOW + timedelta(days=60))


def details(**changes) -> svc.ActivityDetails:
    """Details that pass every rule (no theme; the bank is set by the caller)."""
    base = svc.ActivityDetails(
        name="春季满减券", tunnel="yunshuhui", channel="wechat", coupon_type="threshold", batch_no="123456789",
        upstream_activity_id="1234567890", owner_id="12345678", promotion_id="PROMO_1",
        start_at=NOW + timedelta(hours=1), end_at=NOW + timedelta(days=10), promo_amount_fen=1000,
        threshold_fen=10000, valid_type="absolute", issue_total=1000, per_member_limit=2)
    return replace(base, **changes)


def problems_of(admin, bank, now=NOW, activity=None, **changes) -> dict[str, str]:
    return svc.problems(admin, details(org_id=bank.id, **changes), activity, now=now)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


# --- valid details, the code, uniqueness ------------------------------------------------------------

def test_valid_details_create_an_activity_with_a_code_from_the_theme(admin, bank, theme):
    activity = svc.create_activity(admin, details(theme_no=theme.theme_no, org_id=None), now=NOW)
    assert re.fullmatch(r"WX5000000074_\d{10}", activity.code)
    assert activity.code == f"WX5000000074_{int(NOW.timestamp()):010d}"
    assert activity.org_id == bank.id and activity.theme_activity_id == theme.id
    assert (activity.promo_amount_fen, activity.threshold_fen, activity.issued_count) == (1000, 10000, 0)
    assert activity.enabled and activity.created_by == admin.id
    [event] = events("coupon_activity.create")
    assert event.object_id == str(activity.id) and event.org_id == bank.id
    assert event.after["code"] == activity.code and event.after["name"] == "春季满减券"


def test_a_theme_gives_its_bank_even_when_another_bank_is_posted(make, admin, bank, theme):
    other = make.org(kind="bank")
    activity = svc.create_activity(admin, details(theme_no=theme.theme_no, org_id=other.id), now=NOW)
    assert activity.org_id == bank.id


@pytest.mark.parametrize("channel, prefix", [("wechat", "WX"), ("alipay", "ALI"), ("unionpay", "UNI")])
def test_code_prefix_follows_the_channel(admin, bank, theme, channel, prefix):
    activity = svc.create_activity(admin, details(theme_no=theme.theme_no, channel=channel), now=NOW)
    assert activity.code.startswith(f"{prefix}5000000074_")


def test_without_a_theme_the_code_carries_the_partner_bank_code_or_else_the_org_code(make, admin, bank):
    first = svc.create_activity(admin, details(org_id=bank.id), now=NOW)
    assert first.code == f"WXHDBANK_{int(NOW.timestamp()):010d}"  # no partner bank: the org code
    db.session.add(PartnerBank(code="31290000", name="华东银行", kind="commercial", org_id=bank.id))
    db.session.commit()
    second = svc.create_activity(admin, details(org_id=bank.id, name="另一个", batch_no="987654321"), now=NOW)
    assert second.code == f"WX31290000_{int(NOW.timestamp()):010d}"


def test_a_taken_code_moves_on_by_one_second(admin, bank, theme):
    first = svc.create_activity(admin, details(theme_no=theme.theme_no), now=NOW)
    second = svc.create_activity(admin, details(theme_no=theme.theme_no, name="第二个", batch_no="223456789"), now=NOW)
    third = svc.create_activity(admin, details(theme_no=theme.theme_no, name="第三个", batch_no="323456789"), now=NOW)
    seconds = [int(a.code.rsplit("_", 1)[1]) for a in (first, second, third)]
    assert seconds == [int(NOW.timestamp()), int(NOW.timestamp()) + 1, int(NOW.timestamp()) + 2]


def test_a_code_taken_between_the_check_and_the_insert_is_retried(monkeypatch, make, admin, bank, theme):
    """Two operators saving in the same second: the unique constraint catches the loser, who takes the next second."""
    seconds = int(NOW.timestamp())
    make.coupon_activity(theme=theme, code=f"WX5000000074_{seconds:010d}")
    real = svc.next_free_code
    calls = []

    def stale_check(channel, key, start):  # as if the row above had been committed just after our check
        calls.append(start)
        return svc._code(channel, key, start) if len(calls) == 1 else real(channel, key, start)

    monkeypatch.setattr(svc, "next_free_code", stale_check)
    activity = svc.create_activity(admin, details(theme_no=theme.theme_no), now=NOW)
    assert activity.code == f"WX5000000074_{seconds + 1:010d}"
    assert calls == [seconds, seconds + 1]


def test_names_are_unique_ignoring_case_and_at_most_50_characters(make, admin, bank):
    make.coupon_activity(org=make.org(kind="bank"), name="Spring Coupon")
    assert "name" in problems_of(admin, bank, name="spring coupon")
    assert "unique" in problems_of(admin, bank, name="Spring Coupon")["name"]
    assert "50" in problems_of(admin, bank, name="券" * 51)["name"]
    assert "name" not in problems_of(admin, bank, name="券" * 50)
    assert "name" in problems_of(admin, bank, name="   ")


# --- the owner: theme activity or bank ------------------------------------------------------------

def test_theme_rules(make, admin, bank, theme):
    other_bank = make.org(kind="bank")
    foreign = make.theme_activity(other_bank, theme_no="5000000099")
    paused = make.theme_activity(bank, theme_no="5000000100", status="paused")
    wheel = make.theme_activity(bank, theme_no="5000000101", wheel_enabled=True)
    assert "10-digit" in problems_of(admin, bank, theme_no="50000")["theme"]
    assert "5000000099" in problems_of(admin, bank, theme_no=foreign.theme_no)["theme"]  # not visible: "no such"
    assert "paused" in problems_of(admin, bank, theme_no=paused.theme_no)["theme"]
    assert "roulette" in problems_of(admin, bank, theme_no=wheel.theme_no)["theme"]
    assert "theme" not in problems_of(admin, bank, theme_no=theme.theme_no)


def test_a_theme_takes_at_most_ten_coupon_activities(make, admin, bank, theme):
    for _ in range(9):
        make.coupon_activity(theme=theme)
    assert "theme" not in problems_of(admin, bank, theme_no=theme.theme_no)
    make.coupon_activity(theme=theme)
    assert "10" in problems_of(admin, bank, theme_no=theme.theme_no)["theme"]


def test_the_time_lies_within_the_theme_activity(admin, bank, theme):
    late = problems_of(admin, bank, theme_no=theme.theme_no, end_at=theme.end_at + timedelta(seconds=1))
    assert "theme activity" in late["end_at"]
    assert "end_at" not in problems_of(admin, bank, theme_no=theme.theme_no, end_at=theme.end_at)


def test_without_a_theme_a_visible_bank_is_required(make, admin, bank):
    merchant = make.org(kind="merchant")
    assert "bank" in svc.problems(admin, details(), now=NOW)["org_id"]
    assert "org_id" in problems_of(admin, merchant)  # not a bank (and not visible)
    assert "org_id" in problems_of(admin, make.org(kind="bank"))  # another bank
    assert "org_id" not in problems_of(admin, bank)


def test_institution_must_be_in_normal_use(admin, bank):
    normal = Institution(code="10000001", name="报名机构", kind="commercial")
    disabled = Institution(code="10000002", name="停用机构", kind="commercial", status="disabled")
    db.session.add_all([normal, disabled])
    db.session.commit()
    assert "institution_id" not in problems_of(admin, bank, institution_id=normal.id)
    assert "institution_id" in problems_of(admin, bank, institution_id=disabled.id)
    assert "institution_id" in problems_of(admin, bank, institution_id=999999)


# --- tunnel, batch no., 云数汇 ids ----------------------------------------------------------------

@pytest.mark.parametrize("batch_no", [None, "12345678", "1234567890", "12345678a"])
def test_batch_no_is_exactly_nine_digits(admin, bank, batch_no):
    assert "batch_no" in problems_of(admin, bank, batch_no=batch_no)


def test_a_batch_no_is_used_once_per_bank(make, admin, bank):
    make.coupon_activity(org=bank, batch_no="123456789")
    assert "already uses" in problems_of(admin, bank)["batch_no"]
    other = make.org(kind="bank")
    make.operator(org=other)
    assert "batch_no" not in svc.problems(make.operator(org=other), details(org_id=other.id), now=NOW)


@pytest.mark.parametrize("field, value", [("upstream_activity_id", None), ("upstream_activity_id", "123456789"),
                                          ("owner_id", None), ("owner_id", "1234567a"),
                                          ("promotion_id", None), ("promotion_id", "x" * 33),
                                          ("promotion_id", "bad id!")])
def test_yunshuhui_ids_are_required_and_well_formed_on_the_yunshuhui_tunnel(admin, bank, field, value):
    assert field in problems_of(admin, bank, **{field: value})


def test_other_tunnels_need_no_yunshuhui_ids_and_drop_them(admin, bank):
    found = problems_of(admin, bank, tunnel="internal", upstream_activity_id=None, owner_id="bad", promotion_id=None)
    assert found == {}
    activity = svc.create_activity(admin, details(org_id=bank.id, tunnel="internal", owner_id="12345678"), now=NOW)
    assert activity.owner_id is None and activity.tunnel == "internal"


def test_the_direct_tunnel_needs_its_wechat_stock_id_and_keeps_it(admin, bank):
    assert "stock id" in problems_of(admin, bank, tunnel="direct", promotion_id=None)["promotion_id"]
    found = problems_of(admin, bank, tunnel="direct", upstream_activity_id=None, owner_id=None, promotion_id="9856000")
    assert found == {}
    activity = svc.create_activity(admin, details(org_id=bank.id, tunnel="direct", promotion_id="9856000"), now=NOW)
    assert activity.promotion_id == "9856000" and activity.owner_id is None


def test_the_direct_tunnel_is_wechat_only(admin, bank):
    assert "WeChat" in problems_of(admin, bank, tunnel="direct", channel="alipay")["channel"]
    assert "channel" not in problems_of(admin, bank, tunnel="direct", channel="wechat")


@pytest.mark.parametrize("field, value", [("tunnel", "carrier-pigeon"), ("channel", "paypal"),
                                          ("coupon_type", "gift"), ("valid_type", "forever")])
def test_choices_come_from_their_lists(admin, bank, field, value):
    assert field in problems_of(admin, bank, **{field: value})


# --- amounts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fen, ok", [(None, False), (0, False), (1, True), (999_999, True), (1_000_000, False)])
def test_face_value_is_from_one_fen_to_9999_99_yuan(admin, bank, fen, ok):
    found = problems_of(admin, bank, promo_amount_fen=fen, threshold_fen=0)
    assert ("promo_amount" not in found) is ok


@pytest.mark.parametrize("threshold, ok", [(None, False), (0, True), (999, False), (1000, False), (1001, True),
                                           (-1, False), (100_000_000, False)])
def test_threshold_is_zero_or_above_the_face_value(admin, bank, threshold, ok):
    found = problems_of(admin, bank, promo_amount_fen=1000, threshold_fen=threshold)
    assert ("threshold" not in found) is ok
    if threshold in (999, 1000):
        assert "above the face value" in found["threshold"]


def test_a_discount_coupon_needs_a_rate_from_one_to_nine_point_nine(admin, bank):
    assert "discount_rate" in problems_of(admin, bank, coupon_type="discount", discount_bp=None)
    assert "discount_rate" in problems_of(admin, bank, coupon_type="discount", discount_bp=9_950)
    assert "discount_rate" in problems_of(admin, bank, coupon_type="discount", discount_bp=50)
    assert "discount_rate" not in problems_of(admin, bank, coupon_type="discount", discount_bp=9_000)
    activity = svc.create_activity(admin, details(org_id=bank.id, coupon_type="cash", discount_bp=9_000), now=NOW)
    assert activity.discount_bp is None  # only a discount coupon keeps a rate


# --- time, validity, totals -----------------------------------------------------------------------

def test_start_is_not_in_the_past_and_end_is_after_start(admin, bank):
    assert "past" in problems_of(admin, bank, start_at=NOW - timedelta(minutes=2))["start_at"]
    assert "start_at" not in problems_of(admin, bank, start_at=NOW.replace(second=0))  # the current minute
    assert "after" in problems_of(admin, bank, end_at=NOW + timedelta(hours=1))["end_at"]
    assert "start_at" in problems_of(admin, bank, start_at=None)
    assert "end_at" in problems_of(admin, bank, end_at=None)


def test_relative_validity_needs_at_least_one_day(admin, bank):
    for days in (None, 0, svc.VALID_DAYS_MAX + 1):
        assert "valid_days" in problems_of(admin, bank, valid_type="relative", valid_days=days)
    assert "valid_days" not in problems_of(admin, bank, valid_type="relative", valid_days=1)
    activity = svc.create_activity(admin, details(org_id=bank.id, valid_type="absolute", valid_days=7), now=NOW)
    assert activity.valid_days is None


def test_issue_total_and_per_customer_limit(admin, bank):
    assert "issue_total" in problems_of(admin, bank, issue_total=0)
    assert "issue_total" in problems_of(admin, bank, issue_total=None)
    assert "per_member_limit" in problems_of(admin, bank, per_member_limit=0)
    assert "exceed" in problems_of(admin, bank, issue_total=5, per_member_limit=6)["per_member_limit"]
    assert problems_of(admin, bank, issue_total=5, per_member_limit=5) == {}


def test_settlement_method_and_ratio(admin, bank):
    assert "settle_type" in problems_of(admin, bank, settled=True, settle_type=None)
    assert "settle_rate" in problems_of(admin, bank, settled=True, settle_type="proportional", settle_rate_bp=None)
    assert "settle_rate" in problems_of(admin, bank, settled=True, settle_type="proportional", settle_rate_bp=10_001)
    assert problems_of(admin, bank, settled=True, settle_type="proportional", settle_rate_bp=10_000) == {}
    kept = svc.create_activity(admin, details(org_id=bank.id, settled=True, settle_type="bank", settle_rate_bp=5000),
                               now=NOW)
    assert (kept.settle_type, kept.settle_rate_bp) == ("bank", None)
    dropped = svc.create_activity(admin, details(org_id=bank.id, name="b", batch_no="223456789", settled=False,
                                                 settle_type="merchant"), now=NOW)
    assert dropped.settle_type is None


def test_usage_notes_at_most_256_characters(admin, bank):
    assert "256" in problems_of(admin, bank, description="字" * 257)["description"]
    assert "description" not in problems_of(admin, bank, description="字" * 256)


def test_create_refuses_broken_rules_and_writes_nothing(admin, bank):
    with pytest.raises(svc.InvalidActivity) as caught:
        svc.create_activity(admin, details(org_id=bank.id, threshold_fen=500, batch_no="1"), now=NOW)
    assert set(caught.value.errors) == {"threshold", "batch_no"}
    assert db.session.execute(select(CouponActivity)).first() is None
    assert events("coupon_activity.create") == []


# --- edit -----------------------------------------------------------------------------------------

@pytest.fixture
def running(make, bank):
    return make.coupon_activity(org=bank, name="进行中", issue_total=100, per_member_limit=2, issued_count=40,
                                start_at=NOW - timedelta(days=1), end_at=NOW + timedelta(days=5))


def edit(admin, activity, **changes):
    current = svc.ActivityDetails.of(activity, None)
    return svc.update_activity(admin, activity, replace(current, **changes), now=NOW)


def test_edit_keeps_the_locked_fields_whatever_is_posted(admin, running):
    code, batch = running.code, running.batch_no
    edit(admin, running, tunnel="internal", channel="alipay", coupon_type="cash", batch_no="999999999",
         theme_no="5000000074", name="改名")
    db.session.refresh(running)
    assert (running.code, running.tunnel, running.channel, running.coupon_type, running.batch_no) == \
        (code, "yunshuhui", "wechat", "threshold", batch)
    assert running.theme_activity_id is None and running.name == "改名"


def test_edit_writes_before_and_after_of_what_changed(admin, running):
    edit(admin, running, name="新名字", issue_total=200)
    [event] = events("coupon_activity.update")
    assert event.before == {"name": "进行中", "issue_total": 100}
    assert event.after == {"name": "新名字", "issue_total": 200}
    edit(admin, running)  # nothing changed: nothing written
    assert len(events("coupon_activity.update")) == 1


def test_issue_total_may_not_go_below_what_was_issued(admin, running):
    with pytest.raises(svc.InvalidActivity) as caught:
        edit(admin, running, issue_total=39)
    assert "40" in caught.value.errors["issue_total"]
    assert edit(admin, running, issue_total=40).issue_total == 40


def test_per_customer_limit_may_only_be_raised(admin, running):
    with pytest.raises(svc.InvalidActivity) as caught:
        edit(admin, running, per_member_limit=1)
    assert "raised" in caught.value.errors["per_member_limit"]
    assert edit(admin, running, per_member_limit=3).per_member_limit == 3


def test_a_started_activity_keeps_its_start_but_may_move_its_end(admin, running):
    with pytest.raises(svc.InvalidActivity) as caught:
        edit(admin, running, start_at=NOW + timedelta(hours=1))
    assert "started" in caught.value.errors["start_at"]
    with pytest.raises(svc.InvalidActivity) as caught:
        edit(admin, running, end_at=NOW - timedelta(minutes=1))
    assert "past" in caught.value.errors["end_at"]
    moved = edit(admin, running, end_at=NOW + timedelta(days=9), start_at=running.start_at.replace(microsecond=0))
    assert moved.end_at == NOW + timedelta(days=9)


def test_a_name_may_be_kept_on_edit_but_not_taken_from_another(make, admin, bank, running):
    make.coupon_activity(org=bank, name="别人的名字")
    assert edit(admin, running, name="进行中", issue_total=150).issue_total == 150
    with pytest.raises(svc.InvalidActivity):
        edit(admin, running, name="别人的名字")


@pytest.mark.parametrize("state", ["ended", "terminated"])
def test_ended_or_terminated_activities_are_view_only(make, admin, bank, state):
    values = ({"start_at": NOW - timedelta(days=5), "end_at": NOW - timedelta(days=1)} if state == "ended"
              else {"terminated_at": NOW - timedelta(hours=1)})
    activity = make.coupon_activity(org=bank, **values)
    with pytest.raises(svc.InvalidActivity) as caught:
        edit(admin, activity, name="不行")
    assert "only be viewed" in caught.value.errors["name"]


# --- lifecycle ------------------------------------------------------------------------------------

@pytest.fixture
def four_states(make, bank):
    return {
        "not_started": make.coupon_activity(org=bank, start_at=NOW + timedelta(hours=1),
                                            end_at=NOW + timedelta(days=1)),
        "running": make.coupon_activity(org=bank, start_at=NOW - timedelta(hours=1), end_at=NOW + timedelta(days=1)),
        "ended": make.coupon_activity(org=bank, start_at=NOW - timedelta(days=2), end_at=NOW),
        "terminated": make.coupon_activity(org=bank, start_at=NOW - timedelta(days=2), end_at=NOW + timedelta(days=1),
                                           terminated_at=NOW - timedelta(hours=1)),
    }


def test_status_in_sql_agrees_with_status_in_python(four_states):
    for status, activity in four_states.items():
        assert activity.status_at(NOW) == status
        found = db.session.execute(select(CouponActivity.id).where(svc.status_condition(status, NOW))).scalars().all()
        assert found == [activity.id]


def test_terminate_only_from_running_and_for_good(admin, four_states):
    running = four_states["running"]
    svc.terminate(admin, running, now=NOW)
    assert running.terminated_at == NOW and running.status_at(NOW + timedelta(days=3)) == "terminated"
    [event] = events("coupon_activity.terminate")
    assert event.object_id == str(running.id) and event.after == {"terminated_at": NOW.isoformat()}
    for status in ("not_started", "ended", "terminated", "running"):  # running is terminated now
        with pytest.raises(svc.LifecycleError):
            svc.terminate(admin, four_states[status], now=NOW)
    assert len(events("coupon_activity.terminate")) == 1


def test_enable_and_disable_in_a_batch(make, admin, four_states):
    foreign = make.coupon_activity(org=make.org(kind="bank"))
    ids = [a.id for a in four_states.values()] + [foreign.id]
    result = svc.set_enabled(admin, ids, False, now=NOW)
    assert sorted(a.id for a in result.changed) == sorted([four_states["not_started"].id, four_states["running"].id])
    assert sorted(a.id for a in result.over) == sorted([four_states["ended"].id, four_states["terminated"].id])
    db.session.refresh(foreign)
    assert foreign.enabled  # another bank's row is not reached
    assert len(events("coupon_activity.disable")) == 2
    again = svc.set_enabled(admin, [four_states["running"].id], False, now=NOW)
    assert [a.id for a in again.unchanged] == [four_states["running"].id] and not again.changed
    back = svc.set_enabled(admin, [four_states["running"].id], True, now=NOW)
    assert back.changed[0].enabled
    [enabled] = events("coupon_activity.enable")
    assert enabled.before == {"enabled": False} and enabled.after == {"enabled": True}


def test_a_discount_reads_as_zhe_in_chinese_and_as_the_share_paid_in_english(app):
    from flask_babel import force_locale

    from app.coupons.forms import discount_label

    with app.test_request_context():
        with force_locale("zh_CN"):
            assert [discount_label(bp) for bp in (9000, 8500, 8800, 100, None)] == ["9折", "8.5折", "8.8折", "0.1折", ""]
        with force_locale("en"):
            assert discount_label(8500) == "pays 85% of the price"
