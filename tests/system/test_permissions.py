"""Who may open the system screens: one row per role, written out rather than derived from ROLES."""
from __future__ import annotations

import pytest

from app.core.permissions import ROLES

PAGES = ("/audit", "/outbox", "/jobs")
ACCESS = {
    "platform_admin": {"/audit": 200, "/outbox": 200, "/jobs": 200},
    "org_admin": {"/audit": 200, "/outbox": 200, "/jobs": 200},
    "operator": {"/audit": 403, "/outbox": 403, "/jobs": 200},
    "approver": {"/audit": 200, "/outbox": 403, "/jobs": 403},
    "front_desk": {"/audit": 403, "/outbox": 403, "/jobs": 403},
    "viewer": {"/audit": 403, "/outbox": 403, "/jobs": 403},
}


def test_matrix_covers_every_role():
    assert set(ACCESS) == set(ROLES)


@pytest.mark.parametrize("role", sorted(ACCESS))
@pytest.mark.parametrize("path", PAGES)
def test_system_pages_by_role(client, auth, make, role, path):
    make.operator(make.platform(), roles=(role,), username="someone")
    auth.login("someone")
    response = client.get(path)
    assert response.status_code == ACCESS[role][path]
    if response.status_code == 403:
        assert 'data-testid="error-403"' in response.get_data(as_text=True)


@pytest.mark.parametrize("role", sorted(r for r in ACCESS if ACCESS[r]["/outbox"] == 403))
def test_outbox_retry_refused_without_permission(client, auth, make, role):
    from tests.helpers import csrf_from

    make.operator(make.platform(), roles=(role,), username="someone")
    auth.login("someone")
    token = csrf_from(client.get("/dashboard"))
    assert client.post("/outbox/1/retry", data={"csrf_token": token}).status_code == 403
    assert client.post("/outbox/retry", data={"csrf_token": token, "ids": "1"}).status_code == 403


@pytest.mark.parametrize("path", PAGES + ("/audit/export?fmt=csv", "/jobs/1"))
def test_anonymous_is_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
