"""The H5 game page of a theme activity, as a bank's customer uses it (Flask test client, PostgreSQL):
identified through 云数汇's OpenID hand-off (the sandbox) into the signed session, never by an
`?openid=` in a URL; the page's states; spins through the JSON endpoint (a win, the fallback, an
idempotent retry, refusals); a gift's delivery address; visits counted; banks kept apart."""
from __future__ import annotations

import gc
import itertools
import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from html import unescape
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event, func, select

from app.activities import backgrounds, game, h5, prizes, visits, wheel_drawing
from app.activities import draw as engine
from app.activities.prize_models import Prize, PrizeDelivery, ThemeDraw, ThemeParticipant, ThemeVisit
from app.core import crypto, outbox
from app.core.timeutil import business_today, format_local, utcnow
from app.coupons.issuance import tunnel_account
from app.coupons.models import BankApiClient, CouponActivity, PartnerBank
from app.extensions import db
from tests.activities.conftest import PNG, pending_image
from tests.coupons.ysh_sandbox import connect_ysh_account
from tests.helpers import csrf_from

_codes = itertools.count(62_000_001)


class First:
    """The engine's pick always lands on the first candidate by order."""

    def randrange(self, stop: int) -> int:
        return 0


class Last:
    """The engine's pick always lands on the last candidate by order (the fallback, ordered last here)."""

    def randrange(self, stop: int) -> int:
        return stop - 1


@dataclass
class Bank:
    org: object
    partner: PartnerBank


def make_bank(make, name: str = "华东银行", with_yunshuhui: bool = True, site: str | None = None) -> Bank:
    """A bank organisation with its master-data row and (by default) a 云数汇 account on the sandbox
    (in-process, or on `site`). No API client: our own page needs no bank allow-list."""
    org = make.org(kind="bank", name=name)
    partner = PartnerBank(code=f"{next(_codes):08d}", name=name, kind="commercial", org_id=org.id, status="normal")
    db.session.add(partner)
    db.session.commit()
    if with_yunshuhui:
        connect_ysh_account(org, **({"site": site} if site else {}))
    return Bank(org, partner)


@pytest.fixture
def bank(make) -> Bank:
    return make_bank(make)


def wheel_theme(make, bank: Bank, **values):
    """A running theme activity of the bank with its wheel on: 100 points (first), a gift, and the
    "thanks for taking part" fallback ordered last."""
    values = {"participation_limit": 5, "daily_limit": 2, "rules": "1. 每人每天可抽奖两次\n2. 奖品以实际到账为准",
              "partner_bank_id": bank.partner.id, **values}
    theme = make.wheel_theme(bank.org, thanks_order=99, **values)
    make.prize(theme, kind="points", name="幸运积分", points=100, stock=10, weight=50, sort_order=1)
    make.prize(theme, kind="gift", name="保温杯", stock=10, weight=50, sort_order=2)
    return theme


@pytest.fixture
def theme(make, bank):
    return wheel_theme(make, bank)


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def page_url(theme) -> str:
    return f"/h5/activities/{theme.theme_no}"


@dataclass
class HandOff:
    to_yunshuhui: str  # where the page sent the browser
    callback: str  # where 云数汇 sent it back (with the openid)
    landing: str  # where our callback sent it
    openid: str


def sign_in(client, theme, nickname: str = "小王", path: str | None = None) -> HandOff:
    """Open the page, say who you are on the 云数汇 sandbox's OpenID page, come back."""
    start = client.get(path or page_url(theme))
    assert start.status_code == 302, start.get_data(as_text=True)[:300]
    to_ysh = urlsplit(start.headers["Location"])
    assert to_ysh.path.startswith("/sandbox/yunshuhui/openid/")
    wmcb = parse_qs(to_ysh.query)["wmcb"][0]
    ysh_page = client.get(local(start.headers["Location"]))
    assert ysh_page.status_code == 200
    chosen = client.post(to_ysh.path, data={"wmcb": wmcb, "nickname": nickname, "csrf_token": csrf_from(ysh_page)})
    assert chosen.status_code == 302
    callback = chosen.headers["Location"]
    back = client.get(local(callback))
    assert back.status_code == 302, back.get_data(as_text=True)[:300]
    return HandOff(start.headers["Location"], callback, back.headers["Location"],
                   parse_qs(urlsplit(callback).query)["openid"][0])


def session_openids(client) -> dict:
    with client.session_transaction() as session:
        return dict(session.get(h5.SESSION_OPENIDS) or {})


class Page:
    """What the customer's page holds."""

    def __init__(self, response):
        self.status = response.status_code
        self.html = response.get_data(as_text=True)
        spin = re.search(r'<button class="spin"[^>]*data-state="([A-Z_]+)"([^>]*)>\s*([^<]*)</button>', self.html, re.S)
        self.spin_state = spin.group(1) if spin else None
        self.spin_disabled = bool(spin and "disabled" in spin.group(2))
        reason = re.search(r'data-testid="spin-reason"[^>]*>([^<]*)</p>', self.html)
        self.reason = unescape(reason.group(1)).strip() if reason else None
        self.reason_hidden = bool(re.search(r'data-testid="spin-reason"[^>]*\bhidden\b', self.html))
        csrf = re.search(r'data-csrf="([^"]+)"', self.html)
        self.csrf = csrf.group(1) if csrf else None

    def left(self, which: str) -> int | None:
        found = re.search(rf'data-testid="left-{which}">(\d+)</b>', self.html)
        return int(found.group(1)) if found else None

    def prize_states(self) -> dict[str, str]:
        return dict(re.findall(r'data-testid="prize-(D\w+)" data-state="(\w+)"', self.html))


def said(app, fn, *args) -> str:
    """Words as the customer's page says them (in Chinese, the page's language)."""
    from flask_babel import force_locale

    with app.test_request_context("/h5/activities/x"), force_locale("zh_CN"):
        return str(fn(*args))


def spin(client, theme, key: str = "spin-1", csrf: str | None = "page"):
    if csrf == "page":
        csrf = Page(client.get(page_url(theme))).csrf
    headers = {"X-CSRFToken": csrf} if csrf else {}
    return client.post(f"{page_url(theme)}/draws", json={"key": key}, headers=headers)


def draws() -> list[ThemeDraw]:
    db.session.expire_all()
    return list(db.session.execute(select(ThemeDraw).order_by(ThemeDraw.id)).scalars())


# --- who the customer is ------------------------------------------------------------------------------


def test_the_hand_off_ends_with_the_openid_in_the_session_and_none_in_the_url(app, client, bank, theme):
    done = sign_in(client, theme)

    public = app.config["PUBLIC_BASE_URL"]
    wmcb = parse_qs(urlsplit(done.to_yunshuhui).query)["wmcb"][0]
    assert urlsplit(done.to_yunshuhui).path == f"/sandbox/yunshuhui/openid/{tunnel_account(bank.org.id, 'yunshuhui').member_id}"
    assert wmcb.startswith(f"{public}/h5/activities/openid/callback?state=")  # our own H5 callback
    assert done.landing == f"{public}{page_url(theme)}"  # back to the page, without the openid
    assert "openid" not in done.landing and done.openid.startswith("oYSH")
    assert session_openids(client) == {str(bank.org.id): done.openid}
    assert db.session.execute(select(func.count()).select_from(BankApiClient)).scalar_one() == 0  # no allow-list

    shown = client.get(page_url(theme))
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    assert theme.name in shown.get_data(as_text=True) and Page(shown).spin_state == "READY"


def test_the_callback_is_on_the_host_the_customer_opened_when_it_is_ours(app, client, bank, theme, monkeypatch):
    monkeypatch.setitem(app.config, "H5_BASE_URL", "https://h5.marketing.example/")
    on_h5_host = client.get(page_url(theme), base_url="https://h5.marketing.example")
    elsewhere = client.get(page_url(theme), base_url="https://intruder.example")

    for response in (on_h5_host, elsewhere):  # a host that is not ours falls back to our H5 host
        wmcb = parse_qs(urlsplit(response.headers["Location"]).query)["wmcb"][0]
        assert wmcb.startswith("https://h5.marketing.example/h5/activities/openid/callback?state=")


def test_an_openid_in_the_url_is_never_identity(client, bank, theme, monkeypatch):
    spoofed = client.get(page_url(theme) + "?openid=oSpoofedVictim01")
    assert spoofed.status_code == 302 and "/sandbox/yunshuhui/openid/" in spoofed.headers["Location"]
    assert session_openids(client) == {}
    assert db.session.execute(select(func.count()).select_from(ThemeVisit)).scalar_one() == 0

    me = sign_in(client, theme).openid
    monkeypatch.setattr(engine, "_system_random", First())
    page = Page(client.get(page_url(theme) + "?openid=oSpoofedVictim01"))
    answer = client.post(f"{page_url(theme)}/draws?openid=oSpoofedVictim01",
                         json={"key": "k1", "openid": "oSpoofedVictim01"}, headers={"X-CSRFToken": page.csrf})

    assert answer.status_code == 201
    participant = db.session.execute(select(ThemeParticipant)).scalar_one()
    assert participant.openid_hash == crypto.lookup_hash(me)


def test_a_callback_from_another_browser_signs_nobody_in(app, bank, theme):
    victim, attacker = app.test_client(), app.test_client()
    started = attacker.get(page_url(theme))
    wmcb = parse_qs(urlsplit(started.headers["Location"]).query)["wmcb"][0]

    planted = victim.get(local(wmcb) + "&openid=oAttacker000001&from=dshy")  # e.g. a link sent to the victim

    assert planted.status_code == 400 and 'data-code="STATE_INVALID"' in planted.get_data(as_text=True)
    assert session_openids(victim) == {}
    assert attacker.get(local(wmcb) + "&openid=oAttacker000001&from=dshy").status_code == 302  # its own browser


def test_a_banks_callback_and_ours_do_not_take_each_others_state(client, bank, theme):
    started = client.get(page_url(theme))
    wmcb = parse_qs(urlsplit(started.headers["Location"]).query)["wmcb"][0]
    state = parse_qs(urlsplit(wmcb).query)["state"][0]

    at_banks_callback = client.get("/api/v1/openid/callback", query_string={"state": state, "openid": "oX1",
                                                                             "from": "dshy"})

    assert at_banks_callback.status_code == 400 and "Location" not in at_banks_callback.headers
    assert session_openids(client) == {}


def test_an_unknown_activity_is_a_friendly_404(client, bank):
    for theme_no in ("0000000000", "abc", "12345678901"):
        response = client.get(f"/h5/activities/{theme_no}")
        html = response.get_data(as_text=True)
        assert response.status_code == 404
        assert 'data-testid="game-unavailable" data-code="THEME_NOT_FOUND"' in html
        assert 'name="viewport"' in html and "<nav" not in html and "bootstrap" not in html


@pytest.mark.parametrize("connected, partner", [(False, True), (True, False)])
def test_an_activity_whose_bank_has_no_yunshuhui_account_is_not_available(make, client, connected, partner):
    bank = make_bank(make, with_yunshuhui=connected)
    theme = wheel_theme(make, bank, partner_bank_id=bank.partner.id if partner else None)

    response = client.get(page_url(theme))

    assert response.status_code == 409 and "Location" not in response.headers
    assert 'data-code="TUNNEL_NOT_CONFIGURED"' in response.get_data(as_text=True)


def test_another_banks_activity_is_not_reachable_with_this_banks_session(make, client, bank, theme, monkeypatch):
    sign_in(client, theme)
    other = make_bank(make, name="华南银行")
    their_theme = wheel_theme(make, other)
    monkeypatch.setattr(engine, "_system_random", First())

    page = client.get(page_url(their_theme))
    drawn = client.post(f"{page_url(their_theme)}/draws", json={"key": "k1"},
                        headers={"X-CSRFToken": Page(client.get(page_url(theme))).csrf})

    member = tunnel_account(other.org.id, "yunshuhui").member_id
    assert page.status_code == 302 and urlsplit(page.headers["Location"]).path.endswith(f"/openid/{member}")
    assert drawn.status_code == 401 and drawn.get_json()["code"] == "SIGN_IN_REQUIRED"
    assert draws() == []


# --- the page's states --------------------------------------------------------------------------------


NOW = utcnow()


@pytest.mark.parametrize("change, state", [
    ({}, "READY"),
    ({"status": "paused"}, "ACTIVITY_PAUSED"),
    ({"start_at": NOW + timedelta(days=1), "end_at": NOW + timedelta(days=30)}, "ACTIVITY_NOT_STARTED"),
    ({"start_at": NOW - timedelta(days=30), "end_at": NOW - timedelta(days=1)}, "ACTIVITY_ENDED"),
    ({"status": "expired"}, "ACTIVITY_ENDED"),
    ({"wheel_enabled": False}, "DRAWS_NOT_ENABLED"),
    ({"participation_limit": 0}, "NOT_ELIGIBLE"),
    ({"daily_limit": 0}, "NOT_ELIGIBLE"),
])
def test_the_page_says_whether_and_why_not_the_customer_can_spin(app, make, client, bank, change, state):
    theme = wheel_theme(make, bank, **change)
    sign_in(client, theme)

    page = Page(client.get(page_url(theme)))

    assert page.status == 200 and page.spin_state == state
    assert page.spin_disabled == (state != "READY") and page.reason_hidden == (state == "READY")
    if state != "READY":
        assert page.reason == said(app, game.customer_message, state, theme)
    if state == "ACTIVITY_NOT_STARTED":
        assert format_local(theme.start_at, "%Y-%m-%d %H:%M") in page.reason  # starts at …
    if state == "NOT_ELIGIBLE":
        assert 'data-testid="chances"' not in page.html  # no "0 draws left" for those who may not take part
    else:
        assert (page.left("today"), page.left("total")) == (2 if change.get("daily_limit", 2) else 0, 5)
    assert "每人每天可抽奖两次\n2. 奖品以实际到账为准" in page.html  # the rules with their line breaks


def test_used_up_limits_turn_the_button_off_today_or_for_good(make, app, client, bank, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", Last())
    daily = wheel_theme(make, bank, daily_limit=1, participation_limit=3)
    total = wheel_theme(make, bank, daily_limit=None, participation_limit=1)
    unlimited = wheel_theme(make, bank, daily_limit=None, participation_limit=None)
    sign_in(client, daily)

    for theme in (daily, total):
        assert spin(client, theme, key=f"k-{theme.id}").status_code == 201
    after_daily, after_total = Page(client.get(page_url(daily))), Page(client.get(page_url(total)))
    open_page = Page(client.get(page_url(unlimited)))

    assert (after_daily.spin_state, after_daily.spin_disabled) == ("DAILY_LIMIT_REACHED", True)
    assert (after_daily.left("today"), after_daily.left("total")) == (0, 2)
    assert (after_total.spin_state, after_total.left("total"), after_total.left("today")) == ("TOTAL_LIMIT_REACHED", 0, None)
    assert open_page.spin_state == "READY" and 'data-testid="unlimited"' in open_page.html
    assert open_page.left("today") is None and open_page.left("total") is None


# --- spins --------------------------------------------------------------------------------------------


def test_a_winning_spin_answers_the_prize_the_stop_angle_and_the_draws_left(app, client, bank, theme, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", First())  # the points prize
    sign_in(client, theme)
    points = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.kind == "points")).scalar_one()

    answer = spin(client, theme, key="0d5c2b9e-retry-me")
    again = spin(client, theme, key="0d5c2b9e-retry-me")  # the network failed; the browser sends the key again

    doc = answer.get_json()
    assert answer.status_code == 201 and answer.headers["Cache-Control"] == "no-store"
    assert doc["won"] is True and doc["replayed"] is False and doc["drawNo"].startswith("D")
    assert doc["prize"] == {"id": points.id, "name": "幸运积分", "kind": "points",
                            "text": said(app, game.prize_text, points)}
    wheel = wheel_drawing.segments(prizes.on_the_wheel(theme))
    assert doc["stopAngle"] == wheel_drawing.stop_angle(wheel, points.id) and doc["stopAngle"] > 360
    assert (doc["drawsLeft"], doc["drawsLeftToday"]) == (4, 1)
    assert doc["spin"] == {"canSpin": True, "code": "READY", "label": said(app, lambda: game.spin_state(
        theme, (4, 1), True).label), "message": ""}
    assert doc["nextStep"] == said(app, game.next_step, "points")
    assert again.status_code == 200 and again.get_json()["drawNo"] == doc["drawNo"] and again.get_json()["replayed"]
    assert [(d.channel, d.draw_no) for d in draws()] == [("h5", doc["drawNo"])]

    mine = client.get(f"{page_url(theme)}/prizes")
    assert mine.status_code == 200 and Page(mine).prize_states() == {doc["drawNo"]: "pending"}
    outbox.relay_due()
    assert Page(client.get(page_url(theme))).prize_states() == {doc["drawNo"]: "credited"}


def test_a_spin_checks_out_one_connection_and_reads_the_activity_once(app, client, bank, theme, monkeypatch):
    """The answer is made from the activity the draw read: asking the session for it again after the
    commit would check out a second connection (a pre-ping and a query) — the session holds what it
    loaded only weakly, so nothing but the outcome keeps it."""
    monkeypatch.setattr(engine, "_system_random", First())
    sign_in(client, theme)
    url, csrf = f"{page_url(theme)}/draws", Page(client.get(page_url(theme))).csrf
    checkouts, activity_reads = [], []

    def on_checkout(*args):
        checkouts.append(1)

    def on_statement(conn, cursor, statement, *args):
        if "FROM theme_activities" in statement:
            activity_reads.append(statement)

    real_draw = engine.draw

    def draw_then_collect(*args, **kwargs):  # the collector may run at any moment; here, right after
        outcome = real_draw(*args, **kwargs)
        gc.collect()
        return outcome

    monkeypatch.setattr(engine, "draw", draw_then_collect)
    db.session.expunge_all()  # as in a fresh request: nothing of the activity in hand
    event.listen(db.engine.pool, "checkout", on_checkout)
    event.listen(db.engine, "before_cursor_execute", on_statement)
    try:
        answer = client.post(url, json={"key": "one-checkout"}, headers={"X-CSRFToken": csrf})
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)
        event.remove(db.engine.pool, "checkout", on_checkout)

    assert answer.status_code == 201 and answer.get_json()["won"] is True
    assert len(checkouts) == 1
    assert len(activity_reads) == 2  # its id and bank by the public number; the activity with its prizes


def test_the_fallback_lands_on_the_thanks_slice_and_is_no_prize(app, client, bank, theme, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", Last())
    sign_in(client, theme)
    thanks = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.kind == "thanks")).scalar_one()

    doc = spin(client, theme).get_json()

    wheel = wheel_drawing.segments(prizes.on_the_wheel(theme))
    assert doc["won"] is False and doc["prize"]["kind"] == "thanks" and doc["prize"]["id"] == thanks.id
    assert doc["stopAngle"] == wheel_drawing.stop_angle(wheel, thanks.id)
    assert doc["nextStep"] == said(app, game.next_step, "thanks")
    page = Page(client.get(page_url(theme)))
    assert page.prize_states() == {} and 'data-testid="no-prizes"' in page.html and page.left("today") == 1


def test_a_prize_whose_stock_ran_out_stops_the_wheel_on_thanks(client, bank, theme, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", First())
    sign_in(client, theme)
    points = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.kind == "points")).scalar_one()
    points.stock_remaining = 0
    db.session.commit()

    doc = spin(client, theme).get_json()

    assert doc["prize"]["kind"] == "gift"  # no stock: not a candidate any more; the first with stock is picked
    wheel = wheel_drawing.segments(prizes.on_the_wheel(theme))
    assert doc["stopAngle"] == wheel_drawing.stop_angle(wheel, doc["prize"]["id"])


def test_refusals_answer_a_code_and_the_customers_words(app, client, bank, theme, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", Last())
    anonymous = app.test_client()  # on its way through the hand-off, not back yet
    ysh_page = anonymous.get(local(anonymous.get(page_url(theme)).headers["Location"]))
    not_signed_in = anonymous.post(f"{page_url(theme)}/draws", json={"key": "k0"},
                                   headers={"X-CSRFToken": csrf_from(ysh_page)})
    sign_in(client, theme)
    csrf = Page(client.get(page_url(theme))).csrf
    no_token = spin(client, theme, key="k1", csrf=None)
    bad_key = spin(client, theme, key="has spaces", csrf=csrf)
    unknown = client.post("/h5/activities/0000000000/draws", json={"key": "k2"}, headers={"X-CSRFToken": csrf})
    theme.status = "paused"
    db.session.commit()
    paused = spin(client, theme, key="k3", csrf=csrf)

    assert (not_signed_in.status_code, not_signed_in.get_json()["code"]) == (401, "SIGN_IN_REQUIRED")
    assert (no_token.status_code, no_token.get_json()["code"]) == (400, "PAGE_EXPIRED")
    assert (bad_key.status_code, bad_key.get_json()["code"]) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert (unknown.status_code, unknown.get_json()["code"]) == (404, "THEME_NOT_FOUND")
    doc = paused.get_json()
    assert paused.status_code == 409 and doc["code"] == "ACTIVITY_PAUSED"
    assert doc["message"] == said(app, game.customer_message, "ACTIVITY_PAUSED")
    assert doc["spin"]["canSpin"] is False and doc["spin"]["code"] == "ACTIVITY_PAUSED"
    assert draws() == []


def test_a_used_up_limit_is_refused_with_the_button_turned_off(client, bank, make, monkeypatch):
    monkeypatch.setattr(engine, "_system_random", Last())
    theme = wheel_theme(make, bank, daily_limit=1)
    sign_in(client, theme)
    assert spin(client, theme, key="k1").get_json()["spin"]["code"] == "DAILY_LIMIT_REACHED"

    refused = spin(client, theme, key="k2")

    assert refused.status_code == 409 and refused.get_json()["code"] == "DAILY_LIMIT_REACHED"
    assert refused.get_json()["spin"]["canSpin"] is False


def test_spins_are_rate_limited_per_customer(client, bank, theme):
    sign_in(client, theme)
    csrf = Page(client.get(page_url(theme))).csrf
    limit = int(h5.DRAW_LIMIT_PER_CUSTOMER.split()[0])

    statuses = [spin(client, theme, key="", csrf=csrf).status_code for _ in range(limit + 1)]

    assert statuses[:limit] == [400] * limit  # refused by the engine (no key), but counted
    last = spin(client, theme, key="k", csrf=csrf)
    assert statuses[-1] == 429 and last.status_code == 429 and last.get_json()["code"] == "RATE_LIMITED"


@pytest.mark.parametrize("kind, status, issue_status, state, tone", [
    ("points", "pending", None, "pending", "wait"),
    ("points", "fulfilled", None, "credited", "ok"),
    ("cash", "fulfilled", None, "credited", "ok"),
    ("coupon", "pending", None, "issuing", "wait"),
    ("coupon", "fulfilled", "queued", "issuing", "wait"),
    ("coupon", "fulfilled", "processing", "issuing", "wait"),
    ("coupon", "fulfilled", "succeeded", "issued", "ok"),
    ("coupon", "fulfilled", "failed", "failed", "fail"),
    ("coupon", "failed", None, "failed", "fail"),
    ("gift", "pending", None, "pending", "wait"),
    ("gift", "awaiting_address", None, "awaiting_address", "action"),
    ("gift", "address_given", None, "address_given", "wait"),
    ("gift", "shipped", None, "shipped", "ok"),
])
def test_my_prizes_say_where_each_fulfilment_stands(app, kind, status, issue_status, state, tone):
    issue = SimpleNamespace(status=issue_status) if issue_status else None
    with app.test_request_context("/h5/activities/x"):
        found_state, label, found_tone = game.fulfilment_in_words(kind, status, issue)
    assert (found_state, found_tone) == (state, tone) and label


# --- a gift's delivery address ------------------------------------------------------------------------


@pytest.fixture
def gift_won(client, bank, make, monkeypatch):
    """The customer spun and won the gift; its fulfilment now waits for the address."""
    theme = wheel_theme(make, bank)
    gift = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.kind == "gift")).scalar_one()
    gift.sort_order = 0  # first on the wheel: the pick lands on it
    db.session.commit()
    monkeypatch.setattr(engine, "_system_random", First())
    sign_in(client, theme)
    draw_no = spin(client, theme).get_json()["drawNo"]
    outbox.relay_due()
    return theme, draw_no


def test_a_gift_winner_leaves_an_address_after_fixing_what_was_wrong(app, client, gift_won):
    theme, draw_no = gift_won
    page = Page(client.get(page_url(theme)))
    assert page.prize_states() == {draw_no: "awaiting_address"} and 'data-testid="address-form"' in page.html
    address_url = f"{page_url(theme)}/draws/{draw_no}/address"

    wrong = client.post(address_url, data={"csrf_token": page.csrf, "recipient": "  ", "phone": "1234567",
                                           "address": "北京"})
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 400
    assert {"recipient", "phone", "address"} == set(re.findall(r'data-testid="error-(\w+)"', html))
    assert '<details class="address" open>' in html and re.search(r">\s*北京</textarea>", html)  # open, input kept
    assert 'value="1234567"' in html

    right = client.post(address_url, data={"csrf_token": page.csrf, "recipient": "王小明",
                                           "phone": "+86 138-0013-8000", "address": "上海市浦东新区世纪大道100号"})
    assert right.status_code == 302 and right.headers["Location"].endswith(f"{page_url(theme)}#my-prizes")
    after = Page(client.get(page_url(theme)))
    assert after.prize_states() == {draw_no: "address_given"} and 'data-testid="notice"' in after.html
    delivery = db.session.execute(select(PrizeDelivery)).scalar_one()
    assert crypto.decrypt(delivery.phone_enc) == "13800138000" and "13800138000" not in delivery.phone_enc
    assert crypto.decrypt(delivery.recipient_enc) == "王小明"

    twice = client.post(address_url, data={"csrf_token": page.csrf, "recipient": "李四", "phone": "13900139000",
                                           "address": "广州市天河区体育西路1号"})
    assert twice.status_code == 302 and 'class="notice notice-error"' in client.get(page_url(theme)).get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(PrizeDelivery)).scalar_one() == 1


@pytest.mark.parametrize("phone", ["12800138000", "1380013800", "138001380001", "23800138000"])
def test_only_a_mainland_mobile_number_is_taken(client, gift_won, phone):
    theme, draw_no = gift_won
    csrf = Page(client.get(page_url(theme))).csrf

    response = client.post(f"{page_url(theme)}/draws/{draw_no}/address",
                           data={"csrf_token": csrf, "recipient": "王小明", "phone": phone, "address": "上海市浦东新区世纪大道100号"})

    assert response.status_code == 400
    assert re.findall(r'data-testid="error-(\w+)"', response.get_data(as_text=True)) == ["phone"]


def test_another_customer_cannot_leave_an_address_for_my_gift(app, client, gift_won):
    theme, draw_no = gift_won
    stranger = app.test_client()
    sign_in(stranger, theme, nickname="陌生人")
    csrf = Page(stranger.get(page_url(theme))).csrf

    response = stranger.post(f"{page_url(theme)}/draws/{draw_no}/address",
                             data={"csrf_token": csrf, "recipient": "陌生人", "phone": "13800138000",
                                   "address": "上海市浦东新区世纪大道100号"})

    assert response.status_code == 302 and "notice-error" in stranger.get(page_url(theme)).get_data(as_text=True)
    assert db.session.execute(select(func.count()).select_from(PrizeDelivery)).scalar_one() == 0


def test_a_shipped_gift_shows_its_tracking_number(client, gift_won):
    theme, draw_no = gift_won
    csrf = Page(client.get(page_url(theme))).csrf
    client.post(f"{page_url(theme)}/draws/{draw_no}/address", data={
        "csrf_token": csrf, "recipient": "王小明", "phone": "13800138000", "address": "上海市浦东新区世纪大道100号"})
    delivery = db.session.execute(select(PrizeDelivery)).scalar_one()
    delivery.status, delivery.tracking_no, delivery.shipped_at = "shipped", "SF1234567890", utcnow()
    db.session.get(ThemeDraw, delivery.draw_id).fulfilment_status = "shipped"
    db.session.commit()

    page = Page(client.get(page_url(theme)))

    assert page.prize_states() == {draw_no: "shipped"} and "SF1234567890" in page.html


# --- visits -------------------------------------------------------------------------------------------


def visit_figures(theme) -> list[tuple]:
    """(day, page views, unique visitors) per Asia/Shanghai day, and over all days."""
    db.session.expire_all()
    per_day = db.session.execute(select(ThemeVisit.visit_day, func.sum(ThemeVisit.views), func.count())
                                 .where(ThemeVisit.theme_activity_id == theme.id)
                                 .group_by(ThemeVisit.visit_day).order_by(ThemeVisit.visit_day)).all()
    overall = db.session.execute(select(func.sum(ThemeVisit.views), func.count(func.distinct(ThemeVisit.openid_hash)))
                                 .where(ThemeVisit.theme_activity_id == theme.id)).one()
    return [tuple(row) for row in per_day] + [tuple(overall)]


def test_every_view_of_an_identified_customer_is_counted_per_day(app, client, bank, theme):
    other = app.test_client()
    me = sign_in(client, theme).openid  # the hand-off's redirect is not a view
    sign_in(other, theme, nickname="小李")
    assert visit_figures(theme) == [(None, 0)]

    for browser in (client, client, other):
        assert browser.get(page_url(theme)).status_code == 200
    client.get(f"{page_url(theme)}/prizes")  # a part of the page is not a view
    visits.record_visit(theme, me, now=utcnow() - timedelta(days=1))

    today, yesterday = business_today(), business_today() - timedelta(days=1)
    assert visit_figures(theme) == [(yesterday, 1, 1), (today, 3, 2), (4, 2)]


def test_concurrent_first_views_make_one_row_and_lose_no_view(app, theme):
    activity = SimpleNamespace(id=theme.id, org_id=theme.org_id)  # plain values: no lazy load from a thread
    start, failures = threading.Barrier(8), []

    def view():
        with app.app_context():
            start.wait()
            try:
                visits.record_visit(activity, "oSameCustomer01")
            except Exception as exc:  # noqa: BLE001 (reported below, in the test's thread)
                failures.append(exc)

    threads = [threading.Thread(target=view) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert visit_figures(theme) == [(business_today(), 8, 1), (8, 1)]


# --- the background -----------------------------------------------------------------------------------


def test_the_background_image_is_shown_and_served_publicly(app, client, bank, theme):
    sign_in(client, theme)
    assert 'data-testid="background"' not in client.get(page_url(theme)).get_data(as_text=True)
    assert client.get(f"{page_url(theme)}/background").status_code == 404
    theme.background_image = backgrounds.adopt(pending_image(PNG))
    db.session.commit()

    html = client.get(page_url(theme)).get_data(as_text=True)
    src = re.search(r'<img class="game-bg" src="([^"]+)"', html).group(1)
    image = app.test_client().get(unescape(src))  # no session needed: it is the campaign's artwork

    assert image.status_code == 200 and image.mimetype == "image/png" and image.data == PNG


# --- the activity's coupons (§3.3) ---------------------------------------------------------------------


def test_the_page_shows_the_coupons_marked_to_be_shown_and_in_effect(app, make, client, bank, theme):
    make.coupon_activity(theme=theme, name="满百减十券", promo_amount_fen=1000, threshold_fen=10000)
    make.coupon_activity(theme=theme, name="九折券", coupon_type="discount", discount_bp=9000, promo_amount_fen=0,
                         threshold_fen=0, channel="alipay", valid_type="relative", valid_days=7)
    make.coupon_activity(theme=theme, name="不展示的券", show_in_miniprogram=False)
    make.coupon_activity(theme=theme, name="已停用的券", enabled=False)
    make.coupon_activity(theme=theme, name="已结束的券", start_at=NOW - timedelta(days=9), end_at=NOW - timedelta(days=1))
    make.coupon_activity(theme=theme, name="已终止的券", terminated_at=NOW - timedelta(hours=1))
    other_theme = wheel_theme(make, bank)
    make.coupon_activity(theme=other_theme, name="别的活动的券")
    sign_in(client, theme)

    html = client.get(page_url(theme)).get_data(as_text=True)

    offers = re.findall(r'data-testid="coupon-offer">\s*<div class="offer-value">([^<]*)</div>\s*'
                        r'<div class="offer-text"><b>([^<]*)</b><span>([^<]*)</span>', html)
    assert [name for _value, name, _rest in offers] == ["满百减十券", "九折券"]
    threshold, discount = offers
    assert unescape(threshold[0]) == said(app, game.coupon_value, db.session.get(CouponActivity, coupon_id("满百减十券")))
    assert "10.00" in unescape(threshold[0]) and "100.00" in unescape(threshold[0])
    assert "9" in unescape(discount[0]) and "0.00" not in unescape(discount[0])  # 9折, not a face value of ¥0.00
    assert "7" in discount[2] and "支付宝" in unescape(discount[2])  # the page is in Chinese


def test_a_page_without_coupons_to_show_has_no_coupon_section(client, bank, theme, make):
    make.coupon_activity(theme=theme, name="不展示的券", show_in_miniprogram=False)
    sign_in(client, theme)
    assert 'data-testid="coupon-offers"' not in client.get(page_url(theme)).get_data(as_text=True)


def coupon_id(name: str) -> int:
    return db.session.execute(select(CouponActivity.id).where(CouponActivity.name == name)).scalar_one()


def test_a_prize_named_as_its_text_says_is_not_said_twice(app):
    named_like_text = SimpleNamespace(kind="points", points=188, cash_fen=None, name="188积分")
    other_name = SimpleNamespace(kind="points", points=188, cash_fen=None, name="幸运积分")
    assert said(app, game.prize_text, named_like_text) == "188积分"
    assert said(app, game.prize_text, other_name) == said(app, lambda: game._("%(points)s points", points=188))
