"""What every report shares: Asia/Shanghai days and months grouped in SQL (`local_day`,
`local_month`), the day range of a report's date filter (`clamp_days`), and percentages with one
decimal (`percent`: None when there is nothing to divide by, which screens show as "—").

PostgreSQL shifts with `timezone('Asia/Shanghai', …)`; SQLite (the embedded default) adds eight
hours (Shanghai has kept UTC+8 without daylight saving since 1991) and answers dates as text.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import Date
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.core.timeutil import BUSINESS_TZ

MAX_DAYS = 366
DEFAULT_DAYS = 30


class local_day(FunctionElement):  # noqa: N801 - used like a SQL function
    """The Asia/Shanghai date of a UTC timestamp column."""

    type = Date()
    inherit_cache = True


class local_month(FunctionElement):  # noqa: N801
    """The first day of the Asia/Shanghai month of a UTC timestamp column."""

    type = Date()
    inherit_cache = True


@compiles(local_day, "postgresql")
def _pg_day(element, compiler, **kw):
    return f"date(timezone('{BUSINESS_TZ}', {compiler.process(element.clauses, **kw)}))"


@compiles(local_month, "postgresql")
def _pg_month(element, compiler, **kw):
    return f"date(date_trunc('month', timezone('{BUSINESS_TZ}', {compiler.process(element.clauses, **kw)})))"


@compiles(local_day)
def _sqlite_day(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '+8 hours')"


@compiles(local_month)
def _sqlite_month(element, compiler, **kw):
    return f"strftime('%Y-%m-01', {compiler.process(element.clauses, **kw)}, '+8 hours')"


def as_date(value: Any) -> date:
    """A grouped day as a date (SQLite answers `local_day` / `local_month` as text)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def clamp_days(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """A day range in order, defaulting to the last 30 days and at most a year long."""
    last = last or today
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        first, last = last, first
    if (last - first).days >= MAX_DAYS:
        first = last - timedelta(days=MAX_DAYS - 1)
    return first, last


def days_between(first: date, last: date) -> list[date]:
    """Every day from first to last, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def percent(part: int, whole: int) -> float | None:
    """part ÷ whole in percent with one decimal; None when there is no whole."""
    return round(100 * part / whole, 1) if whole else None
