"""The schema comes from the migrations only, and they agree with the models."""
from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db
from tests.conftest import REPO


def test_models_and_migrations_agree(app):
    """The test database is built by `flask db upgrade`; the models must describe exactly that schema."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_migrations_build_the_schema_on_sqlite(tmp_path):
    """The embedded default's database is built by the same migrations."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}", "REDIS_URL": "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                            capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "hub.db").execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {t.name for t in db.metadata.sorted_tables} <= tables
