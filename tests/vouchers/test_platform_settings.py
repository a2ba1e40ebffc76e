"""Voucher platform accounts and deal mappings: secrets encrypted, audited without values, tenancy."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from app.core.audit import AuditEvent
from app.extensions import db
from app.vouchers.models import DealMapping, PlatformAccount
from tests.helpers import csrf_from, htmx_headers


@pytest.fixture
def gym(make):
    merchant = make.org(kind="merchant", code="GYM", name="健身")
    store = make.org(kind="store", parent=merchant, code="GYM-1", name="一店")
    other = make.org(kind="merchant", code="OTHER", name="别家")
    make.operator(org=merchant, roles=("org_admin",), username="gym_admin")
    card = make.product(merchant, name="月卡", kind="membership_card",
                        attributes={"duration_value": 1, "duration_unit": "month"})
    return {"merchant": merchant, "store": store, "other": other, "card": card}


def post(client, url, data, target="modal-content"):
    token = csrf_from(client.get("/vouchers/platforms"))
    return client.post(url, data={**data, "csrf_token": token}, headers=htmx_headers(target=target) if target else {})


MEITUAN = {"platform": "meituan", "base_url": "http://127.0.0.1:5000/sandbox/meituan", "app_id": "dev-1001",
           "store_ref": "shop-1", "store_name": "一店", "secret_sign_key": "s3cret-sign-key",
           "secret_app_auth_token": "token-abc"}


def test_account_secrets_are_encrypted_and_never_audited(client, auth, gym):
    auth.login("gym_admin")
    response = post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id})
    assert response.status_code == 204
    account = db.session.execute(select(PlatformAccount)).scalar_one()
    assert account.secrets == {"sign_key": "s3cret-sign-key", "app_auth_token": "token-abc"}
    stored = db.session.execute(text("SELECT secrets_enc FROM platform_accounts")).scalar_one()
    assert "s3cret" not in stored and stored.startswith("v1:")
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "platform_account.save")).scalar_one()
    assert "s3cret" not in str(event.after) and event.after["secrets_changed"] == ["app_auth_token", "sign_key"]
    page = client.get("/vouchers/platforms").get_data(as_text=True)
    assert "dev-1001" in page and "s3cret" not in page


def test_blank_secrets_keep_the_stored_ones_on_edit(client, auth, gym):
    auth.login("gym_admin")
    post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id})
    account = db.session.execute(select(PlatformAccount)).scalar_one()
    response = post(client, f"/vouchers/platforms/{account.id}/edit",
                    {**MEITUAN, "app_id": "dev-2002", "secret_sign_key": "", "secret_app_auth_token": ""})
    assert response.status_code == 204
    db.session.expire_all()
    account = db.session.get(PlatformAccount, account.id)
    assert account.app_id == "dev-2002" and account.secrets["sign_key"] == "s3cret-sign-key"


def test_missing_secret_and_bad_address_are_refused(client, auth, gym):
    auth.login("gym_admin")
    response = post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id, "secret_sign_key": ""})
    assert response.status_code == 422
    response = post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id, "base_url": "ftp://x"})
    assert response.status_code == 422
    assert db.session.execute(select(PlatformAccount)).first() is None


def test_one_account_per_platform_and_organisation(client, auth, gym):
    auth.login("gym_admin")
    assert post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id}).status_code == 204
    assert post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["store"].id}).status_code == 422


def test_deal_mapping_saved_and_deleted(client, auth, gym):
    auth.login("gym_admin")
    response = post(client, "/vouchers/mappings/new", {"org_id": gym["merchant"].id, "platform": "meituan",
                                                       "deal_id": "D100", "title": "月卡团购",
                                                       "product_id": gym["card"].id, "quantity": 1})
    assert response.status_code == 204
    mapping = db.session.execute(select(DealMapping)).scalar_one()
    assert mapping.product_id == gym["card"].id
    assert post(client, f"/vouchers/mappings/{mapping.id}/delete", {}, target=None).status_code == 302
    assert db.session.execute(select(DealMapping)).first() is None


def test_goods_cannot_be_fulfilled_at_the_desk(client, auth, make, gym):
    cup = make.product(gym["merchant"], name="杯子", kind="goods")
    auth.login("gym_admin")
    response = post(client, "/vouchers/mappings/new", {"org_id": gym["merchant"].id, "platform": "douyin",
                                                       "deal_id": "S1", "title": "杯子", "product_id": cup.id,
                                                       "quantity": 1})
    assert response.status_code == 422


def test_other_merchants_accounts_and_products_are_out_of_reach(client, auth, make, gym):
    foreign = make.product(gym["other"], name="别家月卡", kind="membership_card",
                           attributes={"duration_value": 1, "duration_unit": "month"})
    auth.login("gym_admin")
    assert post(client, "/vouchers/platforms/new", {**MEITUAN, "org_id": gym["other"].id}).status_code in (404, 422)
    assert post(client, "/vouchers/mappings/new", {"org_id": gym["merchant"].id, "platform": "meituan",
                                                   "deal_id": "D9", "title": "x", "product_id": foreign.id,
                                                   "quantity": 1}).status_code in (404, 422)
    assert db.session.execute(select(PlatformAccount)).first() is None
    assert db.session.execute(select(DealMapping)).first() is None


def test_front_desk_cannot_configure(client, auth, make, gym):
    make.operator(org=gym["store"], roles=("front_desk",), username="desk")
    auth.login("desk")
    assert client.get("/vouchers/platforms").status_code == 403


@pytest.mark.parametrize("platform", ["meituan", "douyin"])
def test_connection_test_against_the_sandbox(app, make, gym, platform):
    """The account's credentials are checked by a real signed call to the platform's sandbox."""
    import httpx

    from app.vouchers import platforms

    secrets = ({"sign_key": "mt-sandbox-sign-key-2026", "app_auth_token": "sandbox-store-1"} if platform == "meituan"
               else {"client_secret": "sandbox-douyin-secret-0001"})
    app_id = "100001" if platform == "meituan" else "awsandboxgym0001"
    if platform == "douyin":
        from app.sandbox.douyin import seed_sandbox_skus

        seed_sandbox_skus()
    account = platforms.save_account(gym["store"], platform, f"http://sandbox/sandbox/{platform}", app_id, "shop-1",
                                     None, secrets)
    transport = httpx.WSGITransport(app=app)
    assert platforms.check_connection(account, transport=transport).ok
    wrong = {name: "wrong-" + value for name, value in secrets.items()}
    account = platforms.save_account(gym["store"], platform, account.base_url, app_id, "shop-1", None, wrong, account)
    result = platforms.check_connection(account, transport=transport)
    assert not result.ok and account.last_test_ok is False
