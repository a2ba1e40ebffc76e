"""A row id past BIGINT, in a URL or a form, is no row: 404, never a server error. PostgreSQL
compares such a number and finds nothing; SQLite (the embedded default) cannot even bind it, so
the checks run there."""
from __future__ import annotations

import os

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from app import create_app
from app.config import TestConfig
from app.extensions import db
from app.members.models import Product
from tests.conftest import REPO
from tests.factories import PASSWORD, Factories
from tests.helpers import csrf_from

TOO_BIG = "99999999999999999999"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The app on SQLite, with a platform administrator; its test client is logged in."""
    database = tmp_path_factory.mktemp("embedded") / "embedded.db"
    # TestConfig but for the database (another Redis would move the process-wide rate limiter to memory).
    app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{database}")
    with app.app_context():
        upgrade(directory=os.path.join(REPO, "migrations"), revision="heads")
        make = Factories()
        username = make.operator(make.platform(), roles=("platform_admin",)).username
        db.session.commit()
        client = app.test_client()
        page = client.get("/login")
        client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_from(page)})
        yield app, client
        db.session.remove()


def test_a_url_naming_a_row_past_bigint_is_not_found(embedded):
    _app, client = embedded
    assert client.get(f"/products/{TOO_BIG}/edit").status_code == 404
    assert client.get(f"/products/{2**63 - 1}/edit").status_code == 404  # the largest id routes, and is no row


def test_a_form_naming_an_organisation_past_bigint_is_not_found_and_creates_nothing(embedded):
    app, client = embedded
    token = csrf_from(client.get("/products"))
    answer = client.post("/products/new", data={"csrf_token": token, "org_id": TOO_BIG, "name": "理财A",
                                                "kind": "goods", "price_fen": "100"})
    assert answer.status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Product)) == 0
