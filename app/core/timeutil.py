"""Time rules: timestamps are stored in UTC; people see Asia/Shanghai; business dates are Shanghai dates."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")
DISPLAY_FORMAT = "%Y-%m-%d %H:%M:%S"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Treat a naive datetime (as SQLite returns them) as UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def to_local(value: datetime | None) -> datetime | None:
    return as_utc(value).astimezone(BUSINESS_TZ) if value else None


def format_local(value: datetime | None, fmt: str = DISPLAY_FORMAT) -> str:
    return to_local(value).strftime(fmt) if value else ""


def business_today() -> date:
    return utcnow().astimezone(BUSINESS_TZ).date()


def local_day_start(day: date) -> datetime:
    """The UTC instant at which a Shanghai business day starts."""
    return datetime.combine(day, time.min, tzinfo=BUSINESS_TZ).astimezone(timezone.utc)


def local_day_range(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """UTC bounds [start, end) covering the Shanghai dates first..last inclusive."""
    start = local_day_start(first) if first else None
    end = local_day_start(last + timedelta(days=1)) if last else None
    return start, end


def parse_day(value: str | None) -> date | None:
    """A YYYY-MM-DD from a filter field, or None when it is empty or not a date."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None
