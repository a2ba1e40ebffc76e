"""Fixtures of the theme activity tests: a platform and two banks with their master data, operators
of each role, a per-test upload folder, and details that pass every rule."""
from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest
from flask_babel import force_locale

from app.activities import backgrounds
from app.activities import services as svc
from app.activities.entry import qr_png
from app.auth.models import Operator
from app.core.timeutil import utcnow
from app.coupons.models import Institution, PartnerBank, PositionNumber
from app.extensions import db
from app.orgs.models import Organisation

NOW = utcnow().replace(microsecond=0)
PNG = qr_png("https://example.test/")  # a real PNG
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


@pytest.fixture(autouse=True)
def english():
    """The assertions read the English messages, whatever the translations say."""
    with force_locale("en"):
        yield


@pytest.fixture(autouse=True)
def uploads(app, tmp_path):
    """Every test stores its images in a folder of its own."""
    app.config["UPLOAD_FOLDER"] = str(tmp_path / "uploads")
    yield tmp_path / "uploads"
    app.config.pop("UPLOAD_FOLDER", None)


@dataclass
class World:
    platform: Organisation
    bank: Organisation
    other_bank: Organisation
    partner: PartnerBank
    other_partner: PartnerBank
    institution: Institution
    other_institution: Institution
    position: PositionNumber
    admin: Operator  # the bank's org_admin
    platform_admin: Operator


def _partner(org: Organisation, code: str, name: str) -> PartnerBank:
    bank = PartnerBank(code=code, name=name, kind="commercial", org_id=org.id, status="normal")
    db.session.add(bank)
    return bank


@pytest.fixture
def world(make) -> World:
    platform = make.platform()
    bank = make.org(kind="bank", code="HDBANK", name="华东银行")
    other_bank = make.org(kind="bank", code="HNBANK", name="华南银行")
    partner, other_partner = _partner(bank, "31290000", "华东银行"), _partner(other_bank, "31300000", "华南银行")
    institution = Institution(code="10000001", name="华东联合会", kind="commercial", status="normal")
    other_institution = Institution(code="10000002", name="华南联合会", kind="local", status="normal")
    position = PositionNumber(number="1" * 23, status="available")
    db.session.add_all([institution, other_institution, position])
    db.session.commit()
    return World(platform, bank, other_bank, partner, other_partner, institution, other_institution, position,
                 make.operator(org=bank, roles=("org_admin",), username="bank_admin"),
                 make.operator(org=platform, roles=("platform_admin",), username="root_admin"))


def pending_image(data: bytes = PNG) -> str:
    return backgrounds.store_pending(io.BytesIO(data))


def details(world: World, **changes) -> svc.ThemeDetails:
    """Details that pass every rule (a fresh pending image unless given)."""
    base = svc.ThemeDetails(name="春节主题活动", position_no=world.position.number, institution_id=world.institution.id,
                            partner_bank_id=world.partner.id, start_at=NOW + timedelta(hours=1),
                            end_at=NOW + timedelta(days=30), rules="1. 每人每天可参与一次\n2. 奖品以实际到账为准",
                            participation_limit=10, daily_limit=2)
    if "background_ref" not in changes:
        changes["background_ref"] = pending_image()
    return replace(base, **changes)


def create(world: World, actor: Operator | None = None, now: datetime | None = None, **changes):
    return svc.create_theme(actor or world.admin, details(world, **changes), now=now or NOW)
