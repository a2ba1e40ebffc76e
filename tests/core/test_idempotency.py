"""The @idempotent decorator on a test-only partner route, on PostgreSQL, with real threads.

The session's `app` has already served requests, and Flask refuses new routes after that, so this
module builds its own app (same test database and Redis) and registers the route once on it.
"""
from __future__ import annotations

import itertools
import json
import threading

import pytest
from flask import jsonify, request
from sqlalchemy import func, select

from app.core.idempotency import IdempotencyRecord, idempotent
from app.extensions import csrf, db
from tests.core.conftest import another_app

ROUTE = "/test-only/partner/orders"


class Behaviour:
    """What the test view does; reset before each test."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = False
        self.entered = threading.Event()
        self.release: threading.Event | None = None
        self.numbers = itertools.count(1001)


behaviour = Behaviour()


def place_order():
    behaviour.calls += 1
    if behaviour.release is not None:
        behaviour.entered.set()
        behaviour.release.wait(10)
    if behaviour.fail_next:
        behaviour.fail_next = False
        return jsonify(code="UPSTREAM_DOWN"), 503
    data = request.get_json()
    return jsonify(order_no=f"ORD{next(behaviour.numbers)}", amount_fen=data["amount_fen"]), 201


@pytest.fixture(scope="module")
def partner_app(app):
    partner_app = another_app(app)
    if "test_place_order" not in partner_app.view_functions:
        view = idempotent(client_id=lambda: request.headers.get("X-Client", "bank-a"))(place_order)
        partner_app.add_url_rule(ROUTE, "test_place_order", csrf.exempt(view), methods=["POST"])
    return partner_app


@pytest.fixture
def partner(partner_app, app):
    global behaviour
    behaviour = Behaviour()
    yield partner_app.test_client()
    if behaviour.release is not None:
        behaviour.release.set()


def post(client, body: dict, key: str | None = "key-1", client_id: str = "bank-a"):
    headers = {"X-Client": client_id}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(ROUTE, data=json.dumps(body), content_type="application/json", headers=headers)


def records() -> list[IdempotencyRecord]:
    db.session.expire_all()
    return db.session.execute(select(IdempotencyRecord)).scalars().all()


def test_same_key_and_body_replays_the_stored_answer(partner):
    first = post(partner, {"amount_fen": 500})
    second = post(partner, {"amount_fen": 500})

    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert second.status_code == 201 and second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json() == {"order_no": "ORD1001", "amount_fen": 500}
    assert second.content_type == first.content_type
    assert behaviour.calls == 1
    (stored,) = records()
    assert (stored.status, stored.response_status) == ("done", 201)


def test_same_key_with_another_body_is_refused(partner):
    assert post(partner, {"amount_fen": 500}).status_code == 201
    other = post(partner, {"amount_fen": 999})
    assert other.status_code == 422
    assert other.get_json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert behaviour.calls == 1


def test_keys_belong_to_one_client(partner):
    assert post(partner, {"amount_fen": 500}, client_id="bank-a").get_json()["order_no"] == "ORD1001"
    other_client = post(partner, {"amount_fen": 500}, client_id="bank-b")
    assert other_client.status_code == 201 and other_client.get_json()["order_no"] == "ORD1002"


def test_missing_key_is_refused_before_any_work(partner):
    response = post(partner, {"amount_fen": 500}, key=None)
    assert response.status_code == 400
    assert response.get_json()["code"] == "IDEMPOTENCY_KEY_REQUIRED"
    assert post(partner, {"amount_fen": 500}, key="k" * 129).status_code == 400
    assert behaviour.calls == 0 and records() == []


def test_twin_still_in_flight_gets_409(partner_app, partner):
    behaviour.release = threading.Event()
    first: dict = {}

    def first_request() -> None:
        response = post(partner_app.test_client(), {"amount_fen": 500})
        first.update(status=response.status_code, body=response.get_json())

    worker = threading.Thread(target=first_request)
    worker.start()
    assert behaviour.entered.wait(10)  # the first request has claimed the key and is working

    twin = post(partner_app.test_client(), {"amount_fen": 500})
    assert twin.status_code == 409
    assert twin.get_json()["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT"

    behaviour.release.set()
    worker.join(10)
    assert first == {"status": 201, "body": {"order_no": "ORD1001", "amount_fen": 500}}
    replay = post(partner, {"amount_fen": 500})
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json() == first["body"]
    assert behaviour.calls == 1


def test_server_error_releases_the_key(partner):
    behaviour.fail_next = True
    failed = post(partner, {"amount_fen": 500})
    assert failed.status_code == 503
    assert records() == []  # the claim is forgotten, not stored as the answer

    again = post(partner, {"amount_fen": 500})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert behaviour.calls == 2
    (stored,) = records()
    assert stored.response_status == 201
    assert db.session.execute(select(func.count()).select_from(IdempotencyRecord)).scalar_one() == 1
