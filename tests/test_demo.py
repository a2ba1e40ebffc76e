"""`flask demo seed` on PostgreSQL: the coupon line's demo data (app/coupons/demo.py), seeded twice
without duplicates, with counters that match the issues, and a demo bank that can call the API
(`flask coupons demo-issue`) with the private key the seed wrote; the theme activity's wheel, prizes
and last week of visits and draws (app/activities/demo.py). And the whole seed on the embedded
default's SQLite, twice, in child processes as `make run` runs it."""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from contextlib import closing
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.activities import demo as wheel_demo
from app.activities import records, statistics
from app.activities.fulfilment import FULFIL_KIND
from app.activities.models import ThemeActivity, ThemeActivityBank, ThemeActivityInstitution
from app.activities.prize_models import (CashEntry, PointsEntry, Prize, PrizeDelivery, PrizeMemberCount, ThemeDraw,
                                         ThemeParticipant, ThemeVisit)
from app.auth.models import Operator
from app.core import audit, crypto
from app.core.audit import AuditEvent
from app.core.outbox import OutboxMessage
from app.core.timeutil import business_today, utcnow
from app.coupons import demo
from app.coupons.models import (BankApiClient, CouponActivity, CouponIssue, CouponMemberCount, Institution,
                                PartnerBank, PositionNumber, TunnelAccount)
from app.coupons.settings import key_matches
from app.extensions import db
from app.orgs.models import Organisation
from app.sandbox.wechatpay_models import SandboxWxpayStock
from app.sandbox.yunshuhui_models import SandboxYshActivity, SandboxYshCustomer, SandboxYshMerchant
from tests.conftest import REPO
from tests.coupons.ysh_sandbox import ysh_live_site  # noqa: F401 (fixture)

COUNTED = (PartnerBank, Institution, PositionNumber, TunnelAccount, BankApiClient, ThemeActivity,
           ThemeActivityInstitution, ThemeActivityBank, CouponActivity, CouponIssue, CouponMemberCount, OutboxMessage,
           SandboxYshMerchant, SandboxYshActivity, SandboxWxpayStock, AuditEvent, Prize, ThemeParticipant, ThemeDraw,
           ThemeVisit, PrizeMemberCount, PrizeDelivery, PointsEntry, CashEntry, SandboxYshCustomer)


def seed(app, key_file) -> str:
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--members-per-org", "3",
                                                "--bank-key-file", str(key_file)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    db.session.expire_all()
    return result.output


def counts() -> dict[str, int]:
    counted = {model.__tablename__: db.session.execute(select(func.count()).select_from(model)).scalar_one()
               for model in COUNTED}
    counted["page views"] = db.session.execute(select(func.sum(ThemeVisit.views))).scalar_one()
    counted["prize stock left"] = db.session.execute(select(func.sum(Prize.stock_remaining))).scalar_one()
    return counted


def draws_of(theme) -> list[tuple]:
    return db.session.execute(select(ThemeDraw.id, ThemeDraw.draw_no, ThemeDraw.prize_id, ThemeDraw.fulfilment_status)
                              .where(ThemeDraw.theme_activity_id == theme.id).order_by(ThemeDraw.id)).all()


@pytest.fixture
def seeded(app, tmp_path):
    key_file = tmp_path / "demo-bank-client.pem"
    output = seed(app, key_file)
    bank = db.session.execute(select(Organisation).where(Organisation.code == demo.DEMO_BANK)).scalar_one()
    return bank, key_file, output


def test_the_seed_runs_twice_without_duplicates(app, seeded):
    bank, key_file, _output = seeded
    first, key = counts(), key_file.read_text()
    theme = db.session.execute(select(ThemeActivity).where(ThemeActivity.org_id == bank.id)).scalar_one()
    draws = draws_of(theme)
    seed(app, key_file)
    assert counts() == first
    assert key_file.read_text() == key  # the key still matches its client: kept
    assert draws_of(theme) == draws  # the wheel's week as it was: the same draws, prizes and fulfilment
    assert audit.verify_chain().ok


def test_master_data_tunnels_and_the_api_client(app, seeded):
    bank, key_file, output = seeded
    partners = {p.code: p for p in db.session.execute(select(PartnerBank)).scalars()}
    assert set(partners) == {"31000001", "31000002"} and partners["31000001"].org_id == bank.id
    assert db.session.execute(select(func.count()).select_from(Institution)).scalar_one() == 2
    assert all(len(p.number) == 23 for p in db.session.execute(select(PositionNumber)).scalars())

    accounts = {a.tunnel: a for a in db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == bank.id))
                .scalars()}
    site = app.config["PUBLIC_BASE_URL"]
    assert accounts["yunshuhui"].base_url == f"{site}/sandbox/yunshuhui" and accounts["yunshuhui"].notify_cert
    assert accounts["direct"].base_url == f"{site}/sandbox/wechatpay"

    client = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == bank.id)).scalar_one()
    assert key_matches(key_file.read_text(), client.client_cert)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert client.app_id in output


def test_a_lost_key_file_gets_a_new_key_pair(app, seeded):
    bank, key_file, _output = seeded
    key_file.unlink()
    seed(app, key_file)
    client = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == bank.id)).scalar_one()
    assert key_matches(key_file.read_text(), client.client_cert)


def test_activities_in_a_theme_one_ended_and_the_direct_one_on_its_stock(seeded):
    bank, _key_file, _output = seeded
    theme = db.session.execute(select(ThemeActivity).where(ThemeActivity.org_id == bank.id)).scalar_one()
    activities = list(db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)).scalars())
    assert len(activities) == len(demo.ACTIVITIES)
    assert {a.channel for a in activities} == {"wechat", "alipay", "unionpay"}
    assert sorted(a.status for a in activities) == ["ended", "running", "running", "running"]
    assert all(a.theme_activity_id == theme.id and theme.theme_no in a.code for a in activities)
    direct = next(a for a in activities if a.tunnel == "direct")
    stock = db.session.execute(select(SandboxWxpayStock).where(SandboxWxpayStock.stock_id == direct.promotion_id)
                               ).scalar_one()
    assert stock.coupon_amount_fen == direct.promo_amount_fen


def test_issues_spread_over_sixty_days_with_counters_that_match(seeded):
    bank, _key_file, _output = seeded
    everything = list(db.session.execute(select(CouponIssue).where(CouponIssue.org_id == bank.id)).scalars())
    issues = [i for i in everything if not i.call_trade_no.startswith("DRAW")]  # the wheel's coupons: see below
    assert 45 <= len(issues) <= 55
    assert {i.status for i in issues} == {"queued", "succeeded", "failed"}
    assert {i.redemption_status for i in issues} == {None, "used", "expired"}
    now = utcnow()
    used = sorted(i.used_at for i in issues if i.redemption_status == "used")
    assert used[0] < now - timedelta(days=30) and used[-1] > now - timedelta(days=10) and used[-1] < now
    assert all(now - timedelta(days=70) < i.created_at < now for i in issues)
    for issue in issues:
        assert issue.activity.start_at <= issue.created_at < issue.activity.end_at
        if issue.used_at:
            assert issue.created_at <= issue.used_at
    for activity in db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)).scalars():
        assert demo.counters_match(activity), activity.name
    queued = [i for i in issues if i.status == "queued"]
    assert len(queued) == demo.LIVE_ISSUES
    messages = db.session.execute(select(OutboxMessage.payload).where(OutboxMessage.kind == "coupons.issue")).scalars()
    assert {m["issue_id"] for m in messages} == {i.id for i in everything if i.status == "queued"}


def test_counters_match_notices_a_count_out_of_step(seeded):
    bank, _key_file, _output = seeded
    activity = db.session.execute(select(CouponActivity).where(CouponActivity.org_id == bank.id)
                                  .order_by(CouponActivity.id)).scalars().first()
    activity.issued_count += 1
    assert not demo.counters_match(activity)


def test_demo_issue_signs_and_sends_an_issue_request(app, seeded, ysh_live_site):  # noqa: F811
    bank, key_file, _output = seeded
    result = app.test_cli_runner().invoke(args=["coupons", "demo-issue", "--key-file", str(key_file),
                                                "--base-url", ysh_live_site, "--call-trade-no", "CLI-TRY-1"])
    assert result.exit_code == 0, result.output
    assert "HTTP 202" in result.output and "signature verifies" in result.output
    db.session.expire_all()
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.call_trade_no == "CLI-TRY-1")).scalar_one()
    assert (issue.org_id, issue.status) == (bank.id, "queued")
    assert issue.post_notify == f"{app.config['PUBLIC_BASE_URL']}/sandbox/bank/notify/issued"


# --- the theme activity's wheel and its last week (app/activities/demo.py) -----------------------------

def demo_theme(bank) -> ThemeActivity:
    return db.session.execute(select(ThemeActivity).where(ThemeActivity.org_id == bank.id)).scalar_one()


def demo_operator() -> Operator:
    return db.session.execute(select(Operator).where(Operator.username == wheel_demo.OPERATOR)).scalar_one()


def draws_with_prizes(theme) -> list[tuple[ThemeDraw, Prize, str]]:
    return [tuple(row) for row in db.session.execute(
        select(ThemeDraw, Prize, ThemeParticipant.openid_hash).join(Prize, Prize.id == ThemeDraw.prize_id)
        .join(ThemeParticipant, ThemeParticipant.id == ThemeDraw.participant_id)
        .where(ThemeDraw.theme_activity_id == theme.id).order_by(ThemeDraw.drawn_at, ThemeDraw.id)).all()]


def test_the_wheel_is_on_with_a_prize_of_every_kind_set_up_by_the_banks_operator(seeded):
    bank, _key_file, output = seeded
    theme, operator = demo_theme(bank), demo_operator()
    pool = list(db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)
                                   .order_by(Prize.sort_order)).scalars())
    assert theme.wheel_enabled and f"/h5/activities/{theme.theme_no}" in output
    assert 5 <= len(pool) <= 6 and all(p.enabled for p in pool)
    assert {p.kind for p in pool} == {"coupon", "points", "cash", "gift", "thanks"}
    assert [p.sort_order for p in pool] == list(range(1, len(pool) + 1))  # as the designer numbers a wheel
    assert len({p.colour for p in pool}) == len(pool) and all(re.fullmatch(r"#[0-9a-f]{6}", p.colour) for p in pool)
    assert {p.created_by for p in pool} == {operator.id}
    [coupon] = [p for p in pool if p.kind == "coupon"]
    activity = db.session.get(CouponActivity, coupon.coupon_activity_id)
    assert activity.theme_activity_id == theme.id and activity.status == "running"
    assert coupon.per_member_cap <= activity.per_member_limit
    events = db.session.execute(select(AuditEvent.action, AuditEvent.object_id).where(
        AuditEvent.action.in_(("theme_prize.create", "theme_activity.wheel_on")))).all()
    assert sorted(events) == sorted([("theme_prize.create", str(p.id)) for p in pool]
                                    + [("theme_activity.wheel_on", str(theme.id))])


def test_a_week_of_visits_and_draws_by_the_sandbox_customers_within_the_limits(seeded):
    bank, _key_file, _output = seeded
    theme = demo_theme(bank)
    today = business_today()
    week = (today - timedelta(days=wheel_demo.HISTORY_DAYS), today - timedelta(days=1))
    customers = {crypto.lookup_hash(o) for o in db.session.execute(select(SandboxYshCustomer.openid)).scalars()}
    assert len(customers) == len(wheel_demo.CUSTOMERS)

    visits = db.session.execute(select(ThemeVisit).where(ThemeVisit.theme_activity_id == theme.id)).scalars().all()
    assert {v.openid_hash for v in visits} == customers
    assert all(week[0] <= v.visit_day <= week[1] for v in visits)  # today's draw is left to the person trying
    assert sum(v.views for v in visits) > len(visits)

    draws = draws_with_prizes(theme)
    assert 30 <= len(draws) <= 45
    assert len({d.drawn_day for d, _p, _h in draws}) >= 5  # spread over the week
    visited = {(v.openid_hash, v.visit_day) for v in visits}
    assert all((h, d.drawn_day) in visited for d, _p, h in draws)  # a spin follows a view of the page
    assert all(d.channel == "h5" and theme.start_at <= d.drawn_at < utcnow() for d, _p, _h in draws)
    assert max(Counter((h, d.drawn_day) for d, _p, h in draws).values()) <= theme.daily_limit
    assert max(Counter(h for _d, _p, h in draws).values()) <= theme.participation_limit
    assert {d.won for d, _p, _h in draws} == {True, False}


def test_every_win_is_fulfilled_through_the_outbox(seeded):
    bank, _key_file, _output = seeded
    theme = demo_theme(bank)
    draws = draws_with_prizes(theme)
    won = {kind: [(d, p) for d, p, _h in draws if p.kind == kind]
           for kind in ("coupon", "points", "cash", "gift", "thanks")}
    assert all(won.values()), {kind: len(rows) for kind, rows in won.items()}  # the seeded RNG gives every kind
    assert all(d.fulfilment_status == "none" and not d.won for d, _p in won["thanks"])
    assert all(d.fulfilment_status == "fulfilled" and d.fulfilled_at for d, _p in won["points"] + won["cash"]
               + won["coupon"])
    assert sum(db.session.execute(select(PointsEntry.points)).scalars()) == sum(p.points for _d, p in won["points"])
    assert sum(db.session.execute(select(CashEntry.amount_fen)).scalars()) == sum(p.cash_fen for _d, p in won["cash"])

    issues = {i.id: i for i in db.session.execute(select(CouponIssue).where(
        CouponIssue.call_trade_no.startswith("DRAW"))).scalars()}
    assert sorted(d.coupon_issue_id for d, _p in won["coupon"]) == sorted(issues)
    for d, p in won["coupon"]:
        issue = issues[d.coupon_issue_id]  # queued for the workers, who issue it through the 云数汇 sandbox
        assert (issue.call_trade_no, issue.status, issue.coupon_activity_id) == (f"DRAW{d.draw_no}", "queued",
                                                                                 p.coupon_activity_id)
    handed_over = db.session.execute(select(OutboxMessage.status).where(OutboxMessage.kind == FULFIL_KIND)).scalars()
    assert sorted(handed_over) == ["delivered"] * sum(1 for d, _p, _h in draws if d.won)

    awarded = Counter(p.id for d, p, _h in draws if d.won)
    for prize in db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)).scalars():
        if not prize.is_fallback:
            assert prize.stock_remaining == prize.stock_total - awarded[prize.id], prize.name


def test_two_gift_winners_left_an_address_and_one_gift_is_shipped(seeded):
    bank, _key_file, _output = seeded
    theme, operator = demo_theme(bank), demo_operator()
    gifts = [d for d, p, _h in draws_with_prizes(theme) if p.kind == "gift"]
    assert len(gifts) >= 3  # one of each gift tab at least
    assert Counter(d.fulfilment_status for d in gifts) == {"shipped": 1, "address_given": 1,
                                                           "awaiting_address": len(gifts) - 2}
    assert records.tab_counts(operator, theme) == {"awaiting": len(gifts) - 2, "to_ship": 1, "shipped": 1}
    deliveries = db.session.execute(select(PrizeDelivery).order_by(PrizeDelivery.id)).scalars().all()
    assert len(deliveries) == 2
    shipped = next(d for d in deliveries if d.status == "shipped")
    assert (shipped.tracking_no, shipped.shipped_by) == (wheel_demo.TRACKING_NO, operator.id)
    for delivery in deliveries:
        assert crypto.decrypt(delivery.recipient_enc) in wheel_demo.CUSTOMERS
        assert re.fullmatch(r"1\d{10}", crypto.decrypt(delivery.phone_enc))
    assert db.session.execute(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "prize_delivery.ship")).scalar_one() == 1


def test_the_statistics_of_the_demo_activity_show_the_week(seeded):
    bank, _key_file, _output = seeded
    theme = demo_theme(bank)
    first, last = statistics.day_range(theme, None, None, business_today())  # the page's default range
    shown = statistics.activity_statistics(theme, first, last)
    figures, draws = shown.figures, draws_with_prizes(theme)
    assert figures.visitors == len(wheel_demo.CUSTOMERS)
    assert figures.views == db.session.execute(select(func.sum(ThemeVisit.views))).scalar_one()
    assert figures.draws == len(draws) and 0 < figures.wins < figures.draws
    assert 0 < figures.winners <= figures.participants <= figures.visitors
    assert sum(day.draws for day in shown.days) == figures.draws
    assert sum(1 for day in shown.days if day.visitors) >= 5
    assert sum(p.awarded for p in shown.prizes) == figures.draws


def test_the_seed_runs_twice_on_the_embedded_default(tmp_path):
    """As `make run` seeds it: SQLite, no Redis (fakeredis), in child processes."""
    database = tmp_path / "hub.db"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "EMBEDDED_WORKERS")}
    env.update(DATABASE_URL=f"sqlite:///{database}", REDIS_URL="", UPLOAD_FOLDER=str(tmp_path / "uploads"),
               PYTHONPATH=REPO)
    flask = [os.path.join(os.path.dirname(sys.executable), "flask"), "--app", "wsgi"]
    seed_args = ["demo", "seed", "--members-per-org", "2", "--bank-key-file", str(tmp_path / "key.pem")]

    def run(*args: str) -> str:
        done = subprocess.run([*flask, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def tally() -> tuple:
        with closing(sqlite3.connect(database)) as connection:
            return connection.execute(
                "SELECT (SELECT count(*) FROM theme_prizes), (SELECT count(*) FROM theme_draws),"
                " (SELECT sum(views) FROM theme_visits), (SELECT count(*) FROM prize_deliveries),"
                " (SELECT count(*) FROM theme_draws WHERE fulfilment_status = 'shipped'),"
                " (SELECT count(*) FROM theme_draws WHERE fulfilment_status = 'pending'),"
                " (SELECT wheel_enabled FROM theme_activities), (SELECT count(*) FROM coupon_issues),"
                " (SELECT count(*) FROM outbox_messages), (SELECT count(*) FROM audit_events)").fetchone()

    run("db", "upgrade")
    assert "wheel on" in run(*seed_args)
    first = tally()
    prizes, draws, views, deliveries, shipped, pending, wheel_on = first[:7]
    assert 5 <= prizes <= 6 and 30 <= draws <= 45 and views > 30
    assert (deliveries, shipped, pending, wheel_on) == (2, 1, 0, 1)
    run(*seed_args)
    assert tally() == first
