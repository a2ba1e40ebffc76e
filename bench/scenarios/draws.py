"""Theme activity draws at 64 concurrent clients, beside /healthz: customers spinning on the H5 game
page, and banks' back ends through the signed API.

For each stock size (1, 10 and 500 units of one prize, beside the "thanks" fallback, equal weights)
and each way in, a fresh theme activity is made (total limit 5, daily limit 3 per customer) with
ten times as many players as units. Each case is a /healthz run and a draw run of the same length,
both at 64 clients with the same driver, in the same server:
- H5: `POST /h5/activities/<id>/draws` as the page's script sends it: the customer's signed session
  cookie (the openid the 云数汇 hand-off leaves there, made here with the app's own session
  machinery), its CSRF token, a JSON idempotency key; each player behind an address of their own
  (`X-Forwarded-For`: the bench server runs as behind one reverse proxy, `PROXY_FIX_HOPS=1`, as in
  production), so the per-address rate limit is met as carriers would meet it;
- API: `POST /api/v1/activities/<id>/draws`, each request signed by the bank's key beforehand
  (LKLAPI: a fresh nonce each).
5 % of the requests are retries of an earlier idempotency key. Answers that count as served: 201
(a draw), 200 (a replayed retry), 409 for a used-up limit and, on the H5 page, 429 for a customer
spinning more than 20 times a minute (with 10 players for 1 unit of stock, most of that case's
requests are such refusals); anything else is an error.

After each draw run the books are read back from the database and every violation counted: stock
below zero, wins different from the stock taken, a customer above the total or daily limit, a
fulfilment message not matching a win, a key drawn twice, a retry answered with another draw.

The goal (issue 5): draws ≥ 0.8 × /healthz throughput, zero violations.

Then the floor of the signed API: a signed look-up of a draw number that does not exist (404,
signed), beside a /healthz run of its own. A signed draw does all of that work and more, so the
floor's ratio to /healthz is the ceiling of the API's draws on the machine of the run.

Last, the engine alone (no HTTP, no signatures), 64 threads in this process, every draw on one
prize: its stock taken by the guarded UPDATE of the prize row (what the engine does), by a Redis Lua
script instead (an experiment: the engine's `_take_stock` swapped for the run), and not at all —
the measurement behind the engine's choice of PostgreSQL (see `app/activities/draw.py`).
"""
from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from bench.scenarios import bench_bank
from bench.scenarios.desk import _stats  # one way to summarise latencies across the scenarios

NAME = "draws"
DESCRIPTION = ("draws on the H5 page and through the signed bank API at 64 clients, stock 1 / 10 / 500 with 10x "
               "players, beside /healthz")

CLIENTS = 64
STOCKS = (1, 10, 500)
PLAYERS_PER_UNIT = 10
TOTAL_LIMIT, DAILY_LIMIT = 5, 3
RETRY_SHARE = 0.05
REQUESTS_PER_CASE = 6000  # signed ahead of each case; the case ends at --duration or when they run out
BANK_CODE = "BENCH-DRAW"
GOAL = 0.8
SERVED = {201, 200}
LIMIT_CODES = {"TOTAL_LIMIT_REACHED", "DAILY_LIMIT_REACHED"}
CHANNELS = ("h5", "api")


@dataclass
class Prepared:
    path: str
    body: bytes
    key: str
    open_id: str
    headers: dict


def setup(app) -> dict:
    """The bank, its API client (a key pair for the bank made afresh each run) and nothing else:
    each case makes its own theme activity, so every run starts with full stock."""
    from sqlalchemy import select

    from app.core import audit
    from app.coupons import bank_auth
    from app.coupons.models import BankApiClient
    from app.extensions import db
    from app.providers import lklapi

    with app.app_context(), audit.acting_as(audit.Actor(None, "bench", None, None)):
        bank = bench_bank(BANK_CODE, "抽奖压测银行")
        private_pem, cert_pem, serial = lklapi.new_key_pair("bench bank")
        app_id = "BENCHDRAW01"
        client = db.session.execute(select(BankApiClient).where(BankApiClient.app_id == app_id)).scalar_one_or_none()
        if client is None:
            client = bank_auth.register_client(bank, name="压测银行后台", app_id=app_id, client_cert=cert_pem,
                                               rate_limit_per_minute=10_000_000)
        client.client_cert, client.client_serial_no, client.status = cert_pem, serial, "active"
        db.session.commit()
        return {"bank_id": bank.id, "app_id": app_id, "serial": serial, "private_pem": private_pem, "themes": {}}


def cases(state: dict) -> list:
    return []  # every run is driven by `measure` (signed requests, a fresh nonce each)


def _new_theme(app, state: dict, stock: int) -> dict:
    from datetime import timedelta

    from app.activities.models import ThemeActivity
    from app.activities.prize_models import Prize
    from app.core.timeutil import utcnow
    from app.extensions import db

    with app.app_context():
        now = utcnow()
        theme_no = f"8{random.SystemRandom().randrange(10 ** 9):09d}"
        theme = ThemeActivity(org_id=state["bank_id"], theme_no=theme_no, name=f"压测抽奖 {stock} {theme_no}",
                              start_at=now - timedelta(hours=1), end_at=now + timedelta(days=1), wheel_enabled=True,
                              participation_limit=TOTAL_LIMIT, daily_limit=DAILY_LIMIT, status="active")
        db.session.add(theme)
        db.session.flush()
        common = dict(org_id=state["bank_id"], theme_activity_id=theme.id, weight=50, colour="#ff6600")
        db.session.add_all([
            Prize(name="谢谢参与", kind="thanks", sort_order=2, **common),
            Prize(name=f"{stock} 份积分", kind="points", points=100, stock_total=stock, stock_remaining=stock,
                  sort_order=1, **common),
        ])
        db.session.commit()
        return {"id": theme.id, "theme_no": theme_no, "stock": stock}


def _draw_plan(theme: dict, count: int) -> list[tuple[str, str]]:
    """(idempotency key, openid) of `count` draws among ten players per unit, 5 % retries of an earlier key."""
    rng = random.Random(theme["stock"])
    players = [f"oBench{theme['theme_no']}{n:05d}" for n in range(theme["stock"] * PLAYERS_PER_UNIT)]
    plan: list[tuple[str, str]] = []
    for n in range(count):
        plan.append(rng.choice(plan) if plan and rng.random() < RETRY_SHARE
                    else (f"bench-{theme['theme_no']}-{n}", rng.choice(players)))
    return plan


def _signed_requests(app, state: dict, theme: dict, count: int) -> list[Prepared]:
    """The bank API's requests of the plan, each signed now."""
    from app.providers import lklapi

    path = f"/api/v1/activities/{theme['theme_no']}/draws"
    requests: list[Prepared] = []
    for key, open_id in _draw_plan(theme, count):
        body = json.dumps({"openId": open_id}).encode()
        authorization = lklapi.request_authorization(state["app_id"], state["serial"], state["private_pem"], body)
        requests.append(Prepared(path, body, key, open_id, {"Authorization": authorization, "Idempotency-Key": key,
                                                           "Content-Type": "application/json"}))
    return requests


def _h5_requests(app, state: dict, theme: dict, count: int) -> list[Prepared]:
    """The H5 page's requests of the plan: each player's session cookie (their openid for the bank, as
    the hand-off leaves it) and CSRF token, made once per player with the app's own machinery."""
    from flask import session
    from flask_wtf.csrf import generate_csrf

    from app.activities.h5 import SESSION_OPENIDS

    path = f"/h5/activities/{theme['theme_no']}/draws"
    serializer = app.session_interface.get_signing_serializer(app)
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    players: dict[str, dict] = {}
    requests: list[Prepared] = []
    for key, open_id in _draw_plan(theme, count):
        if open_id not in players:
            with app.test_request_context():
                session[SESSION_OPENIDS] = {str(state["bank_id"]): open_id}
                token = generate_csrf()
                cookie = serializer.dumps(dict(session))
            address = f"10.{len(players) // 65536 % 256}.{len(players) // 256 % 256}.{len(players) % 256}"
            players[open_id] = {"Cookie": f"{cookie_name}={cookie}", "X-CSRFToken": token, "X-Forwarded-For": address,
                                "Content-Type": "application/json"}
        requests.append(Prepared(path, json.dumps({"key": key}).encode(), key, open_id, players[open_id]))
    return requests


PREPARE = {"h5": _h5_requests, "api": _signed_requests}


def _drive(base: str, name: str, send, total: int, duration: float) -> tuple[dict, list]:
    """`CLIENTS` threads call `send(http, n)` for n = 0, 1, … until `total` or `duration` runs out;
    `send` returns (ok, what) — `what` is counted, and is the error sample when not ok."""
    budget = itertools.count()
    latencies: list[float] = []
    outcomes: list = []
    errors: list[str] = []
    lock = threading.Lock()
    start_at: list[float] = []
    ready = threading.Barrier(CLIENTS, action=lambda: start_at.append(time.perf_counter()))
    finished = [0.0] * CLIENTS

    def client(number: int) -> None:
        with httpx.Client(base_url=base, timeout=60.0) as http:
            http.get("/healthz")  # warm up: the worker's imports, the client's DNS/socket
            ready.wait()
            deadline = start_at[0] + duration
            while True:
                n = next(budget)
                if n >= total or time.perf_counter() >= deadline:
                    break
                began = time.perf_counter()
                try:
                    ok, what = send(http, n)
                except httpx.HTTPError as exc:
                    ok, what = False, f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    (outcomes if ok else errors).append(what)
            finished[number] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _stats(name, latencies, len(errors), errors, max(finished) - start_at[0]), outcomes


def _healthz(http: httpx.Client, n: int) -> tuple[bool, str]:
    response = http.get("/healthz")
    return response.status_code == 200, f"/healthz: HTTP {response.status_code}"


def _draw_sender(requests: list[Prepared]):
    def send(http: httpx.Client, n: int) -> tuple[bool, object]:
        prepared = requests[n]
        response = http.post(prepared.path, content=prepared.body, headers=prepared.headers)
        if response.status_code in SERVED:
            return True, (prepared.key, *_draw_answer(response))
        code = response.json().get("code") if response.headers.get("content-type", "").startswith("application/json") \
            else None
        if response.status_code == 409 and code in LIMIT_CODES:
            return True, (prepared.key, None, "limit reached")
        if response.status_code == 429 and code == "RATE_LIMITED":  # the H5 page's 20 spins a minute per customer
            return True, (prepared.key, None, "rate limited")
        return False, f"{prepared.path}: HTTP {response.status_code} {code or response.text[:120]}"

    return send


def _draw_answer(response: httpx.Response) -> tuple[str, str]:
    """(draw no., what it was) from a served answer of either way in."""
    doc = response.json()
    if response.status_code == 200:
        return doc["drawNo"], "replayed"
    if "result" in doc:  # the bank API
        return doc["drawNo"], doc["result"].lower()
    return doc["drawNo"], "won" if doc["won"] else "thanks"  # the H5 page


def _signed_floor(app, state: dict, theme: dict, base_url: str, args) -> list[dict]:
    """The cheapest signed request of the draw API beside its own /healthz run: a draw number that
    does not exist, looked up (the bank's signature, nonce, client and rate limit checked, the
    activity and the draw looked up, the 404 signed). No signed draw can be cheaper than this."""
    from app.providers import lklapi

    paths = [f"/api/v1/activities/{theme['theme_no']}/draws/DNONE{n:011d}"
             for n in range(min(REQUESTS_PER_CASE, args.max_requests))]
    headers = [{"Authorization": lklapi.request_authorization(state["app_id"], state["serial"], state["private_pem"],
                                                              b"")} for _ in paths]

    def send(http: httpx.Client, n: int) -> tuple[bool, object]:
        response = http.get(paths[n], headers=headers[n])
        return response.status_code == 404, f"{paths[n]}: HTTP {response.status_code} {response.text[:120]}"

    health, _ = _drive(base_url, f"/healthz, {CLIENTS} clients (signed floor run)", _healthz, args.max_requests,
                       args.duration)
    floor, _ = _drive(base_url, "api: a signed look-up of no draw (404)", send, len(paths), args.duration)
    ratio = floor["rps"] / health["rps"] if health["rps"] else 0.0
    floor["ratio_to_healthz"] = round(ratio, 3)
    floor["notes"] = [f"  api floor: the cheapest signed request, {floor['rps']:.0f}/s = {ratio:.2f} x /healthz "
                      f"({health['rps']:.0f}/s): no signed draw can reach a higher ratio on this machine"]
    return [health, floor]


# --- the books -------------------------------------------------------------------------------------


def check_books(app, theme_id: int, outcomes: list) -> tuple[list[str], dict]:
    """Every violation of the draw invariants found in the database and in the answers; and counts."""
    from sqlalchemy import func, select

    from app.activities.prize_models import Prize, ThemeDraw, ThemeParticipant
    from app.core.outbox import OutboxMessage
    from app.extensions import db

    problems: list[str] = []
    with app.app_context():
        prizes = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme_id)).scalars().all()
        wins = Counter(db.session.execute(select(ThemeDraw.prize_id).where(ThemeDraw.theme_activity_id == theme_id,
                                                                           ThemeDraw.won.is_(True))).scalars())
        for prize in prizes:
            if prize.is_fallback:
                continue
            if prize.stock_remaining < 0:
                problems.append(f"{prize.name}: stock {prize.stock_remaining} below zero")
            if wins[prize.id] != prize.stock_total - prize.stock_remaining:
                problems.append(f"{prize.name}: {wins[prize.id]} wins but {prize.stock_taken} units taken")
        per_day = db.session.execute(
            select(ThemeDraw.participant_id, ThemeDraw.drawn_day, func.count()).where(ThemeDraw.theme_activity_id == theme_id)
            .group_by(ThemeDraw.participant_id, ThemeDraw.drawn_day)).all()
        problems += [f"participant {p}: {n} draws on {day} (daily limit {DAILY_LIMIT})" for p, day, n in per_day
                     if n > DAILY_LIMIT]
        totals = Counter()
        for p, _, n in per_day:
            totals[p] += n
        for participant in db.session.execute(select(ThemeParticipant)
                                              .where(ThemeParticipant.theme_activity_id == theme_id)).scalars():
            if participant.draws_total != totals[participant.id] or participant.draws_total > TOTAL_LIMIT:
                problems.append(f"participant {participant.id}: counted {participant.draws_total}, "
                                f"{totals[participant.id]} draws (total limit {TOTAL_LIMIT})")
        won = dict(db.session.execute(select(ThemeDraw.id, ThemeDraw.won)
                                      .where(ThemeDraw.theme_activity_id == theme_id)).all())
        won_ids = {i for i, w in won.items() if w}
        handed = Counter(m["draw_id"] for m in db.session.execute(
            select(OutboxMessage.payload).where(OutboxMessage.kind == "activities.fulfil_prize",
                                                OutboxMessage.org_id == prizes[0].org_id)).scalars()
            if m["draw_id"] in won)
        if set(handed) != won_ids or any(n > 1 for n in handed.values()):
            problems.append(f"{len(won_ids)} wins but {sum(handed.values())} fulfilment messages")
        draws = len(won)
    by_key: dict[str, set] = {}
    for key, draw_no, _ in outcomes:
        if draw_no:
            by_key.setdefault(key, set()).add(draw_no)
    problems += [f"key {k} answered with draws {sorted(v)}" for k, v in by_key.items() if len(v) > 1]
    if len(by_key) > draws:
        problems.append(f"{len(by_key)} keys answered with a draw, {draws} draws recorded")
    return problems, {"draws recorded": draws, "wins recorded": len(won_ids),
                      **Counter(label for _, _, label in outcomes)}


# --- the engine alone: where a draw's stock is taken ----------------------------------------------

TAKE_IN_REDIS = """local n = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if n > 0 then redis.call('SET', KEYS[1], n - 1) return n - 1 end
return -1"""
ENGINE_DRAWS_PER_THREAD = 15


def _engine_rate(app, state: dict, take_stock: bool, label: str) -> float:
    """Draws/s of `app.activities.draw.draw` called by CLIENTS threads in this process (a customer a
    draw), all landing on one prize of a million units, or on the fallback when `take_stock` is off."""
    from app.activities import draw as engine
    from app.activities.prize_models import Prize
    from app.extensions import db

    theme = _new_theme(app, state, 10 ** 6)
    with app.app_context():
        for prize in db.session.query(Prize).filter_by(theme_activity_id=theme["id"]):
            prize.weight = 1 if prize.is_fallback else 100
            prize.enabled = prize.is_fallback or take_stock
        db.session.commit()
    gate = threading.Barrier(CLIENTS)
    started: list[float] = []

    def client(n: int) -> None:
        with app.app_context():
            gate.wait()
            started.append(time.perf_counter())
            for i in range(ENGINE_DRAWS_PER_THREAD):
                engine.draw(theme["id"], f"oEngine{label}{n:02d}x{i:03d}", f"engine-{n}-{i}")
            db.session.remove()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return CLIENTS * ENGINE_DRAWS_PER_THREAD / (time.perf_counter() - min(started))


def engine_comparison(state: dict, database_url: str, redis_url: str) -> dict:
    """The same draws three ways, in-process, 64 threads over 24 connections: the stock taken by the
    guarded UPDATE of the prize row (what the engine does), by a Redis Lua script instead (the prize
    row left alone), and not at all (every draw lands on the fallback)."""
    from app import create_app
    from app.activities import draw as engine
    from app.config import Config
    from app.extensions import get_redis

    app = create_app(Config, SQLALCHEMY_DATABASE_URI=database_url, REDIS_URL=redis_url, EMBEDDED_WORKERS=False,
                     SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 24, "max_overflow": 0, "pool_timeout": 120})
    rates = {"the prize row's guarded UPDATE": _engine_rate(app, state, True, "pg")}
    original = engine._take_stock
    with app.app_context():
        script = get_redis().register_script(TAKE_IN_REDIS)

    def take_in_redis(prize) -> bool:
        return script(keys=[f"bench:draw-stock:{prize.id}"], args=[10 ** 6]) >= 0

    engine._take_stock = take_in_redis
    try:
        rates["a Redis script"] = _engine_rate(app, state, True, "redis")
    finally:
        engine._take_stock = original
    rates["nothing (fallback only, no hand-over)"] = _engine_rate(app, state, False, "none")
    with app.app_context():
        from app.extensions import db

        db.engine.dispose()
    return rates


def measure(app, state: dict, base_url: str, args, baseline: dict, results: list[dict]) -> list[dict]:
    rows = []
    for stock, channel in itertools.product(STOCKS, CHANNELS):
        theme = _new_theme(app, state, stock)
        signing = time.perf_counter()
        requests = PREPARE[channel](app, state, theme, min(REQUESTS_PER_CASE, args.max_requests))
        signing = time.perf_counter() - signing
        health, _ = _drive(base_url, f"/healthz, {CLIENTS} clients ({channel} stock {stock} run)", _healthz,
                           args.max_requests, args.duration)
        drawn, outcomes = _drive(base_url, f"{channel} draws, stock {stock}, {stock * PLAYERS_PER_UNIT} players",
                                 _draw_sender(requests), len(requests), args.duration)
        problems, counts = check_books(app, theme["id"], outcomes)
        ratio = drawn["rps"] / health["rps"] if health["rps"] else 0.0
        verdict = "met" if ratio >= GOAL and not problems and not drawn["errors"] else "NOT met"
        drawn["invariant_violations"] = len(problems)
        drawn["ratio_to_healthz"] = round(ratio, 3)
        drawn["notes"] = [
            f"  {channel}, stock {stock}: {drawn['rps']:.0f} draws/s = {ratio:.2f} x /healthz ({health['rps']:.0f}/s), "
            f"p99 {drawn['p99_ms']:.0f} ms (healthz p99 {health['p99_ms']:.0f} ms); answers {counts}; "
            f"invariant violations: {len(problems)}; goal >= {GOAL} x healthz with 0 violations: {verdict} "
            f"({len(requests)} requests prepared in {signing:.1f} s beforehand)",
            *(f"    violation: {p}" for p in problems[:10]),
        ]
        rows += [health, drawn]
    rows += _signed_floor(app, state, theme, base_url, args)
    rates = engine_comparison(state, args.database_url, args.redis_url)
    rows.append({"name": "engine alone", "engine_draws_per_s": rates, "notes": [
        f"  the engine alone, {CLIENTS} threads in-process, every draw on one prize: "
        + "; ".join(f"stock taken by {name}: {rate:.0f} draws/s" for name, rate in rates.items())]})
    return rows
