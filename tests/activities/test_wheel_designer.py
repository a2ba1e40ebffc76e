"""The roulette designer's rules: reading the wheel as rows, each validation, the first row kept, new
coupon rows, at most 10 coupon activities, no new links while the wheel is on, turning it on (2–12
segments, not while paused), view-only when expired, one transaction with its audit events, and the
theme row lock under concurrent saves."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import func, select

from app.activities import prizes
from app.activities import wheel_designer as wd
from app.activities.models import ThemeActivity
from app.activities.prize_models import Prize
from app.auth.models import Operator
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from tests.activities.test_draw_concurrency import run_at_once, wide_app  # noqa: F401 (fixture)
from tests.helpers import csrf_from


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def admin(make, bank):
    return make.operator(org=bank, roles=("org_admin",))


@pytest.fixture
def theme(make, bank):
    """A running theme activity, wheel off: the fallback (order 50), two prizes on the wheel, one off."""
    theme = make.theme_activity(bank)
    make.prize(theme, kind="thanks", name="谢谢参与", weight=10, sort_order=50, colour="#c8c8c8")
    make.prize(theme, name="100积分", weight=30, sort_order=2, stock=5)
    make.prize(theme, name="五元现金", kind="cash", weight=60, sort_order=7, stock=3)
    make.prize(theme, name="保温杯", kind="gift", weight=20, sort_order=1, stock=2, enabled=False)
    return theme


def pool(theme) -> dict[str, Prize]:
    db.session.expire_all()
    return {p.name: p for p in prizes.prizes_of(theme)}


def key(prize: Prize) -> str:
    return f"prize-{prize.id}"


def row_of(design: wd.Design, prize: Prize) -> wd.DesignRow:
    return next(r for r in design.rows if r.key == key(prize))


def events(action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return db.session.execute(stmt).scalars().all()


def checked_row(checked: wd.CheckedDesign, row_key: str) -> wd.CheckedRow:
    return next(r for r in checked.rows if r.key == row_key)


def refused(admin, theme, design) -> wd.CheckedDesign:
    with pytest.raises(wd.InvalidDesign) as caught:
        wd.save_design(admin, theme, design)
    return caught.value.checked


# --- reading -------------------------------------------------------------------------------------------


def test_the_wheel_reads_as_the_prizes_on_it_numbered_in_their_order(theme):
    p = pool(theme)

    design = wd.read_wheel(theme)

    assert design.wheel_on is False
    assert [(r.key, r.sort_order, r.weight) for r in design.rows] == [
        (key(p["100积分"]), 1, 30), (key(p["五元现金"]), 2, 60), (key(p["谢谢参与"]), 3, 10)]
    assert [x.id for x in prizes.on_the_wheel(theme)] == [p["100积分"].id, p["五元现金"].id, p["谢谢参与"].id]


def test_an_empty_pool_shows_the_fallback_as_the_first_row(make, bank):
    theme = make.theme_activity(bank)

    design = wd.read_wheel(theme)
    checked = wd.check_design(theme, design)

    assert [(r.key, r.sort_order, r.colour) for r in design.rows] == [("thanks", 1, prizes.FALLBACK_COLOUR)]
    assert checked.rows[0].is_fallback and checked.rows[0].chance_pct == 100
    assert checked.ok  # a draft, off, may have one row
    assert "2" in checked.wheel_problem  # but it could not be turned on


def test_the_chances_of_the_design_are_shares_of_its_weights(theme):
    p = pool(theme)
    design = wd.read_wheel(theme)
    row_of(design, p["五元现金"]).weight = 10

    checked = wd.check_design(theme, design)

    assert {r.name: str(r.chance_pct) for r in checked.rows} == {"100积分": "60.00", "五元现金": "20.00",
                                                                 "谢谢参与": "20.00"}
    assert [s.name for s in checked.segments()] == ["100积分", "五元现金", "谢谢参与"]


# --- each validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, field", [
    ({"weight": 0}, "weight"), ({"weight": 101}, "weight"), ({"weight": None}, "weight"),
    ({"colour": "red"}, "colour"), ({"colour": "#12345"}, "colour"), ({"colour": ""}, "colour"),
    ({"sort_order": 0}, "sort_order"), ({"sort_order": 13}, "sort_order"), ({"sort_order": None}, "sort_order"),
    ({"sort_order": 2}, "sort_order"),  # the cash prize's
])
def test_a_broken_rule_is_named_on_its_row_and_field(admin, theme, changes, field):
    p = pool(theme)
    design = wd.read_wheel(theme)
    row = row_of(design, p["100积分"])
    for name, value in changes.items():
        setattr(row, name, value)

    checked = refused(admin, theme, design)

    assert field in checked_row(checked, row.key).errors
    assert pool(theme)["100积分"].weight == 30 and events() == []  # nothing saved


def test_twelve_is_the_highest_order_and_the_colour_may_be_any_hex(admin, theme):
    p = pool(theme)
    design = wd.read_wheel(theme)
    row_of(design, p["100积分"]).sort_order, row_of(design, p["100积分"]).colour = 12, "#A1B2C3"

    wd.save_design(admin, theme, design)

    assert (pool(theme)["100积分"].sort_order, pool(theme)["100积分"].colour) == (12, "#a1b2c3")


def test_a_row_naming_nothing_of_this_theme_is_refused(admin, make, bank, theme):
    stranger = make.prize(make.theme_activity(bank), stock=1)
    design = wd.read_wheel(theme)
    design.rows += [wd.DesignRow(f"prize-{stranger.id}", 4, "#ff0000", 10), wd.DesignRow("coupon-999", 5, "#00ff00", 10),
                    wd.DesignRow("nonsense", 6, "#0000ff", 10)]

    checked = refused(admin, theme, design)

    assert all("__all__" in checked_row(checked, k).errors for k in (f"prize-{stranger.id}", "coupon-999", "nonsense"))


def test_the_same_prize_twice_is_refused(admin, theme):
    design = wd.read_wheel(theme)
    design.rows.append(replace(design.rows[0], sort_order=9))

    checked = refused(admin, theme, design)

    assert any("twice" in m for m in checked.problems)


# --- the first row, removing and putting back ------------------------------------------------------------


def test_the_first_row_the_fallback_cannot_be_removed(admin, theme):
    p = pool(theme)
    design = wd.read_wheel(theme)

    same, message = wd.remove_row(theme, design, key(p["谢谢参与"]))
    assert same is design and message == str(prizes.FALLBACK_ALWAYS_ON)
    without = wd.Design(False, [r for r in design.rows if r.key != key(p["谢谢参与"])])
    checked = refused(admin, theme, without)
    assert str(prizes.FALLBACK_ALWAYS_ON) in checked.problems
    assert pool(theme)["谢谢参与"].enabled


def test_removing_a_row_takes_the_prize_off_the_wheel_and_keeps_it_in_the_pool(admin, theme):
    p = pool(theme)
    design, message = wd.remove_row(theme, wd.read_wheel(theme), key(p["100积分"]))
    assert message is None and [r.sort_order for r in design.rows] == [1, 2]  # numbered again

    saved = wd.save_design(admin, theme, design)

    after = pool(theme)
    assert after["100积分"].enabled is False and after["100积分"].stock_remaining == 5
    assert [x.name for x in prizes.on_the_wheel(theme)] == ["五元现金", "谢谢参与"]
    assert saved.changed_prizes == 4  # off the wheel; the other two renumbered; 保温杯 (off) out of row 1's way
    assert after["保温杯"].sort_order == 13 and after["保温杯"].enabled is False
    updates = {e.object_id: e for e in events("theme_prize.update")}
    assert updates[str(p["100积分"].id)].after == {"enabled": False, "sort_order": 14}  # 2 is a row's now


def test_a_prize_off_the_wheel_whose_order_a_row_takes_moves_above_twelve_and_comes_back(admin, theme):
    p = pool(theme)
    assert p["保温杯"].sort_order == 1 and not p["保温杯"].enabled

    wd.save_design(admin, theme, wd.read_wheel(theme))  # 100积分 becomes row 1

    after = pool(theme)
    assert (after["100积分"].sort_order, after["保温杯"].sort_order, after["保温杯"].enabled) == (1, 13, False)
    design, message = wd.add_row(theme, wd.read_wheel(theme), key(p["保温杯"]))
    assert message is None and (design.rows[-1].sort_order, design.rows[-1].colour) == (4, p["保温杯"].colour)
    wd.save_design(admin, theme, design)
    assert (pool(theme)["保温杯"].enabled, pool(theme)["保温杯"].sort_order) == (True, 4)


def test_each_changed_prize_is_audited_once_and_an_unchanged_one_not_at_all(admin, theme):
    p = pool(theme)
    design = wd.read_wheel(theme)
    for number, row in enumerate(design.rows, start=1):
        assert row.sort_order == number
    row_of(design, p["五元现金"]).colour = "#00897b"
    wd.save_design(admin, theme, design)  # renumbers 2→1, 7→2, 50→3 and recolours; 保温杯 (off) 1→13
    first = events("theme_prize.update")
    assert len(first) == 4
    cash = next(e for e in first if e.object_id == str(p["五元现金"].id))
    assert cash.before == {"sort_order": 7, "colour": "#ff6600"} and cash.after == {"sort_order": 2, "colour": "#00897b"}

    row = row_of(design := wd.read_wheel(theme), p["100积分"])
    row.weight = 45
    wd.save_design(admin, theme, design)

    second = events("theme_prize.update")[4:]
    assert [(e.object_id, e.before, e.after) for e in second] == [(str(p["100积分"].id), {"weight": 30}, {"weight": 45})]


# --- new coupon rows -----------------------------------------------------------------------------------------


def test_a_coupon_activity_becomes_a_coupon_prize_with_the_coupons_it_has_left(admin, make, theme):
    coupon = make.coupon_activity(theme=theme, name="十元立减券", issue_total=500, issued_count=120, per_member_limit=3)
    make.prize(theme, kind="coupon", coupon_activity_id=coupon.id, stock=80, per_member_cap=1, enabled=False,
               name="旧券奖品", sort_order=30)
    choices = {c.key: c for c in wd.row_choices(theme, wd.read_wheel(theme))}
    assert choices[f"coupon-{coupon.id}"].room == 300 and choices[f"coupon-{coupon.id}"].refusal is None

    design, message = wd.add_row(theme, wd.read_wheel(theme), f"coupon-{coupon.id}")
    assert message is None and design.rows[-1].weight == wd.DEFAULT_WEIGHT
    design.wheel_on = True
    saved = wd.save_design(admin, theme, design)

    prize = pool(theme)["十元立减券"]
    assert (prize.kind, prize.coupon_activity_id, prize.stock_total, prize.stock_remaining) == ("coupon", coupon.id, 300, 300)
    assert (prize.per_member_cap, prize.weight, prize.sort_order, prize.enabled) == (3, 10, 4, True)
    assert saved.switched == "on"
    assert [e.object_id for e in events("theme_prize.create")] == [str(prize.id)]


def test_a_coupon_activity_with_nothing_left_or_already_on_the_wheel_cannot_be_added(admin, make, theme):
    empty = make.coupon_activity(theme=theme, issue_total=10, issued_count=10)
    once = make.coupon_activity(theme=theme)
    design, _ = wd.add_row(theme, wd.read_wheel(theme), f"coupon-{once.id}")

    choices = {c.key: c for c in wd.row_choices(theme, design)}
    assert "no coupons left" in choices[f"coupon-{empty.id}"].refusal
    assert "already on the wheel" in choices[f"coupon-{once.id}"].refusal
    again, message = wd.add_row(theme, design, f"coupon-{once.id}")
    assert again is design and "already on the wheel" in message

    design.rows.append(wd.DesignRow(f"coupon-{once.id}", 9, "#123456", 10))
    assert any("already on the wheel" in m for m in refused(admin, theme, design).problems)


def test_an_ended_coupon_activity_cannot_become_a_prize(admin, make, theme):
    now = utcnow()
    ended = make.coupon_activity(theme=theme, start_at=now - timedelta(days=5), end_at=now - timedelta(days=1))

    choice = next(c for c in wd.row_choices(theme, wd.read_wheel(theme)) if c.key == f"coupon-{ended.id}")

    assert "ended" in choice.refusal


def test_another_themes_coupon_activity_cannot_be_added(admin, make, bank, theme):
    foreign = make.coupon_activity(theme=make.theme_activity(bank))
    design = wd.read_wheel(theme)

    same, message = wd.add_row(theme, design, f"coupon-{foreign.id}")
    assert same.rows == wd.read_wheel(theme).rows and message == "That is not something this wheel can take."

    design.rows.append(wd.DesignRow(f"coupon-{foreign.id}", 4, "#123456", 10))
    assert "__all__" in checked_row(refused(admin, theme, design), f"coupon-{foreign.id}").errors


def test_a_pool_links_at_most_ten_coupon_activities(admin, make, bank):
    theme = make.theme_activity(bank)
    make.prize(theme, kind="thanks", name="谢谢参与", sort_order=99)
    for n in range(10):
        coupon = make.coupon_activity(theme=theme)
        make.prize(theme, kind="coupon", coupon_activity_id=coupon.id, per_member_cap=1, stock=1, sort_order=n + 1)
    eleventh = make.coupon_activity(theme=theme)
    design = wd.read_wheel(theme)

    choice = next(c for c in wd.row_choices(theme, design) if c.key == f"coupon-{eleventh.id}")
    assert "10" in choice.refusal
    design.rows.append(wd.DesignRow(f"coupon-{eleventh.id}", 12, "#123456", 10))
    checked = refused(admin, theme, design)
    assert "10" in checked_row(checked, f"coupon-{eleventh.id}").errors["coupon_activity_id"]


# --- the switch --------------------------------------------------------------------------------------------


def test_turning_the_wheel_on_needs_two_to_twelve_segments(admin, make, bank):
    theme = make.theme_activity(bank)
    design = wd.read_wheel(theme)  # the fallback alone
    design.wheel_on = True

    checked = refused(admin, theme, design)
    assert "at least 2" in checked.wheel_problem and checked.wheel_problem in checked.problems
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is False

    design.wheel_on = False
    assert wd.save_design(admin, theme, design).switched is None  # a draft of one row may be saved off
    fallback = next(p for p in prizes.prizes_of(theme) if p.is_fallback)
    assert fallback.sort_order == 1 and [e.action for e in events()] == ["theme_prize.create"]

    make.prize(theme, name="一等奖", sort_order=2, stock=3)
    design = wd.read_wheel(theme)
    design.wheel_on = True
    assert wd.save_design(admin, theme, design).switched == "on"
    theme = db.session.get(ThemeActivity, theme.id, populate_existing=True)
    assert theme.wheel_enabled is True and theme.updated_by == admin.id
    switch = events("theme_activity.wheel_on")
    assert len(switch) == 1 and switch[0].before == {"wheel_enabled": False} and switch[0].after == {"wheel_enabled": True}


def test_a_wheel_that_is_on_keeps_two_segments_and_is_turned_off_by_a_save(admin, theme):
    p = pool(theme)
    design = wd.read_wheel(theme)
    design.wheel_on = True
    wd.save_design(admin, theme, design)

    shrunk = wd.Design(True, [r for r in wd.read_wheel(theme).rows if r.key == key(p["谢谢参与"])])
    assert "at least 2" in refused(admin, theme, shrunk).wheel_problem

    shrunk.wheel_on = False
    assert wd.save_design(admin, theme, shrunk).switched == "off"
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is False
    assert len(events("theme_activity.wheel_off")) == 1


def test_the_wheel_is_not_turned_on_while_the_activity_is_paused(admin, make, bank, theme):
    theme.status = "paused"
    db.session.commit()
    design = wd.read_wheel(theme)
    design.wheel_on = True

    assert "paused" in refused(admin, theme, design).wheel_problem

    design.wheel_on = False
    row_of(design, pool(theme)["100积分"]).weight = 99
    wd.save_design(admin, theme, design)  # the design itself may change while paused
    assert pool(theme)["100积分"].weight == 99


def test_no_new_coupon_activity_goes_on_a_wheel_that_is_on(admin, make, theme):
    on_it = make.coupon_activity(theme=theme)
    off_it = make.coupon_activity(theme=theme)
    new = make.coupon_activity(theme=theme)
    design, _ = wd.add_row(theme, wd.read_wheel(theme), f"coupon-{on_it.id}")
    design.wheel_on = True
    wd.save_design(admin, theme, design)
    make.prize(theme, kind="coupon", coupon_activity_id=off_it.id, per_member_cap=1, stock=5, enabled=False,
               name="券2", sort_order=40)

    design = wd.read_wheel(theme)
    choices = {c.key: c for c in wd.row_choices(theme, design)}
    assert "The wheel is on" in choices[f"coupon-{new.id}"].refusal
    assert "The wheel is on" in choices[key(pool(theme)["券2"])].refusal
    assert choices[key(pool(theme)["保温杯"])].refusal is None  # not a coupon: it may come back

    design.rows.append(wd.DesignRow(f"coupon-{new.id}", 5, "#123456", 10))
    assert "coupon_activity_id" in checked_row(refused(admin, theme, design), f"coupon-{new.id}").errors
    design.wheel_on = False  # not even by the save that turns it off
    assert refused(admin, theme, design)

    design = wd.read_wheel(theme)
    coupon_row = next(r for r in design.rows if r.key == key(pool(theme)[on_it.name]))
    coupon_row.colour, coupon_row.weight = "#8e24aa", 77  # what is on it may still be edited
    wd.save_design(admin, theme, design)
    assert (pool(theme)[on_it.name].colour, pool(theme)[on_it.name].weight) == ("#8e24aa", 77)


def test_the_prize_pool_keeps_the_same_rules_while_the_wheel_is_on(admin, make, bank):
    theme = make.wheel_theme(bank)
    kept = make.prize(theme, name="一等奖", sort_order=1, stock=3)
    coupon = make.coupon_activity(theme=theme)

    errors = prizes.problems(theme, prizes.PrizeDetails(name="券", kind="coupon", coupon_activity_id=coupon.id,
                                                        stock_total=5, per_member_cap=1, weight=10, sort_order=3,
                                                        colour="#123456", enabled=True))
    assert "The wheel is on" in errors["coupon_activity_id"]
    off = replace(prizes.PrizeDetails.of(kept), enabled=False)
    assert "at least 2" in prizes.problems(theme, off, kept)["enabled"]


# --- view-only, one transaction, the lock, tenancy -----------------------------------------------------------


def test_an_expired_activitys_wheel_is_view_only(admin, make, bank):
    now = utcnow()
    theme = make.theme_activity(bank, start_at=now - timedelta(days=5), end_at=now - timedelta(days=1))
    make.prize(theme, kind="thanks", name="谢谢参与", sort_order=2)
    make.prize(theme, name="一等奖", sort_order=1, stock=3)
    design = wd.read_wheel(theme)
    design.rows[0].weight = 50

    checked = refused(admin, theme, design)

    assert checked.problems == ["The activity is over: its wheel can no longer change."]
    assert pool(theme)["一等奖"].weight == 10 and events() == []


def test_a_design_is_saved_in_one_transaction(admin, theme, monkeypatch):
    p = pool(theme)
    design = wd.read_wheel(theme)
    row_of(design, p["100积分"]).weight = 1
    design.wheel_on = True

    def broken_switch(actor, theme, wheel_on):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(wd, "_switch", broken_switch)
    with pytest.raises(RuntimeError):
        wd.save_design(admin, theme, design)
    db.session.rollback()

    assert pool(theme)["100积分"].weight == 30 and events() == []
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is False


def test_concurrent_saves_queue_on_the_theme_row(admin, make, bank, wide_app):  # noqa: F811 (fixture)
    """Two operators each add a coupon activity to a pool with room for one more prize: one wins."""
    theme = make.theme_activity(bank)
    make.prize(theme, kind="thanks", name="谢谢参与", sort_order=99)
    for n in range(10):
        make.prize(theme, name=f"奖{n}", sort_order=n + 1, stock=1)
    coupons = [make.coupon_activity(theme=theme) for _ in range(2)]
    theme_id, admin_id = theme.id, admin.id

    def save(coupon_id: int):
        with force_locale("en"):  # the thread's messages in English, as the test's
            theme = db.session.get(ThemeActivity, theme_id)
            design = wd.read_wheel(theme)
            design.rows.append(wd.DesignRow(f"coupon-{coupon_id}", 12, "#123456", 10))
            try:
                wd.save_design(db.session.get(Operator, admin_id), theme, design)
                return "saved"
            except wd.InvalidDesign as exc:
                return exc.checked.problems[0]

    results = [outcome for _, outcome in run_at_once(wide_app, [[(c.id,)] for c in coupons], save)]

    assert sorted(results, key=lambda r: r != "saved")[0] == "saved" and results.count("saved") == 1
    assert "at most 12 prizes" in next(r for r in results if r != "saved")
    count = db.session.execute(select(func.count()).select_from(Prize).where(Prize.theme_activity_id == theme_id))
    assert count.scalar_one() == 12


def test_another_banks_wheel_is_404(client, auth, make, bank, admin):
    other = make.theme_activity(make.org(kind="bank"))
    make.prize(other, kind="thanks", sort_order=1)
    make.prize(other, sort_order=2, stock=1)
    auth.login(admin.username)
    token = csrf_from(client.get("/dashboard"))
    form = {"csrf_token": token, "wheel_on": "y"}

    assert client.get(f"/activities/{other.id}/wheel").status_code == 404
    assert client.post(f"/activities/{other.id}/wheel/preview", data=form).status_code == 404
    assert client.post(f"/activities/{other.id}/wheel", data=form).status_code == 404
    assert db.session.get(ThemeActivity, other.id, populate_existing=True).wheel_enabled is False
