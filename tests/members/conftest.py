"""Fixtures of the member and product screen tests: a logged-in operator with their CSRF token."""
from __future__ import annotations

import pytest

from tests.helpers import csrf_from


class Console:
    """A logged-in operator of one organisation, with the CSRF token of their session."""

    def __init__(self, client, auth, make):
        self.client, self.auth, self.make = client, auth, make
        self.operator = None

    def login(self, org, roles=("org_admin",)):
        self.operator = self.make.operator(org, roles=roles)
        response = self.auth.login(self.operator.username)
        assert response.status_code == 302, "login failed"
        return self.operator

    def csrf(self) -> str:
        return csrf_from(self.client.get("/dashboard"))


@pytest.fixture
def console(client, auth, make):
    return Console(client, auth, make)
