"""Shared fixtures: the app on the real PostgreSQL and Redis, a clean database per test, factories.

The schema is built once per run by the migrations (never `create_all`); between tests every
table is truncated, so tests may commit, use threads and see each other's commits.
"""
from __future__ import annotations

import os

import pytest
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text

from app import create_app
from app.config import TestConfig
from app.extensions import db, get_redis
from tests.factories import Factories

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config) -> None:
    # Options of a select field are `app.core.choices.options`: WTForms 3.4 drops plain tuples.
    config.addinivalue_line("filterwarnings", "error:Passing SelectField choices:DeprecationWarning")


def reset_schema() -> None:
    """Drop everything in the test database and rebuild it with the migrations."""
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public;"))
    upgrade(directory=os.path.join(REPO, "migrations"), revision="heads")


def truncate_all() -> None:
    """Empty the tables a test wrote to and restart every id sequence.

    Truncating all ~80 tables took ~450 ms a test (each truncated table gets new files); most tests
    write to a handful, found in one round trip, and the sequences restart with one query."""
    quoted = [f'"{t.name}"' for t in db.metadata.sorted_tables]
    probe = " UNION ALL ".join(f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM {name})" for name in quoted)
    db.session.remove()
    with db.engine.begin() as conn:
        used = [row[0] for row in conn.execute(text(probe))]
        if used:
            conn.execute(text(f"TRUNCATE {', '.join(used)} RESTART IDENTITY CASCADE"))
        conn.execute(text("SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE c.relkind = 'S' AND n.nspname = 'public'"))


class FreshContextClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    Tests hold an app context for their own database work; without this, requests would share
    that context's `g` (Flask-Login's cached user, Flask-WTF's CSRF token) from one to the next.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app():
    app = create_app(TestConfig)
    app.test_client_class = FreshContextClient
    with app.app_context():
        reset_schema()
    yield app


@pytest.fixture(autouse=True)
def clean_state(app):
    """Every test starts with empty tables and an empty Redis database, inside an app context."""
    with app.app_context():
        truncate_all()
        get_redis().flushdb()
        yield
        db.session.remove()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make(app):
    """Factories for orgs, operators, members and products (see tests/factories.py)."""
    return Factories()


class Auth:
    """Logs a test client in through the real login form (CSRF included)."""

    def __init__(self, client):
        self.client = client

    def login(self, username: str, password: str = "secret-pass-123"):
        from tests.helpers import csrf_from

        page = self.client.get("/login")
        return self.client.post("/login", data={"username": username, "password": password,
                                                "csrf_token": csrf_from(page)})

    def logout(self):
        from tests.helpers import csrf_from

        page = self.client.get("/dashboard")
        return self.client.post("/logout", data={"csrf_token": csrf_from(page)})


@pytest.fixture
def auth(client):
    return Auth(client)
