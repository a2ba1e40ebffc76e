"""Extension singletons, created here and bound to the app in `create_app`."""
from __future__ import annotations

import functools

from babel import Locale
from flask import Flask, current_app, has_request_context, request, session
from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from htmx_flask import Htmx
from redis import Redis
from datetime import timezone

from sqlalchemy import MetaData
from sqlalchemy import types as sqltypes
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.dialects.sqlite import base as sqlite_base
from sqlalchemy.engine import Engine
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
limiter = Limiter(key_func=get_remote_address, strategy="fixed-window")


def select_locale() -> str:
    """The language chosen by the operator (session), else Simplified Chinese."""
    chosen = session.get("locale") if has_request_context() else None  # jobs and the CLI have no session
    if chosen in current_app.config["LANGUAGES"]:
        return chosen
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def _babel_locale() -> Locale:
    return _parsed_locale(select_locale())


@functools.cache
def _parsed_locale(identifier: str) -> Locale:
    """Babel's `Locale` of an identifier, parsed once per process: Flask-Babel would parse it at every
    request, and a parse scans Babel's whole list of locales (about 6 ms of CPU each time)."""
    return Locale.parse(identifier)


babel = Babel()


def init_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config.get("MIGRATIONS_DIR", "migrations")))
    login_manager.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    babel.init_app(app, locale_selector=_babel_locale)
    redis_url = app.config["REDIS_URL"]
    app.config.setdefault("RATELIMIT_STORAGE_URI", redis_url or "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter.init_app(app)
    app.extensions["redis"] = _make_redis(redis_url)


def _make_redis(url: str) -> Redis:
    if url:
        return Redis.from_url(url)
    import fakeredis  # the embedded default: one in-process server shared by all threads

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def dialect_insert():
    """The `insert` that can say `ON CONFLICT` on the session's database: PostgreSQL's, or SQLite's
    (the embedded default)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert


def upsert(model):
    """`INSERT` into `model` that can say `ON CONFLICT`, on PostgreSQL or on SQLite."""
    return dialect_insert()(model)


def upsert_built_once(build):
    """For a hot path's `ON CONFLICT` statement: `build(insert)` is made once with PostgreSQL's
    insert and once with SQLite's; the function returned hands out the one for the session's
    database (building it and computing its cache key at every request would cost more than
    running it)."""
    from sqlalchemy.dialects import postgresql, sqlite

    built = {insert: build(insert) for insert in (postgresql.insert, sqlite.insert)}
    return lambda: built[dialect_insert()]


def commit_keeping_loaded() -> None:
    """Commit without expiring what the session has loaded: for requests that only read those rows
    afterwards (reloading each one would cost a query), or that end the transaction early to hand
    its connection back to the pool while a partner platform answers."""
    session = db.session()
    keep = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = keep


def begin_writing() -> None:
    """Open the session's transaction as a writer, for work that always writes after reading.

    Only SQLite (the embedded default) needs it: a transaction that reads first (a savepoint opens
    one) holds a snapshot, and when another writer commits before it writes, SQLite refuses it at
    once ("database is locked") instead of waiting. `BEGIN IMMEDIATE` takes the write lock first,
    waiting up to the busy timeout for the writer before it. PostgreSQL: nothing to do."""
    if db.session.get_bind().dialect.name != "sqlite":
        return
    connection = db.session.connection()
    if not connection.connection.driver_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def get_redis() -> Redis:
    """The Redis connection of the current app (real Redis, or fakeredis when embedded)."""
    return current_app.extensions["redis"]


def client_ip() -> str:
    """The caller's address as the app sees it (behind ProxyFix in production)."""
    return request.remote_addr or "-"


class _AwareSQLiteDateTime(sqlite_base.DATETIME):
    """SQLite keeps no time zone, so it hands back naive datetimes; a `DateTime(timezone=True)` column
    is UTC by our rules (we only ever store UTC), so it is read back as an aware UTC datetime, as on
    PostgreSQL. Without this, the embedded default would compare naive with aware times."""

    def result_processor(self, dialect, coltype):
        parse = super().result_processor(dialect, coltype)
        if not self.timezone:
            return parse

        def aware(value):
            value = parse(value) if parse else value
            return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value

        return aware


for _dialect in (sqlite_base.SQLiteDialect, pysqlite.SQLiteDialect_pysqlite):
    _dialect.colspecs = {**_dialect.colspecs, sqltypes.DateTime: _AwareSQLiteDateTime}


@sqlalchemy_event.listens_for(Engine, "connect")
def _sqlite_for_threads(dbapi_connection, connection_record) -> None:
    """The embedded default serves requests, runs its worker and cron threads and answers as the
    partner sandboxes, all in one process on one SQLite file: in WAL mode a reader (a job waiting on
    a sandbox's answer) does not block the sandbox's writes, and a writer waits up to 15 s for
    another rather than failing at once."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()
