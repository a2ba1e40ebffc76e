"""Two banks under the platform, and an administrator for the platform and for bank A."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.auth.models import Operator
from app.orgs.models import Organisation


@dataclass
class World:
    platform: Organisation
    bank_a: Organisation
    bank_b: Organisation
    boss: Operator  # platform admin at the platform: sees every organisation
    a_admin: Operator  # every permission, but at bank A: sees bank A only


@pytest.fixture
def world(make) -> World:
    platform = make.platform()
    bank_a = make.org(kind="bank", code="BANK-A", name="甲银行")
    bank_b = make.org(kind="bank", code="BANK-B", name="乙银行")
    return World(
        platform=platform, bank_a=bank_a, bank_b=bank_b,
        boss=make.operator(platform, roles=("platform_admin",), username="boss"),
        a_admin=make.operator(bank_a, roles=("platform_admin",), username="a_admin"),
    )


def in_english(client) -> None:
    """Switch the test client's console language to English (the msgids), for asserting on texts."""
    with client.session_transaction() as session:
        session["locale"] = "en"
