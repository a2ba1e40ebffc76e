"""/healthz: 200 when PostgreSQL and Redis answer, 503 naming the one that does not."""
from __future__ import annotations

from tests.core.conftest import another_app


def test_healthy_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_503_naming_redis_when_it_is_unreachable(app):
    broken = another_app(app, REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down: ") and "ConnectionError" in body["checks"]["redis"]


def test_503_naming_the_database_when_it_is_unreachable(app):
    broken = another_app(app, SQLALCHEMY_DATABASE_URI="postgresql+psycopg2://postgres@127.0.0.1:1/none")
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["redis"] == "ok" and checks["database"].startswith("down: ")
