"""Tenancy across every model that carries `org_id`: an operator of bank A gets 404 for bank B's
row by URL, by HTMX partial and by POST; and a new tenant-owned model cannot be added without
a row in this matrix (the last test fails until it has one).
"""
from __future__ import annotations

import pytest

from app.auth.models import Operator
from app.core import outbox
from app.core.audit import AuditEvent, acting_as, Actor, record
from app.core.jobruns import JobRun
from app.gym import models as gym_models
from app.extensions import db
from app.members.models import Member, Product
from app.orgs.models import Organisation
from app.activities.models import ThemeActivity
from app.coupons.models import BankApiClient, CouponActivity, PartnerBank, TunnelAccount
from app.vouchers.models import DealMapping, PlatformAccount, ReconciliationItem, Voucher, VoucherVerification
from app.coupons.models import BankNotification, CouponIssue, CouponReconciliationItem
from app.activities.prize_models import (CashAccount, CashEntry, PointsAccount, PointsEntry, Prize, PrizeDelivery,
                                         ThemeDraw, ThemeParticipant, ThemeVisit)
from tests.helpers import csrf_from, htmx_headers


def _operator(make, org):
    return make.operator(org=org, roles=("viewer",))


def _job_run(make, org):
    run = JobRun(name="jobs.outbox.relay_outbox", label="relay", queue="outbox", org_id=org.id)
    db.session.add(run)
    db.session.commit()
    return run


def _outbox_message(make, org):
    message = outbox.OutboxMessage(kind="http.post_json", payload={"url": "http://127.0.0.1:9/", "body": {}},
                                   org_id=org.id, max_attempts=3, status="dead")
    db.session.add(message)
    db.session.commit()
    return message


def _audit_event(make, org):
    with acting_as(Actor(None, "someone", org.id)):
        event = record("member.update", "member", 1, after={"name": "x"}, org_id=org.id)
    db.session.commit()
    return event


def _platform_account(make, org):
    from app.vouchers.models import PlatformAccount

    account = PlatformAccount(org_id=org.id, platform="meituan", base_url="http://127.0.0.1:9", app_id="d",
                              store_ref="s")
    account.secrets = {"sign_key": "k", "app_auth_token": "t"}
    db.session.add(account)
    db.session.commit()
    return account


def _deal_mapping(make, org):
    from app.vouchers.models import DealMapping

    product = make.product(org, kind="membership_card", attributes={"visits": 10})
    mapping = DealMapping(org_id=org.id, platform="douyin", deal_id="D1", title="卡", product_id=product.id)
    db.session.add(mapping)
    db.session.commit()
    return mapping


def _voucher(make, org):
    from app.vouchers.models import Voucher

    voucher = Voucher(org_id=org.id, platform="meituan", code=f"9{org.id:011d}", deal_id="710001", title="月卡",
                      uses_total=1, uses_left=1)
    db.session.add(voucher)
    db.session.commit()
    return voucher


def _verification(make, org):
    from app.vouchers.models import VoucherVerification

    voucher = _voucher(make, org)
    verification = VoucherVerification(org_id=org.id, voucher_id=voucher.id, request_id=f"req{voucher.id:029d}",
                                       status="verified", count=1)
    db.session.add(verification)
    db.session.commit()
    return verification


def _tunnel_account(make, org):
    from app.coupons.models import TunnelAccount
    from app.providers.lklapi import new_key_pair

    private_pem, cert_pem, serial = new_key_pair("matrix")
    account = TunnelAccount(org_id=org.id, tunnel="yunshuhui", base_url="http://127.0.0.1:9", app_id="OP1",
                            serial_no=serial, member_id="1234567890", platform_certs={serial: cert_pem},
                            notify_cert=cert_pem)
    account.secrets = {"private_key": private_pem, "certificate": cert_pem}
    db.session.add(account)
    db.session.commit()
    return account


def _bank_api_client(make, org):
    from app.coupons.bank_auth import register_client
    from app.providers.lklapi import new_key_pair

    client = register_client(org, name="bank system", app_id=f"BKMATRIX{org.id:08d}", client_cert=new_key_pair("b")[1])
    db.session.commit()
    return client


def _coupon_issue(make, org):
    from tests.coupons.issue_rows import add_issue

    return add_issue(make.coupon_activity(org=org), status="failed", res_code="100002")


def _coupon_reconciliation_item(make, org):
    item = CouponReconciliationItem(org_id=org.id, issue_id=_coupon_issue(make, org).id, field="trade_status",
                                    ours="FAIL", theirs="SUCCESS")
    db.session.add(item)
    db.session.commit()
    return item


def _prize_pool(make, org):
    """A theme activity with a prize: the prize pool's screens take the theme activity's id (a prize's
    own id only after it, /activities/<theme>/prizes/<prize>/…: tests/activities/test_prizes_screens.py)."""
    theme = make.wheel_theme(org)
    make.prize(theme)
    return theme


def _gift_draw(make, org):
    """A theme activity with a gift won and its address left: the draw records and gift shipping screens
    take the theme activity's id (a draw's own id only after it, /activities/<theme>/deliveries/<draw>/…:
    tests/activities/test_records_screens.py)."""
    from tests.activities.draw_records import gift_wheel, gift_with_address

    theme = gift_wheel(make, org).theme
    gift_with_address(theme)
    return theme


# model -> (how to make bank B's row, [(method, url template, form data, htmx target)])
MATRIX = {
    Organisation: (lambda make, org: org, [
        ("get", "/orgs/{id}/edit", None, None),
        ("get", "/orgs/{id}/edit", None, "modal-content"),
        ("post", "/orgs/{id}/status", {"status": "disabled"}, None),
    ]),
    Operator: (_operator, [
        ("get", "/operators/{id}/edit", None, "modal-content"),
        ("post", "/operators/{id}/status", {"status": "disabled"}, None),
        ("post", "/operators/{id}/password", {"password": "hacked12345", "confirm": "hacked12345"}, "modal-content"),
    ]),
    Member: (lambda make, org: make.member(org), [
        ("get", "/members/{id}", None, None),
        ("get", "/members/{id}/edit", None, "modal-content"),
        ("post", "/members/{id}/status", {"status": "disabled"}, None),
    ]),
    Product: (lambda make, org: make.product(org), [
        ("get", "/products/{id}/edit", None, "modal-content"),
        ("post", "/products/{id}/status", {"status": "off_sale"}, None),
    ]),
    JobRun: (_job_run, [("get", "/jobs/{id}", None, "job-run-{id}")]),
    outbox.OutboxMessage: (_outbox_message, [("post", "/outbox/{id}/retry", {}, None)]),
    PlatformAccount: (_platform_account, [
        ("get", "/vouchers/platforms/{id}/edit", None, "modal-content"),
        ("post", "/vouchers/platforms/{id}/test", {}, None),
    ]),
    DealMapping: (_deal_mapping, [
        ("get", "/vouchers/mappings/{id}/edit", None, "modal-content"),
        ("post", "/vouchers/mappings/{id}/delete", {}, None),
    ]),
    Voucher: (_voucher, [("get", "/vouchers/{id}", None, None)]),
    VoucherVerification: (_verification, [
        ("get", "/desk/receipts/{id}", None, None),
        ("post", "/desk/verifications/{id}/undo", {"reason": "x"}, "desk-result"),
    ]),
    AuditEvent: (_audit_event, [("get", "/audit/{id}", None, None), ("get", "/audit/{id}", None, "modal-content")]),
    TunnelAccount: (_tunnel_account, [
        ("get", "/coupons/settings/tunnels/{id}/edit", None, "modal-content"),
        ("post", "/coupons/settings/tunnels/{id}/edit", {"base_url": "http://x.example"}, "modal-content"),
        ("get", "/coupons/settings/tunnels/{id}/certificate", None, None),
        ("post", "/coupons/settings/tunnels/{id}/status", {"status": "disabled"}, None),
        ("post", "/coupons/settings/tunnels/{id}/test", {}, None),
        ("post", "/coupons/settings/tunnels/{id}/certificates/remove", {"serial": "x"}, None),
    ]),
    BankApiClient: (_bank_api_client, [
        ("get", "/coupons/settings/api-clients/{id}", None, None),
        ("get", "/coupons/settings/api-clients/{id}", None, "client-card"),
        ("get", "/coupons/settings/api-clients/{id}/edit", None, "modal-content"),
        ("get", "/coupons/settings/api-clients/{id}/certificate", None, None),
        ("post", "/coupons/settings/api-clients/{id}/rotate", {}, None),
        ("post", "/coupons/settings/api-clients/{id}/status", {"status": "disabled"}, None),
    ]),
    CouponActivity: (lambda make, org: make.coupon_activity(org=org), [
        ("get", "/coupons/activities/{id}", None, None),
        ("get", "/coupons/activities/{id}/edit", None, "modal-content"),
        ("post", "/coupons/activities/{id}/edit", {"name": "x"}, "modal-content"),
        ("post", "/coupons/activities/{id}/status", {"enabled": "0"}, None),
        ("post", "/coupons/activities/{id}/terminate", {}, None),
    ]),
    ThemeActivity: (lambda make, org: make.theme_activity(org), [
        ("get", "/activities/{id}", None, None),
        ("get", "/activities/{id}/edit", None, "modal-content"),
        ("post", "/activities/{id}/edit", {"name": "x"}, "modal-content"),
        ("post", "/activities/validate/name?theme_id={id}", {"name": "x"}, None),
        ("post", "/activities/backgrounds?theme_id={id}", {}, None),
        ("post", "/activities/{id}/status", {"status": "paused"}, None),
        ("get", "/activities/{id}/batches", None, "tab-batches"),
        ("get", "/activities/{id}/institutions", None, "tab-institutions"),
        ("get", "/activities/{id}/banks", None, None),
        ("get", "/activities/{id}/entry", None, "tab-entry"),
        ("get", "/activities/{id}/qr.png", None, None),
        ("get", "/activities/{id}/statistics", None, None),
        ("get", "/activities/{id}/statistics", None, "statistics-body"),
        ("get", "/activities/{id}/statistics/export", None, None),
        ("get", "/activities/{id}/institutions/template", None, None),
        ("post", "/activities/{id}/banks", {"party_id": "1"}, "tab-banks"),
        ("post", "/activities/{id}/institutions/delete", {"link_ids": "1"}, "tab-institutions"),
        ("post", "/activities/{id}/institutions/import", {}, "tab-institutions"),
    ]),
    CouponIssue: (_coupon_issue, [
        ("get", "/coupons/monitor/issues/{id}", None, None),
    ]),
    CouponReconciliationItem: (_coupon_reconciliation_item, [
        ("post", "/coupons/reconciliation/{id}/resolve", {}, None),
    ]),
    ThemeDraw: (_gift_draw, [
        ("get", "/activities/{id}/draws", None, None),
        ("get", "/activities/{id}/draws", None, "draw-rows"),
        ("get", "/activities/{id}/draws/export", None, None),
        ("post", "/activities/{id}/draws/1/retry", {}, "draw-rows"),
    ]),
    PrizeDelivery: (_gift_draw, [
        ("get", "/activities/{id}/deliveries", None, None),
        ("get", "/activities/{id}/deliveries?tab=shipped", None, "delivery-rows"),
        ("get", "/activities/{id}/deliveries/export?full=1", None, None),
        ("post", "/activities/{id}/deliveries/1/ship", {"tracking_no": "SF1"}, "ship-1"),
        ("post", "/activities/{id}/deliveries/1/reveal", {}, "contact-1"),
        ("post", "/activities/{id}/deliveries/import", {}, "delivery-rows"),
    ]),
    Prize: (_prize_pool, [
        ("get", "/activities/{id}/prizes", None, None),
        ("get", "/activities/{id}/prizes", None, "prize-pool"),
        ("post", "/activities/{id}/prizes", {"name": "x", "kind": "gift", "stock_total": "1", "weight": "1",
                                             "sort_order": "1", "colour": "#000000"}, "prize-pool"),
        ("get", "/activities/{id}/wheel", None, None),
        ("get", "/activities/{id}/wheel", None, "wheel-designer"),
        ("post", "/activities/{id}/wheel/preview", {"rows-0-key": "thanks", "rows-0-sort_order": "1"}, "wheel-preview"),
        ("post", "/activities/{id}/wheel", {"wheel_on": "y"}, "wheel-designer"),
    ]),
}

CASES = [(model, *case) for model, (_, cases) in MATRIX.items() for case in cases]


@pytest.mark.parametrize("model, method, url, data, target", CASES,
                         ids=[f"{m.__name__}-{meth}-{u}-{t or 'page'}" for m, meth, u, _, t in CASES])
def test_bank_a_gets_404_for_bank_b_rows(client, auth, make, model, method, url, data, target):
    bank_a, bank_b = make.org(kind="bank"), make.org(kind="bank")
    make.operator(org=bank_a, roles=("org_admin",), username="a_admin")
    row = MATRIX[model][0](make, bank_b)
    auth.login("a_admin")
    token = csrf_from(client.get("/dashboard"))
    headers = {"X-CSRFToken": token, **(htmx_headers(target=target.format(id=row.id)) if target else {})}
    kwargs = {"data": {**data, "csrf_token": token}} if data is not None else {}
    response = getattr(client, method)(url.format(id=row.id), headers=headers, **kwargs)
    assert response.status_code == 404
    if method == "get":  # the same request for bank A's own row is answered: the 404 is tenancy's
        own = MATRIX[model][0](make, bank_a)
        headers = {"X-CSRFToken": token, **(htmx_headers(target=target.format(id=own.id)) if target else {})}
        assert client.get(url.format(id=own.id), headers=headers).status_code in (200, 286)


# Gym records have no screen of their own: they are shown only on their member's page (the
# Member row above) and changed only through the voucher flow, which fetches them by member.
SHOWN_ONLY_WITH_THEIR_MEMBER = {gym_models.MembershipCard, gym_models.CardEvent, gym_models.LessonBalance,
                                gym_models.LessonEntry, gym_models.ClassSession, gym_models.ClassBooking,
                                gym_models.ClassCredit, gym_models.GymGrant}
# Reconciliation differences are only listed, through scoped queries (tests/vouchers/test_records.py).
LISTED_ONLY = {ReconciliationItem}
# A partner bank is the platform's master data: its org_id names the bank's organisation, it is not
# owned by it. Only masterdata.manage (platform admins) reaches its screens; the bank picker is
# scoped to the operator's organisations (tests/coupons/test_masterdata.py).
MASTER_DATA = {PartnerBank}
# A bank notification (with its attempts) is shown only on its issue's page,
# /coupons/monitor/issues/<id>, which fetches the issue with get_scoped_or_404 (the CouponIssue row
# above: bank A gets 404 for bank B's issue) and lists the notifications through a scoped query;
# no URL takes a notification's own id.
SHOWN_ONLY_WITH_THEIR_ISSUE = {BankNotification}
# Participants and the customers' points and cash ledgers have no console screen yet: draws are
# reached through the bank API by theme activity (another bank's is 404, tests/activities/test_draw_api.py),
# the H5 page by the customer's own openid, and the console's draw records and gift shipping by theme
# activity (the ThemeDraw and PrizeDelivery rows above). Visits are only ever counted, per theme
# activity fetched with the tenancy helper.
DRAW_RECORDS = {ThemeParticipant, PointsAccount, PointsEntry, CashAccount, CashEntry, ThemeVisit}


def test_every_model_with_an_org_id_is_in_the_matrix():
    with_org = {mapper.class_ for mapper in db.Model.registry.mappers if "org_id" in mapper.columns}
    missing = (with_org - {Organisation} - set(MATRIX) - SHOWN_ONLY_WITH_THEIR_MEMBER - SHOWN_ONLY_WITH_THEIR_ISSUE
               - LISTED_ONLY - MASTER_DATA - DRAW_RECORDS)
    assert not missing, f"add these tenant-owned models to MATRIX: {sorted(m.__name__ for m in missing)}"
