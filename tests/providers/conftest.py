"""Fixtures of the partner-platform tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def platform_admin(make, auth):
    """A platform administrator, logged in: the sandboxes' own pages are theirs alone."""
    operator = make.operator(make.platform(), roles=("platform_admin",))
    auth.login(operator.username)
    return operator
