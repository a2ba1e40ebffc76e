"""The front-desk screens: the scan page, preview, confirm (twice), receipt, recent, undo, permissions, tenancy."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from app.extensions import db
from app.gym.models import GymGrant
from app.vouchers.models import Voucher, VoucherVerification
from tests.helpers import csrf_from, htmx_headers

PHONE = "13900002222"


def token(client) -> str:
    return csrf_from(client.get("/desk"))


def hx_post(client, url, data):
    return client.post(url, data={**data, "csrf_token": token(client)}, headers=htmx_headers(target="desk-result"))


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden {name}"
    return match.group(1)


def test_desk_page_has_the_code_field_focused(client, auth, desk_env):
    auth.login(desk_env.clerk.username)
    response = client.get("/desk")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    field = re.search(r"<input[^>]*id=\"desk-code\"[^>]*>", html, re.S).group(0)
    assert "autofocus" in field and 'name="code"' in field
    assert 'hx-post="/desk/preview"' in html and "js/desk.js" in html
    assert 'href="/desk"' in html  # the menu link


def test_preview_and_confirm_through_the_screen_twice_grants_once(client, auth, desk_env):
    receipt = desk_env.mt_buy(710001)
    auth.login(desk_env.clerk.username)
    response = hx_post(client, "/desk/preview", {"code": receipt.code, "platform": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html  # the fragment only
    assert 'data-testid="desk-preview"' in html and "月卡" in html and "¥199.00" in html and "¥299.00" in html
    assert "138****5678" in html and 'hx-disabled-elt' in html
    form = {"voucher_id": hidden(html, "voucher_id"), "request_id": hidden(html, "request_id"), "phone": PHONE}
    first = hx_post(client, "/desk/confirm", form)
    body = first.get_data(as_text=True)
    assert 'data-testid="desk-success"' in body and "bi-check-circle-fill" in body
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    assert f"/desk/receipts/{verification.id}" in body
    assert 'data-testid="desk-undo"' not in body  # front-desk staff may not undo
    second = hx_post(client, "/desk/confirm", form)  # the same form submitted again
    assert 'data-testid="desk-success"' in second.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(GymGrant)) == 1
    assert db.session.scalar(select(func.count()).select_from(VoucherVerification)) == 1
    rescan = hx_post(client, "/desk/preview", {"code": receipt.code}).get_data(as_text=True)
    assert 'data-testid="desk-failure"' in rescan and "bi-x-circle-fill" in rescan
    assert f"#{verification.id}" in rescan  # which verification, and when
    receipt_page = client.get(f"/desk/receipts/{verification.id}").get_data(as_text=True)
    assert "@media print" in receipt_page and "80mm" in receipt_page and receipt.code in receipt_page
    recent = client.get("/desk/recent").get_data(as_text=True)
    assert f'data-testid="recent-{verification.id}"' in recent


def test_member_page_shows_what_the_voucher_granted(client, auth, desk_env):
    receipt = desk_env.mt_buy(710001)
    auth.login(desk_env.manager.username)
    html = hx_post(client, "/desk/preview", {"code": receipt.code}).get_data(as_text=True)
    hx_post(client, "/desk/confirm", {"voucher_id": hidden(html, "voucher_id"),
                                      "request_id": hidden(html, "request_id"), "phone": PHONE})
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    page = client.get(f"/members/{verification.member_id}").get_data(as_text=True)
    assert 'data-testid="gym-records"' in page and 'data-testid="gym-card"' in page and "月卡" in page


def test_errors_show_the_desk_message(client, auth, desk_env):
    auth.login(desk_env.clerk.username)
    html = hx_post(client, "/desk/preview", {"code": "000000000000", "platform": "meituan"}).get_data(as_text=True)
    assert 'data-testid="desk-failure"' in html
    from markupsafe import escape

    from app.providers.vouchers import VoucherNotFound

    assert str(escape(str(VoucherNotFound.message))) in html  # the desk's message, in the console's language
    unmapped = desk_env.mt_buy(710002)
    html = hx_post(client, "/desk/preview", {"code": unmapped.code}).get_data(as_text=True)
    assert 'data-testid="desk-failure"' in html and "710002" in html


def test_undo_on_the_result_card_needs_the_permission_and_reverses(client, auth, desk_env):
    receipt = desk_env.mt_buy(710001)
    auth.login(desk_env.manager.username)
    html = hx_post(client, "/desk/preview", {"code": receipt.code}).get_data(as_text=True)
    body = hx_post(client, "/desk/confirm", {"voucher_id": hidden(html, "voucher_id"),
                                             "request_id": hidden(html, "request_id"), "phone": PHONE}
                   ).get_data(as_text=True)
    assert 'data-testid="desk-undo"' in body and "data-confirm" in body
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    auth.logout()
    auth.login(desk_env.clerk.username)
    assert hx_post(client, f"/desk/verifications/{verification.id}/undo", {"reason": "x"}).status_code == 403
    auth.logout()
    auth.login(desk_env.manager.username)
    undone = hx_post(client, f"/desk/verifications/{verification.id}/undo", {"reason": "顾客退款"})
    assert 'data-testid="desk-undone"' in undone.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(VoucherVerification, verification.id).status == "undone"
    assert desk_env.mt_receipt(receipt.code).status == "unused"


def test_another_stores_desk_gets_404(client, auth, desk_env):
    receipt = desk_env.mt_buy(710001)
    auth.login(desk_env.clerk.username)
    html = hx_post(client, "/desk/preview", {"code": receipt.code}).get_data(as_text=True)
    hx_post(client, "/desk/confirm", {"voucher_id": hidden(html, "voucher_id"),
                                      "request_id": hidden(html, "request_id"), "phone": PHONE})
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    voucher = db.session.execute(select(Voucher)).scalar_one()
    auth.logout()
    other_admin = desk_env.make.operator(desk_env.other_store, roles=("org_admin",))
    auth.login(other_admin.username)
    assert client.get(f"/desk/receipts/{verification.id}").status_code == 404
    assert hx_post(client, f"/desk/verifications/{verification.id}/undo", {"reason": "x"}).status_code == 404
    refused = hx_post(client, "/desk/confirm", {"voucher_id": voucher.id, "request_id": "a" * 32, "phone": PHONE})
    assert 'data-testid="desk-failure"' in refused.get_data(as_text=True)
    assert f'recent-{verification.id}' not in client.get("/desk/recent").get_data(as_text=True)


def test_the_desk_needs_frontdesk_permission(client, auth, desk_env):
    viewer = desk_env.make.operator(desk_env.store, roles=("viewer",))
    auth.login(viewer.username)
    assert client.get("/desk").status_code == 403


def test_an_unknown_outcome_can_be_retried_from_todays_list(client, auth, desk_env):
    from app.sandbox import meituan as mt_sandbox

    receipt = desk_env.mt_buy(710001)
    auth.login(desk_env.clerk.username)
    html = hx_post(client, "/desk/preview", {"code": receipt.code}).get_data(as_text=True)
    form = {"voucher_id": hidden(html, "voucher_id"), "request_id": hidden(html, "request_id"), "phone": PHONE}
    mt_sandbox.set_misbehaviour("5xx")
    body = hx_post(client, "/desk/confirm", form).get_data(as_text=True)
    assert 'data-testid="desk-unknown"' in body and 'data-testid="desk-retry"' in body
    assert db.session.scalar(select(func.count()).select_from(GymGrant)) == 0
    mt_sandbox.set_misbehaviour(None)
    verification = db.session.execute(select(VoucherVerification)).scalar_one()
    recent = client.get("/desk/recent").get_data(as_text=True)
    assert f'data-testid="recent-retry-{verification.id}"' in recent
    retried = hx_post(client, "/desk/confirm", form).get_data(as_text=True)
    assert 'data-testid="desk-success"' in retried
    assert db.session.scalar(select(func.count()).select_from(GymGrant)) == 1
    assert len(desk_env.mt_consumptions(receipt.code)) == 1


def test_a_store_desk_fulfils_with_the_merchants_catalogue(client, auth, desk_env):
    """Card types mapped once at the merchant serve every store; the member joins the scanning store."""
    from app.gym.models import MembershipCard
    from app.members.models import Member
    from app.vouchers.models import DealMapping

    year = desk_env.make.product(desk_env.merchant, "年卡", "membership_card", 199900,
                                 {"duration_value": 1, "duration_unit": "year"})
    db.session.add(DealMapping(org_id=desk_env.merchant.id, platform="meituan", deal_id="710002", title="年卡",
                               product_id=year.id, quantity=1))
    db.session.commit()
    receipt = desk_env.mt_buy(710002)
    auth.login(desk_env.clerk.username)
    html = hx_post(client, "/desk/preview", {"code": receipt.code, "platform": "meituan"}).get_data(as_text=True)
    assert 'data-testid="desk-preview"' in html and "年卡" in html
    done = hx_post(client, "/desk/confirm", {"voucher_id": hidden(html, "voucher_id"),
                                             "request_id": hidden(html, "request_id"), "phone": "13900007777"})
    assert 'data-testid="desk-success"' in done.get_data(as_text=True)
    member = db.session.execute(select(Member)).scalar_one()
    card = db.session.execute(select(MembershipCard)).scalar_one()
    assert member.org_id == desk_env.store.id and card.org_id == desk_env.store.id and card.product_id == year.id
