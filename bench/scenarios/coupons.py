"""Coupons (issue 4): the bank issue API, issuance end to end through RQ workers to the 云数汇
sandbox in a server of its own, and a storm of redemption callbacks; each beside /healthz.

Seeds (idempotent) a bank BENCH-COUPONS, its bank API client (a fresh key pair each run: the
bench holds the private key, the client row gets the certificate; a rate limit high enough not to
be what is measured), its 云数汇 tunnel account registered with the sandbox, a running coupon
activity with a large stock (one coupon per customer) and its batch in the sandbox.

Once the server is up (`prepare`): the 云数汇 sandbox is started in a gunicorn of its own (a real
platform is another host) and the tunnel account pointed at it, and a bank's notification
endpoint is started in a process of its own (it answers {"code":"SUCCESS"} and counts what it
gets, per notification type and callTradeNo).

Cases (`measure`; every request is signed beforehand with a fresh nonce and timestamp, so the
clients only send bytes; the senders run in a process of their own, one httpx client per thread,
like bench/load.py's /healthz baseline):

a. issue API acceptance: POST /api/v1/coupons/issue, LKLAPI-signed, one Idempotency-Key and one
   callTradeNo per request, a distinct customer (openId) each; no worker runs, so the web server
   has the machine to itself; accepted (202) requests/s and latency against /healthz (goal ≥ 0.7×);
   then `RQ_WORKERS` `rq worker` processes start (the README's production command) and the backlog
   the case left is drained to the sandbox (issues/s reported);
floor. a signed request at its cheapest: GET /api/v1/coupons/issues/<a callTradeNo never issued>, signed;
   its signature, nonce and client are checked, its rate limit counted, one indexed look-up made
   and the 404 answer signed. No signed operation can be cheaper, so its ratio to /healthz is the
   ceiling of (a)'s and of the signed draw API's on the machine of the run;
b. end to end: `E2E_ISSUES` issues POSTed with the workers running; from the first request sent
   to the last issue settled (succeeded or failed, as recorded by the worker that got the
   sandbox's answer): issues/s, and each issue's accept → settled latency;
c. callback storm: `storm()` of the sandbox over 1,000 of (b)'s coupons: 10 redemption callbacks
   each (10,000), shuffled, 5 % badly signed, fired at our callback endpoint; notifications/s
   against /healthz (goal ≥ 0.7×); then, once the workers have told the bank: exactly 1,000
   redemptions, exactly one applied callback and one bank notification per coupon (in our table
   and as received by the bank), and every badly signed callback refused (401, kept as rejected).

Environment knobs: BENCH_RQ_WORKERS (default 4), BENCH_RQ_WORKER_CLASS (default
jobs.worker.AppWorker; rq.Worker is RQ's own, which builds the app again in every job's process),
BENCH_COUPON_E2E_ISSUES (default 1,000).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from bench.scenarios import Case, bench_bank

NAME = "coupons"
DESCRIPTION = "bank issue API, issuance through RQ workers to the 云数汇 sandbox, callback storm"

BANK_CODE = "BENCH-COUPONS"
CLIENT_APP_ID = "BENCHCOUPONS01"
YSH_APP_ID = "OPBENCH0001"
YSH_MEMBER_ID = "880000000001"
ACTIVITY_NAME = "压测立减券"
ACTIVITY_CODE = "WXBENCHCOUPONS_1700000000"
UPSTREAM_ACTIVITY_ID = "8800000001"
OWNER_ID = "88000001"
PROMOTION_ID = "BENCHPROMO01"
RATE_LIMIT_PER_MINUTE = 100_000_000  # the bench measures the server, not the per-bank limit
ISSUE_TOTAL = 100_000_000
RQ_WORKERS = int(os.environ.get("BENCH_RQ_WORKERS", "4"))
RQ_WORKER_CLASS = os.environ.get("BENCH_RQ_WORKER_CLASS", "jobs.worker.AppWorker")
E2E_ISSUES = int(os.environ.get("BENCH_COUPON_E2E_ISSUES", "1000"))
STORM_COUPONS = 1_000
STORM_COPIES = 10
STORM_BAD_PERCENT = 5
GOAL = 0.7  # requests/s against /healthz
PLATFORM_WORKERS = 2  # the sandbox's own gunicorn
PLATFORM_THREADS = 8
SETTLE_TIMEOUT_S = 900
NOTIFY_TIMEOUT_S = 600
REPO = Path(__file__).resolve().parent.parent.parent

_processes: dict[str, list[subprocess.Popen]] = {"platform": [], "receiver": [], "workers": []}


# --- seeds ---------------------------------------------------------------------------------------

def setup(app) -> dict:
    from sqlalchemy import select

    from app.core import audit
    from app.core.timeutil import utcnow
    from app.coupons import bank_auth
    from app.coupons.models import BankApiClient, CouponActivity, TunnelAccount
    from app.extensions import db
    from app.providers import lklapi
    from app.sandbox import yunshuhui as sandbox

    with app.app_context(), audit.acting_as(audit.Actor(None, "bench", None, None)):
        bank = bench_bank(BANK_CODE, "压测银行")
        # A fresh key pair for the bank each run: the bench signs with its private key.
        private_pem, cert_pem, serial = lklapi.new_key_pair("bench bank back end")
        client = db.session.execute(select(BankApiClient).where(BankApiClient.app_id == CLIENT_APP_ID)
                                    ).scalar_one_or_none()
        if client is None:
            client = bank_auth.register_client(bank, name="压测银行后台", app_id=CLIENT_APP_ID, client_cert=cert_pem,
                                               allowed_hosts=["127.0.0.1"], rate_limit_per_minute=RATE_LIMIT_PER_MINUTE)
        client.client_cert, client.client_serial_no = cert_pem, serial
        client.rate_limit_per_minute, client.status = RATE_LIMIT_PER_MINUTE, "active"
        db.session.commit()
        account = db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == bank.id,
                                                                 TunnelAccount.tunnel == "yunshuhui")
                                     ).scalar_one_or_none()
        if account is None:  # its URLs are set once the sandbox's server is up (prepare)
            account = sandbox.connect_tunnel_account(bank.id, "http://127.0.0.1:9", member_id=YSH_MEMBER_ID,
                                                     app_id=YSH_APP_ID)
        activity = db.session.execute(select(CouponActivity).where(CouponActivity.code == ACTIVITY_CODE)
                                      ).scalar_one_or_none()
        if activity is None:
            from datetime import timedelta

            now = utcnow()
            activity = CouponActivity(
                org_id=bank.id, code=ACTIVITY_CODE, name=ACTIVITY_NAME, tunnel="yunshuhui", channel="wechat",
                coupon_type="threshold", batch_no="880000001", upstream_activity_id=UPSTREAM_ACTIVITY_ID,
                owner_id=OWNER_ID, promotion_id=PROMOTION_ID, start_at=now - timedelta(days=1),
                end_at=now + timedelta(days=3650), promo_amount_fen=1000, threshold_fen=5000, valid_type="absolute",
                issue_total=ISSUE_TOTAL, per_member_limit=1, issued_count=0, enabled=True)
            db.session.add(activity)
            db.session.commit()
        sandbox.define_activity(UPSTREAM_ACTIVITY_ID, "压测立减券", face_value_fen=1000, threshold_fen=5000)
        sandbox.reset_settings()
        return {"org_id": bank.id, "client_id": client.id, "app_id": CLIENT_APP_ID, "serial": serial,
                "private_pem": private_pem, "our_cert": client.our_cert, "our_serial": client.our_serial_no,
                "account_id": account.id, "activity_id": activity.id, "activity_code": ACTIVITY_CODE,
                "run": time.strftime("%y%m%d%H%M%S")}


# --- the servers and workers around ours -----------------------------------------------------------

def prepare(app, state: dict, base_url: str) -> None:
    """Start the 云数汇 sandbox in a gunicorn of its own (and point the tunnel account at it) and
    the bank's notification endpoint in a process of its own."""
    import types
    from datetime import datetime

    from app.coupons.models import TunnelAccount
    from app.extensions import db
    from bench.run import RESULTS, free_port, start_gunicorn

    port = free_port()
    server_args = types.SimpleNamespace(workers=PLATFORM_WORKERS, worker_class="gthread", threads=PLATFORM_THREADS)
    log = RESULTS / f"gunicorn-ysh-sandbox-{datetime.now():%Y%m%d-%H%M%S}.log"
    _processes["platform"].append(start_gunicorn(server_args, {**os.environ, "EMBEDDED_WORKERS": "false"}, port, log))
    site = f"http://127.0.0.1:{port}"
    print(f"云数汇 sandbox: {PLATFORM_WORKERS} gthread workers x {PLATFORM_THREADS} threads on {site}/sandbox/yunshuhui",
          flush=True)
    with app.app_context():
        account = db.session.get(TunnelAccount, state["account_id"])
        account.base_url = f"{site}/sandbox/yunshuhui"
        account.openid_url = f"{site}/sandbox/yunshuhui/openid/{account.member_id}"
        db.session.commit()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.scenarios.coupons", "receive"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _processes["receiver"].append(receiver)
    state["receiver"] = receiver.stdout.readline().strip()
    state["base_url"] = base_url
    print(f"bank notification endpoint: {state['receiver']}", flush=True)


def _start_workers(state: dict) -> None:
    """`rq worker --worker-class jobs.worker.AppWorker --url $REDIS_URL outbox default reports`,
    RQ_WORKERS of them, as the README's production section runs them, and `rq cron` with the
    outbox relay (the safety net of production's schedule; bench/coupons_cron.py)."""
    from datetime import datetime

    from bench.run import RESULTS

    rq = Path(sys.executable).parent / "rq"
    env = {**os.environ, "EMBEDDED_WORKERS": "false", "PUBLIC_BASE_URL": state["base_url"]}
    log = open(RESULTS / f"rq-workers-{datetime.now():%Y%m%d-%H%M%S}.log", "ab")
    _processes["workers"].append(subprocess.Popen(
        [str(rq), "cron", "--url", os.environ["REDIS_URL"], "--logging-level", "warning", "bench/coupons_cron.py"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    for n in range(RQ_WORKERS):
        _processes["workers"].append(subprocess.Popen(
            [str(rq), "worker", "--worker-class", RQ_WORKER_CLASS, "--url", os.environ["REDIS_URL"],
             "--logging_level", "WARNING",
             "--name", f"bench-coupons-{os.getpid()}-{n}", "outbox", "default", "reports"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def finish(app, state: dict) -> None:
    from bench.run import stop_server

    for process in _processes["workers"] + _processes["receiver"]:
        _stop(process)
    for server in _processes["platform"]:
        stop_server(server)
    for kind in _processes:
        _processes[kind].clear()


def cases(state: dict) -> list[Case]:
    return []  # every request is signed for once: `measure` sends them


# --- signed requests -----------------------------------------------------------------------------

def _issue_requests(state: dict, kind: str, count: int, first: int = 0) -> list[dict]:
    """`count` issue requests, each signed now with a fresh nonce and timestamp."""
    from app.providers import lklapi

    receiver = state["receiver"]
    requests = []
    for i in range(first, first + count):
        call_trade_no = f"B{state['run']}{kind}{i:07d}"
        body = json.dumps({"openId": f"oB{state['run']}{kind}{i:07d}", "activityCode": state["activity_code"],
                           "callTradeNo": call_trade_no, "writeOffNotify": f"{receiver}/redeemed",
                           "postNotify": f"{receiver}/issued"}, separators=(",", ":")).encode()
        headers = {"Authorization": lklapi.request_authorization(state["app_id"], state["serial"], state["private_pem"],
                                                                 body),
                   "Content-Type": "application/json", "Idempotency-Key": call_trade_no}
        requests.append({"path": "/api/v1/coupons/issue", "headers": headers, "body": body.decode(),
                         "status": 202})
    return requests


def _fire(base: str, requests: list[dict], clients: int, duration: float | None = None,
          warmup: list[dict] | None = None) -> dict:
    spec = {"base_url": base, "clients": clients, "duration": duration, "requests": requests, "warmup": warmup or []}
    done = subprocess.run([sys.executable, "-m", "bench.scenarios.coupons", "fire"], cwd=REPO, input=json.dumps(spec),
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the coupon sender failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def _row(name: str, sent: dict) -> dict:
    from bench.load import percentile

    done = [r for r in sent["results"] if r is not None]
    values = sorted(r["latency"] for r in done)
    errors = [r for r in done if r["problem"]]
    seconds = sent["seconds"]
    return {"name": name, "requests": len(done), "errors": len(errors),
            "error_samples": [r["problem"] for r in errors[:5]], "seconds": round(seconds, 3),
            "rps": round(len(done) / seconds, 1) if seconds > 0 else 0.0,
            "p50_ms": round(percentile(values, 50) * 1000, 2), "p95_ms": round(percentile(values, 95) * 1000, 2),
            "p99_ms": round(percentile(values, 99) * 1000, 2), "max_ms": round((values[-1] if values else 0) * 1000, 2)}


def _goal(row: dict, baseline: dict, what: str) -> str:
    ratio = row["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    verdict = "PASS" if ratio >= GOAL else "FAIL"
    return (f"{what}: {row['rps']:.1f}/s = {ratio:.2f}x /healthz ({baseline['rps']:.1f}/s), goal >= {GOAL:.2f}x: "
            f"{verdict}; p99 {row['p99_ms']:.1f} ms vs /healthz p99 {baseline['p99_ms']:.1f} ms")


# --- the database's side -------------------------------------------------------------------------

def _batch_filter(state: dict, kind: str):
    from app.coupons.models import CouponIssue

    return (CouponIssue.org_id == state["org_id"], CouponIssue.call_trade_no.like(f"B{state['run']}{kind}%"))


def _settled_count(app, state: dict, kinds: str) -> tuple[int, int]:
    """(issues of these batches, those settled)."""
    from sqlalchemy import func, or_, select

    from app.coupons.models import CouponIssue
    from app.extensions import db

    with app.app_context():
        batch = or_(*[CouponIssue.call_trade_no.like(f"B{state['run']}{k}%") for k in kinds])
        total, settled = db.session.execute(select(
            func.count(), func.count().filter(CouponIssue.status.in_(("succeeded", "failed"))))
            .where(CouponIssue.org_id == state["org_id"], batch)).one()
        db.session.rollback()
        return total, settled


def _wait_settled(app, state: dict, kinds: str, timeout: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        total, settled = _settled_count(app, state, kinds)
        if settled >= total or time.monotonic() > deadline:
            return total, settled
        time.sleep(0.2)


def _settle_times(app, state: dict, kind: str) -> dict:
    """Statuses, first accept, last settled and accept → settled latencies of one batch."""
    from sqlalchemy import select

    from app.coupons.models import CouponIssue
    from app.extensions import db

    with app.app_context():
        rows = db.session.execute(select(CouponIssue.status, CouponIssue.created_at, CouponIssue.issued_at,
                                         CouponIssue.updated_at).where(*_batch_filter(state, kind))).all()
        db.session.rollback()
    settled_at = [(r.issued_at or r.updated_at) for r in rows if r.status in ("succeeded", "failed")]
    return {"statuses": Counter(r.status for r in rows),
            "first_accept": min((r.created_at for r in rows), default=None),
            "last_settled": max(settled_at, default=None),
            "latencies": sorted(((r.issued_at or r.updated_at) - r.created_at).total_seconds()
                                for r in rows if r.status in ("succeeded", "failed"))}


# --- the cases -----------------------------------------------------------------------------------

def measure(app, state: dict, base: str, args, baseline: dict, results: list[dict]) -> list[dict]:
    rows = [_acceptance(state, base, args, baseline), _signed_floor(state, base, args, baseline)]
    _start_workers(state)
    print(f"started {RQ_WORKERS} rq workers ({RQ_WORKER_CLASS}; outbox default reports)", flush=True)
    rows.append(_drain(app, state, rows[0]))
    rows.append(_end_to_end(app, state, base, args))
    rows.append(_storm(app, state, base, args, baseline))
    return rows


def _acceptance(state: dict, base: str, args, baseline: dict) -> dict:
    wanted = min(args.max_requests, int(baseline["rps"] * args.duration * 1.3) + 100)
    warmup_count = args.clients * args.warmup
    started = time.perf_counter()
    warmup = _issue_requests(state, "W", warmup_count)
    requests = _issue_requests(state, "A", wanted)
    print(f"signed {warmup_count + wanted:,} issue requests in {time.perf_counter() - started:.1f} s", flush=True)
    sent = _fire(base, requests, args.clients, args.duration, warmup)
    row = _row(f"issue API accepted, distinct customers ({args.clients} clients)", sent)
    unsent = wanted - row["requests"]
    row["notes"] = [_goal(row, baseline, "(a) issue acceptance")]
    if unsent == 0:
        row["notes"].append("    (every pre-signed request was sent before the time was up: sign more to run longer)")
    return row


def _query_requests(state: dict, count: int) -> list[dict]:
    """`count` signed look-ups of callTradeNos that were never issued (each answered 404, signed)."""
    from app.providers import lklapi

    return [{"method": "GET", "path": f"/api/v1/coupons/issues/N{state['run']}{i:07d}", "body": "", "status": 404,
             "headers": {"Authorization": lklapi.request_authorization(state["app_id"], state["serial"],
                                                                       state["private_pem"], b"")}}
            for i in range(count)]


def _signed_floor(state: dict, base: str, args, baseline: dict) -> dict:
    """The cheapest signed request there is: its signature, nonce and client checked, its rate limit
    counted, one indexed look-up, the answer signed. No signed operation of the API (an issue, a
    draw) can go faster; its ratio to /healthz is the ceiling of theirs on this machine."""
    wanted = min(args.max_requests, int(baseline["rps"] * args.duration * 1.3) + 100)
    sent = _fire(base, _query_requests(state, wanted), args.clients, args.duration,
                 _query_requests(state, args.clients * args.warmup))
    row = _row(f"signed query of an unknown callTradeNo, 404 ({args.clients} clients)", sent)
    ratio = row["rps"] / baseline["rps"] if baseline["rps"] else 0.0
    row["notes"] = [f"(floor) a signed API request at its cheapest: {row['rps']:.1f}/s = {ratio:.2f}x /healthz "
                    f"({baseline['rps']:.1f}/s): the ceiling of any signed operation's ratio in this run"]
    return row


def _drain(app, state: dict, accepted: dict) -> dict:
    """The backlog (a) left, from the workers' start to the last issue settled."""
    started = time.time()
    total, settled = _wait_settled(app, state, "AW", SETTLE_TIMEOUT_S)
    seconds = time.time() - started
    times = {k: _settle_times(app, state, k) for k in "AW"}
    statuses = times["A"]["statuses"] + times["W"]["statuses"]
    rate = settled / seconds if seconds else 0.0
    note = (f"(a') backlog drain: {settled:,} of {total:,} queued issues settled by {RQ_WORKERS} rq workers in "
            f"{seconds:.1f} s = {rate:.1f} issues/s; statuses {dict(statuses)}")
    return {"name": "backlog drain", "notes": [note], "errors": total - settled}


def _end_to_end(app, state: dict, base: str, args) -> dict:
    from bench.load import percentile

    requests = _issue_requests(state, "E", E2E_ISSUES)
    sent = _fire(base, requests, args.clients)
    request_row = _row("", sent)
    total, settled = _wait_settled(app, state, "E", SETTLE_TIMEOUT_S)
    times = _settle_times(app, state, "E")
    first_sent = sent["started_epoch"]
    last = times["last_settled"].timestamp() if times["last_settled"] else time.time()
    seconds = last - first_sent
    values = times["latencies"]
    row = {"name": f"issue end to end, accept -> settled ({RQ_WORKERS} rq workers)", "requests": settled,
           "errors": request_row["errors"] + (total - settled) + (E2E_ISSUES - total),
           "error_samples": request_row["error_samples"], "seconds": round(seconds, 3),
           "rps": round(settled / seconds, 1) if seconds > 0 else 0.0,
           "p50_ms": round(percentile(values, 50) * 1000, 2), "p95_ms": round(percentile(values, 95) * 1000, 2),
           "p99_ms": round(percentile(values, 99) * 1000, 2)}
    row["notes"] = [
        f"(b) end to end: {E2E_ISSUES:,} issues POSTed in {sent['seconds']:.1f} s ({request_row['rps']:.1f}/s "
        f"accepted, {request_row['errors']} errors); {settled:,} settled {dict(times['statuses'])}; first request "
        f"-> last settled {seconds:.1f} s = {row['rps']:.1f} issues/s; latency columns: accept -> settled per issue"]
    return row


def _storm_requests(app, state: dict, base: str) -> tuple[list[dict], list[int]]:
    from sqlalchemy import select

    from app.coupons.models import CouponIssue
    from app.extensions import db
    from app.sandbox import yunshuhui as sandbox
    from app.sandbox.yunshuhui_models import SandboxYshCoupon

    with app.app_context():
        issues = db.session.execute(select(CouponIssue.id, CouponIssue.order_no).where(
            *_batch_filter(state, "E"), CouponIssue.status == "succeeded").order_by(CouponIssue.id)
            .limit(STORM_COUPONS)).all()
        coupons = list(db.session.execute(select(SandboxYshCoupon).where(
            SandboxYshCoupon.member_id == YSH_MEMBER_ID,
            SandboxYshCoupon.mer_order_id.in_([i.order_no for i in issues]))).scalars())
        url = f"{base}/callbacks/yunshuhui/{state['account_id']}/redemption"
        storm = sandbox.storm(coupons, copies=STORM_COPIES, bad_signature_percent=STORM_BAD_PERCENT, url=url)
        path = url[len(base):]
        requests = [{"path": path, "headers": r.headers, "body": r.body.decode(),
                     "status": 200 if r.good_signature else 401, "expect": '"code":"SUCCESS"' if r.good_signature
                     else '"code":"FAIL"'} for r in storm]
        return requests, [i.id for i in issues]


def _storm(app, state: dict, base: str, args, baseline: dict) -> dict:
    from app.core.timeutil import utcnow

    started = time.perf_counter()
    requests, issue_ids = _storm_requests(app, state, base)
    print(f"built and signed a storm of {len(requests):,} callbacks over {len(issue_ids):,} coupons "
          f"in {time.perf_counter() - started:.1f} s", flush=True)
    fired_at = utcnow()
    sent = _fire(base, requests, args.clients)
    row = _row(f"callback storm, {len(requests):,} over {len(issue_ids):,} coupons ({args.clients} clients)", sent)
    row["notes"] = [_goal(row, baseline, "(c) callback storm")]
    checks = _storm_checks(app, state, requests, sent, issue_ids, fired_at)
    row["notes"] += [f"    {'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks]
    row["errors"] += sum(1 for ok, _ in checks if not ok)
    return row


def _received(state: dict) -> dict:
    import httpx

    return httpx.get(f"{state['receiver']}/counts", timeout=30).json()


def _storm_checks(app, state: dict, requests: list[dict], sent: dict, issue_ids: list[int],
                  fired_at) -> list[tuple[bool, str]]:
    from sqlalchemy import func, select

    from app.coupons.models import BankNotification, CouponCallback, CouponIssue
    from app.extensions import db

    wanted = len(issue_ids)
    bad = sum(1 for r in requests if r["status"] == 401)
    answers = Counter((requests[r["index"]]["status"], r["status"]) for r in sent["results"] if r is not None)
    # The bank hears of each redemption once the workers have delivered the notifications.
    deadline = time.monotonic() + NOTIFY_TIMEOUT_S
    with app.app_context():
        while time.monotonic() < deadline:
            pending = db.session.execute(select(func.count()).select_from(BankNotification).where(
                BankNotification.issue_id.in_(issue_ids), BankNotification.kind == "redemption",
                BankNotification.status == "pending")).scalar_one()
            db.session.rollback()
            if not pending:
                break
            time.sleep(0.5)
        time.sleep(2)  # anything sent twice would have arrived by now
        redeemed = db.session.execute(select(func.count()).select_from(CouponIssue).where(
            CouponIssue.id.in_(issue_ids), CouponIssue.redemption_status == "used")).scalar_one()
        outcomes = dict(db.session.execute(select(CouponCallback.outcome, func.count()).where(
            CouponCallback.tunnel_account_id == state["account_id"], CouponCallback.kind == "redemption",
            CouponCallback.received_at >= fired_at).group_by(CouponCallback.outcome)).all())
        applied_per_issue = db.session.execute(select(func.count(func.distinct(CouponCallback.issue_id))).where(
            CouponCallback.issue_id.in_(issue_ids), CouponCallback.outcome == "applied",
            CouponCallback.kind == "redemption")).scalar_one()
        notes, noted_issues, delivered = db.session.execute(select(
            func.count(), func.count(func.distinct(BankNotification.issue_id)),
            func.count().filter(BankNotification.status == "delivered")).where(
            BankNotification.issue_id.in_(issue_ids), BankNotification.kind == "redemption")).one()
        call_trade_nos = set(db.session.execute(select(CouponIssue.call_trade_no).where(
            CouponIssue.id.in_(issue_ids))).scalars())
        db.session.rollback()
    received = {k: v for k, v in _received(state).get("REDEMPTION", {}).items() if k in call_trade_nos}
    twice = sum(1 for n in received.values() if n > 1)
    return [
        (redeemed == wanted, f"{redeemed:,} of {wanted:,} coupons redeemed (exactly {wanted:,} wanted)"),
        (outcomes.get("applied", 0) == wanted and applied_per_issue == wanted,
         f"{outcomes.get('applied', 0):,} callbacks applied, on {applied_per_issue:,} coupons (one each wanted); "
         f"outcomes {outcomes}"),
        (notes == wanted and noted_issues == wanted,
         f"{notes:,} redemption notifications owed to the bank for {noted_issues:,} coupons (one each wanted)"),
        (delivered == wanted and len(received) == wanted and twice == 0,
         f"the bank received {sum(received.values()):,} redemption notifications for {len(received):,} coupons, "
         f"{twice} of them more than once ({delivered:,} marked delivered)"),
        (answers.get((401, 401), 0) == bad and outcomes.get("rejected", 0) == bad,
         f"{answers.get((401, 401), 0):,} of {bad:,} badly signed callbacks answered 401, "
         f"{outcomes.get('rejected', 0):,} kept as rejected"),
        (answers.get((200, 200), 0) == len(requests) - bad,
         f"{answers.get((200, 200), 0):,} of {len(requests) - bad:,} well signed callbacks answered 200 SUCCESS"),
    ]


# --- helper processes: the sender and the bank's endpoint ----------------------------------------

def _send_all(spec: dict) -> dict:
    """Send every request (each once) from `clients` threads, for at most `duration` seconds."""
    import itertools

    import httpx

    base, clients, requests = spec["base_url"], int(spec["clients"]), spec["requests"]
    duration, warmup = spec.get("duration"), spec.get("warmup") or []
    results: list[dict | None] = [None] * len(requests)
    budget, warm = itertools.count(), itertools.count()
    start: list[float] = []
    ready = threading.Barrier(clients, action=lambda: start.append(time.perf_counter()))
    ended = [0.0] * clients
    epoch: list[float] = []

    def send(http: httpx.Client, request: dict) -> tuple[int, str]:
        response = http.request(request.get("method", "POST"), request["path"], content=request["body"].encode(),
                                headers=request["headers"])
        return response.status_code, response.text

    def client(number: int) -> None:
        with httpx.Client(base_url=base, timeout=60.0) as http:
            while (w := next(warm)) < len(warmup):
                try:
                    send(http, warmup[w])
                except httpx.HTTPError:
                    pass
            ready.wait()
            if number == 0:
                epoch.append(time.time())
            deadline = start[0] + duration if duration else None
            while (n := next(budget)) < len(requests):
                if deadline and time.perf_counter() >= deadline:
                    break
                request = requests[n]
                began = time.perf_counter()
                try:
                    status, text = send(http, request)
                    problem = None
                    if status != request["status"] or (request.get("expect") and request["expect"] not in text):
                        problem = f"{request['path']}: HTTP {status} {text[:160]}"
                except httpx.HTTPError as exc:
                    status, problem = None, f"{request['path']}: {type(exc).__name__}: {exc}"
                results[n] = {"index": n, "status": status, "latency": time.perf_counter() - began, "problem": problem}
            ended[number] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"results": results, "seconds": max(ended) - start[0], "started_epoch": epoch[0] if epoch else time.time()}


def _serve_bank() -> None:
    """The bank's notification endpoint: answers {"code":"SUCCESS"}, counts per notifyType and
    callTradeNo; GET /counts answers the counts. Prints its URL, then serves until killed."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    counts: dict[str, Counter] = {}
    lock = threading.Lock()

    @Request.application
    def wsgi(request: Request) -> Response:
        if request.method == "GET":
            with lock:
                return Response(json.dumps({k: dict(v) for k, v in counts.items()}), content_type="application/json")
        try:
            document = json.loads(request.get_data())
            key = (document.get("notifyType") or "?", document.get("callTradeNo") or "?")
        except ValueError:
            key = ("unreadable", "?")
        with lock:
            counts.setdefault(key[0], Counter())[key[1]] += 1
        return Response('{"code":"SUCCESS","msg":"ok"}', content_type="application/json")

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    print(f"http://127.0.0.1:{server.server_port}/bank", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:] == ["fire"]:
        json.dump(_send_all(json.load(sys.stdin)), sys.stdout)
    elif sys.argv[1:] == ["receive"]:
        _serve_bank()
    else:
        raise SystemExit("usage: python -m bench.scenarios.coupons fire|receive")
