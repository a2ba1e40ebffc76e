"""Load benchmarks: the app under gunicorn on PostgreSQL + Redis, loaded from a separate process.

    python bench/run.py [--scenario members] [--clients 8] [--duration 10] [--fresh]   (or: make bench)

What it does:
1. creates the bench database if missing (BENCH_DATABASE_URL, its own, never the test one),
   wipes it with --fresh, and migrates it to the head revision; empties its own Redis database;
2. lets each scenario (bench/scenarios/*.py) seed what it needs (idempotent: kept between runs);
3. starts gunicorn (4 sync workers by default, as in production) on 127.0.0.1 and a free port;
4. logs in where a case needs it, then runs bench/load.py in a separate process: a /healthz
   baseline first, then every case, each with N client threads for a bounded time and count;
5. prints requests/s, p50/p95/p99 latency and errors per case, and each case against the
   /healthz baseline of the same run; then the query plans the scenarios ask for.

Results are also written to bench/results/<time>.json (ignored by git). Only loopback is loaded.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/marketing_hub_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
RESULTS = REPO / "bench" / "results"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", action="append", help="scenario NAME (repeatable; default: all)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case, at most (default 10)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests per case, at most")
    parser.add_argument("--warmup", type=int, default=3, help="unrecorded requests per client before a case")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (with --worker-class gthread)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--fresh", action="store_true", help="wipe the bench database and seed again")
    parser.add_argument("--no-explain", action="store_true", help="skip the query plans")
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("--clients, --duration and --max-requests must be positive")
    return args


# --- database, app and seeds ------------------------------------------------------------------

def prepare_database(url: str, fresh: bool) -> None:
    """Create the bench database if needed (and wipe it with --fresh)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        raise SystemExit("the benchmarks run on PostgreSQL: BENCH_DATABASE_URL must be a postgresql:// URL")
    if target.database in {"test", None}:
        raise SystemExit("the benchmarks need a database of their own, not the test database")
    server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}).first()
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            print(f"created database {target.database}")
    server.dispose()
    if fresh:
        engine = create_engine(target)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
        engine.dispose()
        print(f"wiped database {target.database}")


def make_app(database_url: str, redis_url: str):
    """The app on the bench database and Redis, migrated to the head revision."""
    from flask_migrate import upgrade

    from app import create_app
    from app.config import Config
    from app.extensions import get_redis

    app = create_app(Config, SQLALCHEMY_DATABASE_URI=database_url, REDIS_URL=redis_url, EMBEDDED_WORKERS=False)
    with app.app_context():
        upgrade(directory=str(REPO / "migrations"), revision="heads")  # others may be adding revisions side by side
        get_redis().flushdb()  # rate-limit counters of earlier runs
    return app


# --- the server under test --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(args, env: dict, port: int, log: Path) -> subprocess.Popen:
    """gunicorn serving the app on 127.0.0.1:`port` (`args.workers`, `.worker_class`, `.threads`), once it
    answers /healthz. Scenarios use it too, e.g. for a platform sandbox in a server of its own."""
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", f"127.0.0.1:{port}",
               "--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads),
               "--error-logfile", str(log), "--log-level", "warning",
               # as behind a reverse proxy that keeps its upstream connections open: gthread's default
               # of 2 s closed a client's connection while it waited for the others to start
               "--keep-alive", "30"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(120):
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise SystemExit(f"gunicorn did not answer /healthz within 30 s; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def login_cookies(base: str, username: str, password: str, csrf_from: str | None = None
                  ) -> tuple[dict[str, str], str | None]:
    """Log in through the real form; the session cookie is shared by the case's clients.

    With `csrf_from`, that page is fetched after the login and its CSRF token returned too (the
    token is bound to the session, so the cookies are taken after that page)."""
    import httpx

    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as http:
        page = http.get("/login")
        token = _CSRF.search(page.text)
        response = http.post("/login", data={"username": username, "password": password,
                                             "csrf_token": token.group(1) if token else ""})
        if response.status_code != 302:
            raise SystemExit(f"login as {username} failed: HTTP {response.status_code}")
        csrf = None
        if csrf_from:
            page = http.get(csrf_from)
            found = _CSRF.search(page.text)
            if page.status_code != 200 or not found:
                raise SystemExit(f"no CSRF token on {csrf_from} as {username}: HTTP {page.status_code}")
            csrf = found.group(1)
        return dict(http.cookies), csrf


def drive(base: str, cases: list[dict], args) -> list[dict]:
    """Run the load driver in its own process and return its results."""
    spec = {"base_url": base, "clients": args.clients, "duration": args.duration,
            "max_requests": args.max_requests, "warmup": args.warmup, "cases": cases}
    done = subprocess.run([sys.executable, "-m", "bench.load"], cwd=REPO, input=json.dumps(spec),
                          capture_output=True, text=True, timeout=len(cases) * (args.duration + 120))
    if done.returncode != 0:
        raise SystemExit(f"load driver failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


# --- report -----------------------------------------------------------------------------------

def print_table(results: list[dict], baseline: dict) -> None:
    header = (f"{'case':<46} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
              f"{'errors':>6} {'req/s vs healthz':>17} {'p50 vs healthz':>15}")
    print(header)
    print("-" * len(header))
    for r in results:
        rps_ratio = r["rps"] / baseline["rps"] if baseline["rps"] else 0.0
        p50_ratio = r["p50_ms"] / baseline["p50_ms"] if baseline["p50_ms"] else 0.0
        print(f"{r['name'][:46]:<46} {r['requests']:>8} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['errors']:>6} {rps_ratio:>16.2f}x {p50_ratio:>14.1f}x")
        for sample in r.get("error_samples", [])[:3]:
            print(f"    error: {sample}")


def main() -> int:
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["REDIS_URL"] = args.redis_url

    from bench.scenarios import Case, discover

    available = discover()
    chosen = args.scenario or list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; available: {sorted(available)}")

    prepare_database(args.database_url, args.fresh)
    app = make_app(args.database_url, args.redis_url)
    states = {}
    for name in chosen:
        print(f"setting up scenario {name}: {available[name].DESCRIPTION}", flush=True)
        states[name] = available[name].setup(app)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    port = free_port()
    # As in production, behind one reverse proxy: a scenario may send X-Forwarded-For for its players.
    env = {**os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "EMBEDDED_WORKERS": "false",
           "PROXY_FIX_HOPS": "1"}
    server = start_gunicorn(args, env, port, RESULTS / f"gunicorn-{stamp}.log")
    base = f"http://127.0.0.1:{port}"
    report = {"when": stamp, "clients": args.clients, "duration": args.duration, "max_requests": args.max_requests,
              "gunicorn": {"workers": args.workers, "worker_class": args.worker_class, "threads": args.threads},
              "cpus": os.cpu_count(), "scenarios": {}}
    try:
        print(f"\ngunicorn: {args.workers} {args.worker_class} workers on {base}; "
              f"{args.clients} clients, at most {args.duration:g} s / {args.max_requests} requests per case\n")
        cookies: dict[tuple, tuple[dict[str, str], str | None]] = {}
        baseline = drive(base, [Case("/healthz (baseline)", ["/healthz"]).to_json()], args)[0]
        report["baseline"] = baseline
        for name in chosen:
            module = available[name]
            if hasattr(module, "prepare"):
                module.prepare(app, states[name], base)
            cases = []
            for case in module.cases(states[name]):
                spec = case.to_json()
                if case.login:
                    key = (*case.login, case.csrf_from)
                    if key not in cookies:
                        cookies[key] = login_cookies(base, *case.login, csrf_from=case.csrf_from)
                    spec["cookies"], csrf = cookies[key]
                    if csrf:
                        spec["headers"] = {**spec["headers"], "X-CSRFToken": csrf}
                spec.pop("login")
                spec.pop("csrf_from")
                cases.append(spec)
            results = drive(base, cases, args) if cases else []
            if hasattr(module, "measure"):
                results += module.measure(app, states[name], base, args, baseline, list(results))
            report["scenarios"][name] = results
            print(f"scenario {name}: {module.DESCRIPTION}")
            print_table([baseline] + [r for r in results if "requests" in r], baseline)
            for r in results:
                for line in r.get("notes", []):
                    print(line)
            print()
    finally:
        for name in chosen:
            finish = getattr(available[name], "finish", None)
            if finish and name in states:
                finish(app, states[name])
        stop_server(server)

    if not args.no_explain:
        for name in chosen:
            explain = getattr(available[name], "explain", None)
            if explain:
                print(f"query plans of scenario {name} (EXPLAIN ANALYZE of the SQL the requests run):")
                for line in explain(app, states[name]):
                    print(line)
                print()

    out = RESULTS / f"bench-{stamp}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    print(f"results written to {out.relative_to(REPO)}")
    failed = sum(r.get("errors", 0) for results in report["scenarios"].values() for r in results) + baseline["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
