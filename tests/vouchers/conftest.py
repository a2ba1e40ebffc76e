"""Fixtures of the voucher tests.

Desk fixtures (prefix `desk_`): a merchant with one store, the merchant's accounts on both
sandboxes (served by a LIVE werkzeug server thread, so the sandbox runs in its own app context and
database session, as the real platform would), the store's gym products mapped to sandbox deals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.core.timeutil import utcnow
from app.extensions import db
from app.gym import services as gym_services
from app.sandbox import douyin as dy_sandbox
from app.sandbox import meituan as mt_sandbox
from app.sandbox.douyin_models import SandboxDouyinCertificate, SandboxDouyinVerification
from app.sandbox.meituan_models import SandboxMeituanConsumption, SandboxMeituanDeal, SandboxMeituanReceipt
from app.vouchers.models import DealMapping, PlatformAccount
from tests.helpers import serving

DESK_POI = "poi-desk-store-1"


@pytest.fixture(scope="session")
def desk_live_sandbox(app):
    """The app (with its sandboxes) on http://127.0.0.1:<free port>, for the whole session."""
    with serving(app, "desk-live-sandbox") as base:
        yield base


@dataclass
class DeskEnv:
    make: object
    base: str
    merchant: object
    store: object
    other_store: object
    clerk: object  # front_desk role at the store
    manager: object  # org_admin at the store (may undo)
    other_clerk: object  # front_desk at another store of the merchant
    products: dict = field(default_factory=dict)
    mt_deals: dict = field(default_factory=dict)
    dy_skus: dict = field(default_factory=dict)

    # --- buying on the sandboxes ---
    def mt_buy(self, deal_id: int = 710001, **values) -> SandboxMeituanReceipt:
        deal = db.session.execute(select(SandboxMeituanDeal).filter_by(deal_id=deal_id)).scalar_one()
        return mt_sandbox.buy_receipt(deal, mobile=values.pop("mobile", "13812345678"), **values)

    def dy_buy(self, sku_id: str = "DYSKU1001", **values) -> SandboxDouyinCertificate:
        return dy_sandbox.buy_certificate(self.dy_skus[sku_id], buyer_phone=values.pop("buyer_phone", "13812345678"),
                                          **values)

    # --- the sandboxes' side ---
    def mt_receipt(self, code: str) -> SandboxMeituanReceipt:
        db.session.expire_all()
        return db.session.execute(select(SandboxMeituanReceipt).filter_by(code=code)).scalar_one()

    def mt_consumptions(self, code: str) -> list[SandboxMeituanConsumption]:
        db.session.expire_all()
        return list(db.session.execute(select(SandboxMeituanConsumption).join(SandboxMeituanReceipt)
                                       .where(SandboxMeituanReceipt.code == code)).scalars())

    def dy_cert(self, code: str) -> SandboxDouyinCertificate:
        db.session.expire_all()
        return db.session.execute(select(SandboxDouyinCertificate).filter_by(code=code)).unique().scalar_one()

    def dy_verifications(self, code: str) -> list[SandboxDouyinVerification]:
        cert = self.dy_cert(code)
        return list(db.session.execute(select(SandboxDouyinVerification).filter_by(certificate_pk=cert.id)
                                       .order_by(SandboxDouyinVerification.id)).scalars())

    def session(self, capacity: int = 5, product_key: str = "yoga", hours_ahead: int = 24):
        return gym_services.create_class_session(self.products[product_key], utcnow() + timedelta(hours=hours_ahead),
                                                 self.manager.id, capacity=capacity)


def _account(org, platform: str, base_url: str, app_id: str, store_ref: str, secrets: dict) -> PlatformAccount:
    account = PlatformAccount(org_id=org.id, platform=platform, base_url=base_url, app_id=app_id, store_ref=store_ref,
                              store_name="沙箱门店", secrets_enc="")
    account.secrets = secrets
    db.session.add(account)
    db.session.commit()
    return account


@pytest.fixture
def desk_env(make, desk_live_sandbox) -> DeskEnv:
    merchant = make.org(kind="merchant", name="力健健身")
    store = make.org(kind="store", parent=merchant, name="力健健身·人民广场店")
    other_store = make.org(kind="store", parent=merchant, name="力健健身·徐家汇店")
    env = DeskEnv(make=make, base=desk_live_sandbox, merchant=merchant, store=store, other_store=other_store,
                  clerk=make.operator(store, roles=("front_desk",)), manager=make.operator(store, roles=("org_admin",)),
                  other_clerk=make.operator(other_store, roles=("front_desk",)))
    # The merchant's accounts serve its stores.
    _account(merchant, "meituan", desk_live_sandbox + "/sandbox/meituan", mt_sandbox.SANDBOX_DEVELOPER_ID, "desk-shop",
             {"sign_key": mt_sandbox.SANDBOX_SIGN_KEY, "app_auth_token": mt_sandbox.SANDBOX_STORE_TOKEN})
    _account(merchant, "douyin", desk_live_sandbox + "/sandbox/douyin", dy_sandbox.SANDBOX_CLIENT_KEY, DESK_POI,
             {"client_secret": dy_sandbox.SANDBOX_CLIENT_SECRET})
    env.mt_deals = {d.deal_id: d for d in mt_sandbox.seed_sandbox_deals()}
    env.dy_skus = {s.sku_id: s for s in dy_sandbox.seed_sandbox_skus()}
    p = env.products
    p["month"] = make.product(store, "月卡", "membership_card", 29900, {"duration_value": 1, "duration_unit": "month"})
    p["visits"] = make.product(store, "次卡1次", "membership_card", 4000, {"visits": 1})
    p["lesson"] = make.product(store, "私教1节", "coaching_package", 30000, {"lessons": 1, "course_name": "私教"})
    p["coaching10"] = make.product(store, "私教10节", "coaching_package", 299900, {"lessons": 10, "course_name": "私教"})
    p["yoga"] = make.product(store, "瑜伽团课", "group_class", 5900,
                             {"course_name": "瑜伽", "capacity": 20, "duration_minutes": 60})
    for platform, deal_id, key, quantity in (
            ("meituan", "710001", "month", 1), ("meituan", "710003", "visits", 1), ("meituan", "710004", "lesson", 1),
            ("meituan", "710005", "yoga", 1),
            ("douyin", "DYSKU1001", "month", 1), ("douyin", "DYSKU1004", "coaching10", 1),
            ("douyin", "DYSKU1005", "yoga", 1)):
        db.session.add(DealMapping(org_id=store.id, platform=platform, deal_id=deal_id, title=deal_id,
                                   product_id=p[key].id, quantity=quantity))
    db.session.commit()
    yield env
    mt_sandbox.set_misbehaviour(None)
    dy_sandbox.clear_misbehave()
