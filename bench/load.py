"""The load driver: a separate process that sends a case's requests from N client threads.

Reads a JSON spec on stdin, writes JSON results on stdout:

    spec = {"base_url": ..., "clients": 8, "duration": 10.0, "max_requests": 5000, "warmup": 3,
            "cases": [{"name", "paths", "method", "status", "expect", "headers", "cookies",
                       "forms", "clients", "warmup", "unique", "warmup_forms"}, ...]}

Each case runs for at most `duration` seconds and `max_requests` requests, whichever ends
first; every client first sends `warmup` unrecorded requests. Optional per case: `forms` (one
form body per path, sent with the method, e.g. POST), `clients` and `warmup` (override the
spec's), `unique` (each path/form is sent at most once: the case ends when they run out, e.g.
one voucher code per request) and `warmup_forms` (the bodies the warmup requests send, so that
a unique case's own bodies are not spent on the warmup). Latency is measured per request
from send to the end of the body. Only loopback addresses are accepted as targets.
"""
from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_ERROR_SAMPLES = 5


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def run_case(base_url: str, case: dict, clients: int, duration: float, max_requests: int, warmup: int) -> dict:
    paths: list[str] = case["paths"]
    forms: list[dict] | None = case.get("forms")
    warmup_forms: list[dict] = case.get("warmup_forms") or []
    unique = bool(case.get("unique"))
    clients = int(case.get("clients") or clients)
    warmup = int(case["warmup"]) if case.get("warmup") is not None else warmup
    if unique:
        max_requests = min(max_requests, len(paths))
    expect: list[str] | None = case.get("expect")
    method = case.get("method", "GET")
    want_status = case.get("status", 200)
    budget = itertools.count()  # next() is atomic under the GIL: a shared request budget
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    samples: list[str] = []
    start_at: list[float] = []
    # The clock starts once every client has warmed up (the barrier's action runs before any is released).
    ready = threading.Barrier(clients, action=lambda: start_at.append(time.perf_counter()))
    finished_at = [0.0] * clients

    def check(response: httpx.Response, index: int) -> str | None:
        if response.status_code != want_status:
            return f"{paths[index]}: HTTP {response.status_code}"
        if expect is not None and expect[index] not in response.text:
            return f"{paths[index]}: body lacks {expect[index]!r}"
        return None

    def client(number: int) -> None:
        with httpx.Client(base_url=base_url, cookies=case.get("cookies") or {}, headers=case.get("headers") or {},
                          timeout=30.0, follow_redirects=False) as http:
            for i in range(warmup):
                try:
                    if warmup_forms:
                        http.request(method, paths[0], data=warmup_forms[(number * warmup + i) % len(warmup_forms)])
                    elif unique:
                        break  # a unique case's own bodies are not spent on the warmup
                    else:
                        index = (number + i) % len(paths)
                        http.request(method, paths[index], data=forms[index] if forms else None)
                except httpx.HTTPError:
                    pass
            ready.wait()
            deadline = start_at[0] + duration
            k = 0
            while True:
                n = next(budget)
                if n >= max_requests or time.perf_counter() >= deadline:
                    break
                index = number + k * clients
                if unique and index >= len(paths):
                    break
                index %= len(paths)
                k += 1
                began = time.perf_counter()
                try:
                    response = http.request(method, paths[index], data=forms[index] if forms else None)
                    problem = check(response, index)
                except httpx.HTTPError as exc:
                    problem = f"{paths[index]}: {type(exc).__name__}: {exc}"
                latencies[number].append(time.perf_counter() - began)
                if problem:
                    errors[number] += 1
                    if len(samples) < MAX_ERROR_SAMPLES:
                        samples.append(problem)
            finished_at[number] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = max(finished_at) - start_at[0]
    all_latencies = sorted(itertools.chain.from_iterable(latencies))
    count = len(all_latencies)
    return {
        "name": case["name"],
        "requests": count,
        "errors": sum(errors),
        "error_samples": samples,
        "seconds": round(elapsed, 3),
        "rps": round(count / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(all_latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(all_latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(all_latencies, 99) * 1000, 2),
        "max_ms": round((all_latencies[-1] if all_latencies else 0.0) * 1000, 2),
    }


def main() -> None:
    spec = json.load(sys.stdin)
    host = urlsplit(spec["base_url"]).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"refusing to load {host!r}: benchmarks target this machine's loopback only")
    results = [
        run_case(spec["base_url"], case, int(spec["clients"]), float(spec["duration"]), int(spec["max_requests"]),
                 int(spec.get("warmup", 3)))
        for case in spec["cases"]
    ]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
