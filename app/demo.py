"""`flask demo seed`: demo data for trying the product, created once (running it again changes nothing).

Every demo operator's password is DEMO_PASSWORD; the README lists the accounts.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

import click
from flask import current_app
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
        # One use of a multi-use platform voucher grants one unit of these.
        ("单次入场", "membership_card", 3900, {"visits": 1}),
        ("私教单节", "coaching_package", 30000, {"lessons": 1, "course_name": "私教"}),
    ],
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
REGIONS = ["上海", "杭州", "南京", "苏州", "广州", "深圳", "佛山"]
CHANNELS = ["网点", "手机银行", "微信", "抖音", "美团", "地推"]
LEVELS = ["normal", "normal", "normal", "silver", "gold", "platinum"]


@demo_cli.command("seed")
@click.option("--members-per-org", default=60, show_default=True)
@click.option("--bank-key-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write the demo bank's API private key [default: instance/demo-bank-client.pem].")
def seed(members_per_org: int, bank_key_file: str | None) -> None:
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
        if current_app.config["SANDBOXES_ENABLED"]:
            _seed_voucher_line(orgs)
            _seed_coupon_line(orgs, bank_key_file)
    click.echo(f"demo data ready; log in as admin / {DEMO_PASSWORD}")


def _seed_coupon_line(orgs, key_file: str | None) -> None:
    """Master data, tunnels on the sandboxes, the bank's API client, activities and issues (app/coupons/demo.py),
    then the theme activity's wheel, prizes and last week of draws (app/activities/demo.py)."""
    from pathlib import Path

    from app.activities.demo import seed_wheel_demo
    from app.activities.entry import entry_url
    from app.coupons.demo import seed_coupon_demo

    seeded = seed_coupon_demo(orgs, Path(key_file) if key_file else None)
    click.echo(f"bank API client {seeded['client'].app_id}: its private key is in {seeded['key_file']}; "
               "try `flask coupons demo-issue`")
    wheel = seed_wheel_demo(seeded["theme"], seeded["activities"]["wechat"])
    h5_page = entry_url(wheel["theme"], current_app.config["PUBLIC_BASE_URL"])
    click.echo(f"theme activity {wheel['theme'].theme_no}: wheel on, {wheel['draws']} draws by "
               f"{wheel['customers']} sandbox customers; its H5 page is {h5_page}")


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


SANDBOX_URL = "http://127.0.0.1:5000/sandbox"  # where `make run` serves the built-in sandboxes
# platform, deal id on the platform, title, product name
DEAL_MAPPINGS = [
    ("meituan", "710001", "健身月卡 30天畅练", "月卡"),
    ("meituan", "710002", "健身年卡 365天畅练", "年卡"),
    ("meituan", "710003", "健身20次卡", "单次入场"),
    ("meituan", "710004", "私教课10节", "私教单节"),
    ("meituan", "710005", "团课体验 单次", "动感单车团课"),
    ("douyin", "DYSKU1001", "月卡（30 天）", "月卡"),
    ("douyin", "DYSKU1002", "年卡（365 天）", "年卡"),
    ("douyin", "DYSKU1003", "20 次健身次卡", "单次入场"),
    ("douyin", "DYSKU1004", "私教课 10 节", "私教10节课"),
    ("douyin", "DYSKU1005", "团课体验（单次）", "动感单车团课"),
]


def _seed_voucher_line(orgs) -> None:
    """Sandbox deals, each store's accounts on the sandboxes, deal mappings and a week of classes."""
    from app.gym.models import ClassSession
    from app.gym.services import create_class_session
    from app.members.models import Product
    from app.sandbox.douyin import seed_sandbox_skus
    from app.sandbox.meituan import seed_sandbox_deals
    from app.vouchers import platforms
    from app.vouchers.models import DealMapping, PlatformAccount

    seed_sandbox_deals()
    seed_sandbox_skus()
    for store_code, suffix in (("GYM-JINGAN", "jingan"), ("GYM-PUDONG", "pudong")):
        store = orgs[store_code]
        have = set(db.session.execute(select(PlatformAccount.platform).where(PlatformAccount.org_id == store.id)).scalars())
        if "meituan" not in have:
            platforms.save_account(store, "meituan", f"{SANDBOX_URL}/meituan", "100001", f"desk-{suffix}", store.name,
                                   {"sign_key": "mt-sandbox-sign-key-2026", "app_auth_token": f"sandbox-store-{suffix}"})
        if "douyin" not in have:
            platforms.save_account(store, "douyin", f"{SANDBOX_URL}/douyin", "awsandboxgym0001", f"poi-{suffix}",
                                   store.name, {"client_secret": "sandbox-douyin-secret-0001"})
    gym = orgs["GYM"]
    products = {p.name: p for p in db.session.execute(select(Product).where(Product.org_id == gym.id)).scalars()}
    mapped = set(db.session.execute(select(DealMapping.platform, DealMapping.deal_id)
                                    .where(DealMapping.org_id == gym.id)).all())
    for platform, deal_id, title, product_name in DEAL_MAPPINGS:
        if (platform, deal_id) not in mapped:
            platforms.save_mapping(gym, platform, deal_id, title, products[product_name], 1)
    spinning = products["动感单车团课"]
    if not db.session.execute(select(ClassSession.id).where(ClassSession.product_id == spinning.id)).first():
        from datetime import datetime, time

        from app.core.timeutil import BUSINESS_TZ, business_today

        for day in range(7):
            starts = datetime.combine(business_today() + timedelta(days=day + 1), time(19, 0), tzinfo=BUSINESS_TZ)
            create_class_session(spinning, starts, None)
