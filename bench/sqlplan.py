"""Query plans of the SQL a request really runs: capture it through the app, then EXPLAIN it.

The request goes through the app's test client in this process (logged in through the real
login form), so the plans are those of the views' own queries, whatever they are today.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@contextmanager
def captured_sql(engine) -> Iterator[list[tuple[str, object]]]:
    """Collect (statement, parameters) of every statement the engine runs inside the block."""
    statements: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", remember)


def logged_in_client(app, username: str, password: str):
    client = app.test_client()
    page = client.get("/login")
    token = _CSRF.search(page.get_data(as_text=True))
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": token.group(1) if token else ""})
    if response.status_code != 302:
        raise RuntimeError(f"bench login as {username} failed: HTTP {response.status_code}")
    return client


def explain_request(app, client, path: str, table: str, analyze: bool = True) -> list[str]:
    """The plans of the SELECTs touching `table` that GET `path` runs, as printable lines."""
    from app.extensions import db

    with app.app_context():
        engine = db.engine
    with captured_sql(engine) as statements:
        response = client.get(path)
    lines = [f"GET {path}  -> HTTP {response.status_code}, {len(statements)} statements"]
    pattern = re.compile(rf"\b{re.escape(table)}\b")
    relevant = [(s, p) for s, p in statements if s.lstrip().upper().startswith("SELECT") and pattern.search(s)]
    if not relevant:
        lines.append(f"  (no SELECT on {table})")
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            for statement, parameters in relevant:
                cursor.execute(("EXPLAIN (ANALYZE, COSTS OFF) " if analyze else "EXPLAIN ") + statement, parameters)
                plan = [row[0] for row in cursor.fetchall()]
                lines.append("  SQL: " + " ".join(statement.split())[:300])
                lines.extend("    " + step for step in plan)
                seq = [step.strip() for step in plan if f"Seq Scan on {table}" in step]
                lines.append("    => " + ("SEQUENTIAL SCAN of " + table if seq else "index access only"))
            raw.rollback()
        finally:
            raw.close()
    return lines
