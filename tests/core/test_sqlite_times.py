"""The embedded default's SQLite hands back UTC-aware times, as PostgreSQL does (app/extensions.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, create_engine, func, insert, select

import app.extensions  # noqa: F401  (installs the SQLite date-time type)


def test_sqlite_reads_timezone_columns_back_as_aware_utc():
    engine = create_engine("sqlite://")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True),
                  Column("at", DateTime(timezone=True)), Column("naive", DateTime()))
    table.metadata.create_all(engine)
    shanghai = timezone(timedelta(hours=8))
    moment = datetime(2026, 11, 22, 10, 30, tzinfo=timezone.utc)
    with engine.begin() as connection:
        connection.execute(insert(table).values(id=1, at=moment, naive=datetime(2026, 11, 22, 10, 30)))
        at, naive, latest = connection.execute(select(table.c.at, table.c.naive, func.max(table.c.at))).one()
    assert at == moment and at.tzinfo is not None and at.astimezone(shanghai).hour == 18
    assert latest == moment and latest.tzinfo is not None  # aggregates keep the column's type
    assert naive.tzinfo is None  # a column without a time zone stays naive
