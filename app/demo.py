"""`flask demo seed`: demo data for trying the product, created once (running it again changes nothing).

Every demo operator's password is DEMO_PASSWORD; the README lists the accounts.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from app.core import audit
from app.core.timeutil import utcnow
from app.extensions import db

demo_cli = AppGroup("demo", help="Demo data.")

DEMO_PASSWORD = "demo2026pass"

ORGS = [
    # code, name, kind, parent code
    ("BANK-EAST", "华东示范银行", "bank", "PLATFORM"),
    ("BANK-SOUTH", "华南示范银行", "bank", "PLATFORM"),
    ("GYM", "力健健身", "merchant", "PLATFORM"),
    ("GYM-JINGAN", "力健健身·静安店", "store", "GYM"),
    ("GYM-PUDONG", "力健健身·浦东店", "store", "GYM"),
]

OPERATORS = [
    # username, name, org code, roles
    ("admin", "平台管理员", "PLATFORM", ["platform_admin"]),
    ("east_admin", "华东银行管理员", "BANK-EAST", ["org_admin"]),
    ("east_operator", "华东银行运营", "BANK-EAST", ["operator"]),
    ("east_approver", "华东银行审核员", "BANK-EAST", ["approver"]),
    ("east_viewer", "华东银行查看员", "BANK-EAST", ["viewer"]),
    ("south_admin", "华南银行管理员", "BANK-SOUTH", ["org_admin"]),
    ("gym_admin", "力健健身管理员", "GYM", ["org_admin"]),
    ("frontdesk", "静安店前台", "GYM-JINGAN", ["front_desk"]),
]

PRODUCTS = {
    "BANK-EAST": [
        ("稳盈90天理财", "financial", 100000, {"risk_level": "R2", "term_days": 90, "expected_yield_bp": 285,
                                             "min_purchase_fen": 100000}),
        ("季季享定开理财", "financial", 1000000, {"risk_level": "R3", "term_days": 91, "expected_yield_bp": 320,
                                              "min_purchase_fen": 1000000}),
        ("联名保温杯", "goods", 8800, {"sku": "CUP-001", "stock": 500}),
    ],
    "BANK-SOUTH": [
        ("月月盈现金管理", "financial", 100, {"risk_level": "R1", "term_days": 1, "expected_yield_bp": 180,
                                             "min_purchase_fen": 100}),
    ],
    "GYM": [
        ("月卡", "membership_card", 29900, {"duration_value": 1, "duration_unit": "month"}),
        ("年卡", "membership_card", 199900, {"duration_value": 1, "duration_unit": "year"}),
        ("20次卡", "membership_card", 99900, {"visits": 20}),
        ("私教10节课", "coaching_package", 280000, {"lessons": 10, "course_name": "私教"}),
        ("动感单车团课", "group_class", 5900, {"course_name": "动感单车", "capacity": 20, "duration_minutes": 45}),
    ],
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
REGIONS = ["上海", "杭州", "南京", "苏州", "广州", "深圳", "佛山"]
CHANNELS = ["网点", "手机银行", "微信", "抖音", "美团", "地推"]
LEVELS = ["normal", "normal", "normal", "silver", "gold", "platinum"]


@demo_cli.command("seed")
@click.option("--members-per-org", default=60, show_default=True)
def seed(members_per_org: int) -> None:
    """Create the demo platform, banks, gym chain, operators, members and products (idempotent)."""
    from app.auth.models import Operator
    from app.orgs import services as org_services
    from app.orgs.models import Organisation

    with audit.acting_as(audit.Actor(None, "demo-seed", None, None)):
        orgs = {o.code: o for o in db.session.execute(select(Organisation)).scalars()}
        if "PLATFORM" not in orgs:
            orgs["PLATFORM"] = org_services.create_platform("PLATFORM", "营销枢纽平台")
            db.session.commit()
        for code, name, kind, parent in ORGS:
            if code not in orgs:
                orgs[code] = org_services.create_organisation(orgs[parent], kind, code, name)

        for username, name, org_code, roles in OPERATORS:
            if db.session.execute(select(Operator.id).where(Operator.username == username)).first():
                continue
            operator = Operator(username=username, display_name=name, org_id=orgs[org_code].id, org=orgs[org_code],
                                password_changed_at=utcnow())
            operator.set_password(DEMO_PASSWORD)
            operator.set_roles(roles)
            db.session.add(operator)
            db.session.flush()
            audit.record("operator.create", "operator", operator.id,
                         after={"username": username, "roles": roles}, org_id=operator.org_id)
        db.session.commit()
        _seed_products(orgs)
        _seed_members(orgs, members_per_org)
    click.echo(f"demo data ready; log in as admin / {DEMO_PASSWORD}")


def _seed_products(orgs) -> None:
    from app.members.models import Product

    for org_code, products in PRODUCTS.items():
        org = orgs[org_code]
        for name, kind, price_fen, attributes in products:
            exists = db.session.execute(select(Product.id).where(Product.org_id == org.id, Product.name == name)).first()
            if not exists:
                db.session.add(Product(org_id=org.id, name=name, kind=kind, price_fen=price_fen, attributes=attributes))
    db.session.commit()


def _seed_members(orgs, per_org: int) -> None:
    from app.members.models import Member

    rng = secrets.SystemRandom()
    for org_code in ("BANK-EAST", "BANK-SOUTH", "GYM-JINGAN", "GYM-PUDONG"):
        org = orgs[org_code]
        have = db.session.execute(select(func.count()).select_from(Member).where(Member.org_id == org.id)).scalar_one()
        for i in range(have, per_org):
            member = Member(
                org_id=org.id,
                name=rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
                level=rng.choice(LEVELS),
                group_name=rng.choice(["VIP", "新客", "老客", None]),
                region=rng.choice(REGIONS),
                source_channel=rng.choice(CHANNELS),
                registered_at=utcnow() - timedelta(days=rng.randint(0, 13), minutes=rng.randint(0, 1440)),
                wechat_openid=f"o{secrets.token_hex(13)}" if rng.random() < 0.7 else None,
            )
            member.phone = f"13{org.id % 10}{i:08d}"
            db.session.add(member)
        db.session.commit()
