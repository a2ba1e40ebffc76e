"""The lifecycle of theme activities (app.activities.lifecycle): pause and enable, one or many;
expiry by the cron job; and what each does to the linked coupon activities."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.activities import lifecycle
from app.activities.models import ThemeActivity
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.extensions import db
from jobs.activities import expire_theme_activities


def events(action: str, object_type: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action == action)
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    return list(db.session.execute(stmt.order_by(AuditEvent.id)).scalars())


def fresh(row):
    db.session.expire_all()
    return db.session.get(type(row), row.id)


def test_batch_pause_changes_only_active_rows(world, make):
    active = make.theme_activity(world.bank)
    paused = make.theme_activity(world.bank, status="paused")
    ended = make.theme_activity(world.bank, start_at=utcnow() - timedelta(days=2), end_at=utcnow() - timedelta(days=1))
    foreign = make.theme_activity(world.other_bank)
    result = lifecycle.switch(world.admin, [active.id, paused.id, ended.id, foreign.id], "paused")
    assert [t.id for t in result.changed] == [active.id]
    assert sorted(t.id for t in result.skipped) == sorted([paused.id, ended.id])  # the foreign one is not seen
    assert fresh(active).status == "paused" and fresh(paused).status == "paused"
    assert fresh(ended).status == "active"  # the expiry job writes "expired", not a pause
    assert fresh(foreign).status == "active"
    event, = events("theme_activity.pause")
    assert event.object_id == str(active.id) and event.before == {"status": "active"}
    assert event.org_id == world.bank.id and fresh(active).updated_by == world.admin.id


def test_enable_changes_only_paused_rows(world, make):
    active = make.theme_activity(world.bank)
    paused = make.theme_activity(world.bank, status="paused")
    result = lifecycle.switch(world.admin, [active.id, paused.id], "active")
    assert [t.id for t in result.changed] == [paused.id] and [t.id for t in result.skipped] == [active.id]
    assert fresh(paused).status == "active"
    assert len(events("theme_activity.enable")) == 1


def test_pausing_disables_the_coupon_activities_and_enabling_restores_exactly_those(world, make):
    theme = make.theme_activity(world.bank)
    running = make.coupon_activity(theme=theme)
    disabled_before = make.coupon_activity(theme=theme, enabled=False)
    ended = make.coupon_activity(theme=theme, start_at=utcnow() - timedelta(days=2), end_at=utcnow() - timedelta(days=1))
    other_theme = make.coupon_activity(theme=make.theme_activity(world.bank))

    lifecycle.switch(world.admin, [theme.id], "paused")
    assert not fresh(running).enabled and not fresh(disabled_before).enabled
    assert fresh(ended).enabled and fresh(other_theme).enabled  # over, or not this theme's: untouched
    assert fresh(theme).paused_coupon_ids == [running.id]
    disabled, = events("coupon_activity.disable", "coupon_activity")
    assert disabled.object_id == str(running.id) and disabled.after["theme_activity"] == theme.theme_no
    assert events("theme_activity.pause")[0].after["coupon_activities_disabled"] == [running.code]

    lifecycle.switch(world.admin, [theme.id], "active")
    assert fresh(running).enabled
    assert not fresh(disabled_before).enabled  # an operator disabled it before the pause: it stays so
    assert fresh(theme).paused_coupon_ids == []
    enabled, = events("coupon_activity.enable", "coupon_activity")
    assert enabled.object_id == str(running.id)


def test_a_coupon_activity_of_a_paused_theme_cannot_be_enabled_by_hand(world, make):
    from app.coupons import activities as coupon_activities

    theme = make.theme_activity(world.bank)
    coupon = make.coupon_activity(theme=theme)
    lifecycle.switch(world.admin, [theme.id], "paused")
    result = coupon_activities.set_enabled(world.admin, [coupon.id], True)
    assert [a.id for a in result.theme_paused] == [coupon.id] and not result.changed
    assert not fresh(coupon).enabled
    assert coupon_activities.set_enabled(world.admin, [coupon.id], False).unchanged  # disabling is still fine


def test_enabling_skips_a_coupon_activity_that_ended_during_the_pause(world, make):
    theme = make.theme_activity(world.bank)
    coupon = make.coupon_activity(theme=theme)
    lifecycle.switch(world.admin, [theme.id], "paused")
    coupon = fresh(coupon)
    coupon.terminated_at = utcnow()
    db.session.commit()
    lifecycle.switch(world.admin, [theme.id], "active")
    assert not fresh(coupon).enabled and events("coupon_activity.enable") == []


def test_an_operator_cannot_pause_another_banks_theme(world, make):
    theme = make.theme_activity(world.other_bank)
    assert lifecycle.switch(world.admin, [theme.id], "paused").changed == []
    assert fresh(theme).status == "active"


def test_the_expiry_job_expires_ended_themes_and_ends_their_coupon_activities(world, make):
    now = utcnow()
    over = make.theme_activity(world.bank, start_at=now - timedelta(days=3), end_at=now - timedelta(minutes=1))
    paused_over = make.theme_activity(world.bank, status="paused", start_at=now - timedelta(days=3),
                                      end_at=now - timedelta(minutes=1), paused_coupon_ids=[])
    running = make.theme_activity(world.bank)
    still_open = make.coupon_activity(theme=over, start_at=now - timedelta(days=2), end_at=now + timedelta(days=1))
    ended_by_time = make.coupon_activity(theme=over, start_at=now - timedelta(days=2), end_at=now - timedelta(days=1))
    of_running = make.coupon_activity(theme=running)

    result = expire_theme_activities()
    assert result["expired"] == 2 and sorted(result["theme_nos"]) == sorted([over.theme_no, paused_over.theme_no])
    assert fresh(over).status == "expired" and fresh(paused_over).status == "expired"
    assert fresh(running).status == "active"
    assert fresh(still_open).terminated_at is not None
    assert fresh(ended_by_time).terminated_at is None and fresh(of_running).terminated_at is None
    ended, = events("coupon_activity.terminate")
    assert ended.object_id == str(still_open.id) and ended.actor_name == "system"
    assert ended.after["reason"] == "theme expired"
    expired = events("theme_activity.expire")
    assert len(expired) == 2 and all(e.actor_id is None for e in expired)

    # Run again (or late): nothing happens twice.
    assert expire_theme_activities()["expired"] == 0
    assert len(events("theme_activity.expire")) == 2


def test_an_expired_theme_can_be_neither_paused_nor_enabled(world, make):
    theme = make.theme_activity(world.bank, status="expired", start_at=utcnow() - timedelta(days=3),
                                end_at=utcnow() - timedelta(days=1))
    assert lifecycle.switch(world.admin, [theme.id], "paused").changed == []
    assert lifecycle.switch(world.admin, [theme.id], "active").changed == []
    assert db.session.execute(select(ThemeActivity.status)).scalar_one() == "expired"


def test_the_cron_schedule_runs_the_expiry_job_every_minute():
    from rq.cron import CronScheduler

    from app.extensions import get_redis

    scheduler = CronScheduler(connection=get_redis())
    scheduler.load_config_from_file("jobs.cron")
    jobs = {job.name: job for job in scheduler.get_jobs()}
    assert jobs["expire_theme_activities"].cron == "* * * * *"
    assert jobs["expire_theme_activities"].func is expire_theme_activities
    assert jobs["purge_pending_backgrounds"].cron == "40 3 * * *"
