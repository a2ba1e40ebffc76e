"""The 云数汇 sandbox: its keys and merchants, PROCESS settling, redemption, callback delivery
with the real retry schedule, duplicates, out-of-order and badly signed callbacks, the storm,
the OpenID hand-off and the console's permission."""
from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import func, select

from app.core.timeutil import utcnow
from app.extensions import db
from app.providers import lklapi
from app.providers.yunshuhui import YunshuhuiClient, parse_issuance_callback, parse_redemption_callback
from app.sandbox import yunshuhui as sandbox
from app.sandbox.yunshuhui_models import (SandboxYshCallback, SandboxYshCallbackAttempt, SandboxYshCoupon,
                                          SandboxYshCustomer, SandboxYshKey)
from tests.coupons.ysh_sandbox import connect_ysh_account, ysh_live_site, ysh_transport  # noqa: F401
from tests.helpers import csrf_from

ISSUE = {"activity_id": "A000000001", "owner_id": "OWNER001", "promotion_id": "PROMO1",
         "channel_openid": "oYSH-customer-1", "write_off_notify": "http://bank.test/writeoff",
         "post_notify": "http://bank.test/post"}


class Receiver:
    """A stand-in for our callback endpoint: checks the signature with the notification
    certificate independently, answers from a script (FAIL until told otherwise)."""

    def __init__(self, notify_cert: str, answers: list[dict] | None = None):
        self.public_key = x509.load_pem_x509_certificate(notify_cert.encode()).public_key()
        self.answers = list(answers or [])
        self.received: list[dict] = []
        self.lock = threading.Lock()

    def verified(self, request: httpx.Request) -> bool:
        fields = dict(part.split("=", 1) for part in
                      request.headers["Authorization"].removeprefix("LKLAPI-SHA256withRSA").strip().split(","))
        fields = {k.strip(): v.strip('"') for k, v in fields.items()}
        text = f"{fields['timestamp']}\n{fields['nonce_str']}\n".encode() + request.content + b"\n"
        try:
            self.public_key.verify(base64.b64decode(fields["signature"]), text, padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001
            return False
        return True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            ok = self.verified(request)
            self.received.append({"url": str(request.url), "body": json.loads(request.content), "verified": ok})
            if not ok:
                return httpx.Response(401, json={"code": "FAIL", "msg": "验签失败"})
            answer = self.answers.pop(0) if self.answers else {"code": "SUCCESS", "msg": "处理成功"}
            return httpx.Response(200, json=answer)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def account(app, make):
    return connect_ysh_account(make.org(kind="bank"))


@pytest.fixture
def ysh(app, account):
    with YunshuhuiClient.for_account(account, transport=ysh_transport(app)) as client:
        yield client


def issue(client, order: str, **changes):
    return client.issue(**{**ISSUE, "mer_order_id": order, **changes})


def coupon_of(order: str) -> SandboxYshCoupon:
    db.session.expire_all()
    return db.session.execute(select(SandboxYshCoupon).filter_by(mer_order_id=order)).scalar_one()


def callbacks(kind: str | None = None) -> list[SandboxYshCallback]:
    db.session.expire_all()
    stmt = select(SandboxYshCallback).order_by(SandboxYshCallback.id)
    if kind:
        stmt = stmt.filter_by(kind=kind)
    return list(db.session.execute(stmt).scalars())


# ---- keys and merchants ---------------------------------------------------------------------------

def test_keys_are_made_once_and_the_two_keys_differ(app):
    first = sandbox.ensure_keys()
    again = sandbox.ensure_keys()
    assert {k: v.serial for k, v in first.items()} == {k: v.serial for k, v in again.items()}
    assert first["platform"].serial != first["notify"].serial
    assert db.session.scalar(select(func.count()).select_from(SandboxYshKey)) == 2
    assert "PRIVATE KEY" not in first["platform"].private_key_enc  # encrypted at rest
    assert lklapi.certificate_serial(first["platform"].cert_pem) == first["platform"].serial


def test_provision_merchant_returns_what_the_account_needs_and_checks_the_certificate(app):
    private_pem, cert_pem, serial = lklapi.new_key_pair("bank")
    info = sandbox.provision_merchant("OP00000009", serial.upper(), cert_pem, "1234567890")
    keys = sandbox.ensure_keys()
    assert info == {"platform_serial": keys["platform"].serial, "platform_cert": keys["platform"].cert_pem,
                    "notify_cert": keys["notify"].cert_pem, "base_url_path": "/sandbox/yunshuhui",
                    "openid_url_path": "/sandbox/yunshuhui/openid/1234567890"}
    other_cert = lklapi.new_key_pair("other")[1]
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.provision_merchant("OP00000009", serial, other_cert, "1234567890")  # serial of another certificate
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.provision_merchant("OP00000009", serial, cert_pem, "12345")  # member id too short
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.provision_merchant("OP00000009", serial, "not a certificate", "1234567890")


# ---- issuance callbacks, PROCESS settling --------------------------------------------------------

def test_success_owes_one_issuance_callback_signed_with_the_notification_key(app, account, ysh):
    answer = issue(ysh, "ORDER-1")
    [callback] = callbacks()
    assert (callback.kind, callback.url, callback.status, callback.attempts) == ("issuance", "http://bank.test/post",
                                                                                 "pending", 0)
    receiver = Receiver(account.notify_cert)
    counts = sandbox.deliver_due_callbacks(transport=receiver.transport)
    assert counts == {"attempted": 1, "delivered": 1, "failed": 0, "abandoned": 0}
    [got] = receiver.received
    assert got["verified"] and got["url"] == "http://bank.test/post"
    parsed = parse_issuance_callback(json.dumps(got["body"]).encode())
    assert (parsed["mer_order_id"], parsed["trade_status"], parsed["amount_fen"]) == ("ORDER-1", "SUCCESS", 1000)
    assert answer.trade_no  # the callback carries the documented fields only; ours is the order
    assert callbacks()[0].status == "delivered"
    assert sandbox.deliver_due_callbacks(transport=receiver.transport)["attempted"] == 0  # nothing twice


def test_process_settles_later_to_success_or_fail(app, account, ysh):
    sandbox.update_settings(issue_mode="process", process_outcome="fail", process_delay_seconds=30)
    assert issue(ysh, "ORDER-P").pending
    assert callbacks() == [] and sandbox.settle_due_coupons() == 0  # not yet
    assert sandbox.settle_due_coupons(now=utcnow() + timedelta(seconds=31)) == 1
    coupon = coupon_of("ORDER-P")
    assert (coupon.trade_status, coupon.third_coupon_id, coupon.fail_msg) == ("FAIL", None, "库存不足")
    [callback] = callbacks("issuance")
    assert json.loads(callback.body)["tradeStatus"] == "FAIL"
    answer = ysh.query(owner_id=ISSUE["owner_id"], mer_order_id="ORDER-P", activity_id=ISSUE["activity_id"])
    assert answer.trade_status == "FAIL"

    sandbox.update_settings(process_outcome="success", process_delay_seconds=0)
    issue(ysh, "ORDER-P2")
    assert sandbox.settle_due_coupons() == 1 and coupon_of("ORDER-P2").trade_status == "SUCCESS"


def test_the_same_order_sent_at_once_makes_one_coupon(app, make, ysh_live_site):
    account = connect_ysh_account(make.org(kind="bank"), site=ysh_live_site)
    sandbox.define_activity("A000000003", stock=3)
    barrier = threading.Barrier(6)
    answers = []

    def send(client: YunshuhuiClient, order: str):
        barrier.wait()
        answers.append(issue(client, order, activity_id="A000000003"))

    threads = [threading.Thread(target=send, args=(YunshuhuiClient.for_account(account), f"ORDER-RACE{n % 2}"))
               for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 6 and all(a.succeeded for a in answers)
    assert len({(a.mer_order_id, a.third_coupon_id) for a in answers}) == 2
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(SandboxYshCoupon)) == 2
    assert sandbox.define_activity("A000000003", stock=3).issued == 2  # counted once per coupon


def test_random_mode_answers_all_three(ysh):
    sandbox.update_settings(issue_mode="random", random_success_percent=34, random_process_percent=33)
    statuses = {issue(ysh, f"ORDER-R{i}").trade_status for i in range(40)}
    assert statuses == {"SUCCESS", "PROCESS", "FAIL"}
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.update_settings(random_success_percent=80, random_process_percent=30)


# ---- delivery and retries ------------------------------------------------------------------------

def test_a_callback_is_retried_on_the_real_schedule_until_success(app, account, ysh):
    issue(ysh, "ORDER-RETRY")
    receiver = Receiver(account.notify_cert, answers=[{"code": "FAIL", "msg": "busy"}, {"code": "FAIL", "msg": "busy"}])
    start = utcnow()
    assert sandbox.deliver_due_callbacks(now=start, transport=receiver.transport)["failed"] == 1
    [callback] = callbacks()
    assert callback.attempts == 1 and callback.next_attempt_at == start + timedelta(seconds=1)
    assert sandbox.deliver_due_callbacks(now=start + timedelta(milliseconds=500),
                                         transport=receiver.transport)["attempted"] == 0  # not due yet
    second = start + timedelta(seconds=1)
    assert sandbox.deliver_due_callbacks(now=second, transport=receiver.transport)["failed"] == 1
    assert callbacks()[0].next_attempt_at == second + timedelta(seconds=5)
    third = second + timedelta(seconds=5)
    assert sandbox.deliver_due_callbacks(now=third, transport=receiver.transport)["delivered"] == 1
    callback = callbacks()[0]
    assert (callback.status, callback.attempts, callback.next_attempt_at) == ("delivered", 3, None)
    history = list(db.session.execute(select(SandboxYshCallbackAttempt).order_by(SandboxYshCallbackAttempt.id)).scalars())
    assert [(a.ok, a.http_status) for a in history] == [(False, 200), (False, 200), (True, 200)]
    assert '"busy"' in history[0].response_excerpt
    assert len(receiver.received) == 3 and all(r["verified"] for r in receiver.received)


def test_http_errors_and_unreachable_receivers_are_retried_then_given_up(app, account, ysh):
    issue(ysh, "ORDER-DOWN")
    down = httpx.MockTransport(lambda request: httpx.Response(503, text="down"))
    now = utcnow()
    gaps = []
    for _ in range(len(sandbox.RETRY_SCHEDULE) + 1):
        sandbox.deliver_due_callbacks(now=now, transport=down)
        callback = callbacks()[0]
        if callback.next_attempt_at:
            gaps.append(int((callback.next_attempt_at - now).total_seconds()))
            now = callback.next_attempt_at
    assert tuple(gaps) == sandbox.RETRY_SCHEDULE == (1, 5, 5, 10, 180, 600, 1200, 1800, 3600, 7200)
    assert (callback.status, callback.attempts) == ("abandoned", 11)

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    sandbox.redeliver_now(callback.id)  # by hand: one more try after the schedule ran out
    assert sandbox.deliver_due_callbacks(transport=httpx.MockTransport(refuse))["abandoned"] == 1
    last = db.session.execute(select(SandboxYshCallbackAttempt).order_by(SandboxYshCallbackAttempt.id.desc())
                              .limit(1)).scalar_one()
    assert last.http_status is None and "refused" in last.error


def test_a_claimed_callback_is_not_sent_twice_by_two_runners(app, account, ysh):
    issue(ysh, "ORDER-CLAIM")
    receiver = Receiver(account.notify_cert)
    barrier = threading.Barrier(3)
    results = []

    def runner():
        with app.app_context():
            barrier.wait()
            results.append(sandbox.deliver_due_callbacks(transport=receiver.transport))
            db.session.remove()

    threads = [threading.Thread(target=runner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(r["attempted"] for r in results) == 1 and len(receiver.received) == 1


# ---- misbehaviour of callbacks --------------------------------------------------------------------

def test_duplicates_are_extra_copies_of_the_same_body(app, account, ysh):
    sandbox.update_settings(cb_duplicates=2)
    issue(ysh, "ORDER-DUP")
    rows = callbacks()
    assert len(rows) == 3 and {r.body for r in rows} == {rows[0].body}
    assert [r.duplicate_of for r in rows] == [None, rows[0].id, rows[0].id]
    receiver = Receiver(account.notify_cert)
    assert sandbox.deliver_due_callbacks(transport=receiver.transport)["delivered"] == 3
    assert len({json.dumps(r["body"]) for r in receiver.received}) == 1 and len(receiver.received) == 3


def test_out_of_order_sends_the_redemption_before_the_issuance(app, account, ysh):
    sandbox.update_settings(cb_out_of_order=1)
    issue(ysh, "ORDER-OOO")
    sandbox.use_coupon(coupon_of("ORDER-OOO").id, 3000)
    receiver = Receiver(account.notify_cert)
    sandbox.deliver_due_callbacks(transport=receiver.transport)
    assert [r["url"] for r in receiver.received] == ["http://bank.test/writeoff"]
    sandbox.deliver_due_callbacks(now=utcnow() + sandbox.OUT_OF_ORDER_HOLD, transport=receiver.transport)
    assert [r["url"] for r in receiver.received] == ["http://bank.test/writeoff", "http://bank.test/post"]


def test_badly_signed_callbacks_fail_verification_and_are_retried(app, account, ysh):
    sandbox.update_settings(cb_bad_signature_percent=100)
    issue(ysh, "ORDER-BADSIG")
    receiver = Receiver(account.notify_cert)
    now = utcnow()
    assert sandbox.deliver_due_callbacks(now=now, transport=receiver.transport)["failed"] == 1
    assert receiver.received[0]["verified"] is False
    with pytest.raises(lklapi.SignatureError):  # our verify_callback rejects it the same way
        from app.providers.yunshuhui import verify_callback
        header = sandbox._sign_callback(callbacks()[0].body.encode(), bad=True)
        verify_callback(account, header, callbacks()[0].body.encode())
    sandbox.update_settings(cb_bad_signature_percent=0)
    assert sandbox.deliver_due_callbacks(now=now + timedelta(seconds=1), transport=receiver.transport)["delivered"] == 1
    attempts = list(db.session.execute(select(SandboxYshCallbackAttempt.bad_signature)
                                       .order_by(SandboxYshCallbackAttempt.id)).scalars())
    assert attempts == [True, False]


# ---- redemption ----------------------------------------------------------------------------------

def test_use_and_expire_send_redemption_callbacks(app, account, ysh):
    sandbox.define_activity("A000000001", face_value_fen=2000, threshold_fen=5000)
    issue(ysh, "ORDER-USE")
    issue(ysh, "ORDER-EXP")
    used = coupon_of("ORDER-USE")
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.use_coupon(used.id, 4999)  # below the threshold
    sandbox.use_coupon(used.id, 8800, merchant_name="健身房一号店")
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.use_coupon(used.id, 8800)  # once only
    sandbox.expire_coupon(coupon_of("ORDER-EXP").id)
    receiver = Receiver(account.notify_cert)
    sandbox.deliver_due_callbacks(transport=receiver.transport)
    redemptions = {r["body"]["mer_order_id"]: parse_redemption_callback(json.dumps(r["body"]).encode())
                   for r in receiver.received if r["url"].endswith("/writeoff")}
    use = redemptions["ORDER-USE"]
    assert (use["redemption_status"], use["promo_amount_fen"], use["total_amount_fen"], use["org_amount_fen"]) == (
        "USED", 2000, 8800, 2000)
    assert use["merchant_name"] == "健身房一号店" and use["third_coupon_id"] == used.third_coupon_id
    assert use["used_at"] is not None and abs((use["used_at"] - utcnow()).total_seconds()) < 60
    expired = redemptions["ORDER-EXP"]
    assert expired["redemption_status"] == "EXPIRED" and expired["promo_amount_fen"] is None


def test_a_failed_or_processing_coupon_cannot_be_used(ysh):
    sandbox.update_settings(issue_mode="fail")
    issue(ysh, "ORDER-NOPE")
    with pytest.raises(sandbox.SandboxRefusal):
        sandbox.use_coupon(coupon_of("ORDER-NOPE").id, 5000)


def test_auto_redeem_looks_at_each_old_coupon_once(app, account, ysh):
    for n in range(4):
        issue(ysh, f"ORDER-AUTO{n}")
    assert sandbox.auto_redeem(fraction=1.0, min_age_seconds=60) == 0  # too young
    db.session.execute(SandboxYshCoupon.__table__.update().values(created_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    assert sandbox.auto_redeem(fraction=1.0, min_age_seconds=60) == 4
    assert sandbox.auto_redeem(fraction=1.0, min_age_seconds=60) == 0
    assert len(callbacks("redemption")) == 4


def test_run_cycle_does_nothing_when_the_sandboxes_are_off(app, account, ysh):
    issue(ysh, "ORDER-OFF")
    app.config["SANDBOXES_ENABLED"] = False
    try:
        assert sandbox.run_cycle() == {}
    finally:
        app.config["SANDBOXES_ENABLED"] = True
    assert callbacks()[0].attempts == 0


# ---- the storm -----------------------------------------------------------------------------------

def test_storm_shuffles_copies_and_spoils_a_share_without_losing_a_coupon(app, account, ysh):
    for n in range(20):
        issue(ysh, f"ORDER-STORM{n:02d}")
    coupons = list(db.session.execute(select(SandboxYshCoupon).order_by(SandboxYshCoupon.id)).scalars())
    storm = sandbox.storm(coupons, copies=10, bad_signature_percent=5, seed=7)
    assert len(storm) == 200 and sum(1 for r in storm if not r.good_signature) == 10
    assert [r.coupon_id for r in storm] != sorted(r.coupon_id for r in storm)  # shuffled
    receiver = Receiver(account.notify_cert)
    for request in storm:
        verified = receiver.verified(httpx.Request("POST", request.url, headers=request.headers, content=request.body))
        assert verified is request.good_signature
        assert request.url == "http://bank.test/writeoff"
    good_per_coupon = {c.id: 0 for c in coupons}
    for request in storm:
        good_per_coupon[request.coupon_id] += request.good_signature
    assert min(good_per_coupon.values()) >= 1
    assert {json.loads(r.body)["tradeStatus"] for r in storm} == {"USED"}
    assert len({r.headers["Authorization"] for r in storm}) == 200  # every copy freshly signed
    db.session.expire_all()
    assert all(c.redemption_status == "USED" for c in db.session.execute(select(SandboxYshCoupon)).scalars())
    assert callbacks("redemption") == []  # the storm is the caller's to send


# ---- OpenID hand-off -----------------------------------------------------------------------------

def test_openid_page_redirects_back_with_the_openid(client, account, ysh):
    wmcb = "https://hub.example/h5/ysh/openid?state=abc"
    page = client.get(ysh.openid_url(wmcb).removeprefix("http://sandbox.test"))
    assert page.status_code == 200 and "暂无沙箱用户" in page.get_data(as_text=True)
    answer = client.post(f"/sandbox/yunshuhui/openid/{account.member_id}",
                         data={"csrf_token": csrf_from(page), "wmcb": wmcb, "nickname": "小明"})
    assert answer.status_code == 302
    target = urlsplit(answer.headers["Location"])
    assert (target.scheme, target.netloc, target.path) == ("https", "hub.example", "/h5/ysh/openid")
    query = parse_qs(target.query)
    customer = db.session.execute(select(SandboxYshCustomer).filter_by(nickname="小明")).scalar_one()
    assert query == {"state": ["abc"], "openid": [customer.openid], "from": ["dshy"]}

    plain = "https://hub.example/back"
    page = client.get(f"/sandbox/yunshuhui/openid/{account.member_id}", query_string={"wmcb": plain})
    assert customer.openid in page.get_data(as_text=True)
    picked = client.post(f"/sandbox/yunshuhui/openid/{account.member_id}",
                         data={"csrf_token": csrf_from(page), "wmcb": plain, "openid": customer.openid})
    assert picked.headers["Location"] == f"{plain}?openid={customer.openid}&from=dshy"


def test_openid_page_refuses_bad_callbacks_and_unknown_members(client, account):
    assert client.get(f"/sandbox/yunshuhui/openid/{account.member_id}",
                      query_string={"wmcb": "javascript:alert(1)"}).status_code == 400
    assert client.get(f"/sandbox/yunshuhui/openid/{account.member_id}").status_code == 400
    assert client.get("/sandbox/yunshuhui/openid/9999999999",
                      query_string={"wmcb": "https://hub.example/"}).status_code == 404


def test_openid_return_url_joins_correctly():
    assert sandbox.openid_return_url("https://a/b", "o1") == "https://a/b?openid=o1&from=dshy"
    assert sandbox.openid_return_url("https://a/b?x=1", "o1") == "https://a/b?x=1&openid=o1&from=dshy"
    assert sandbox.openid_return_url("https://a/b?", "o1") == "https://a/b?openid=o1&from=dshy"


# ---- the console ---------------------------------------------------------------------------------

def test_console_needs_platform_manage(client, auth, make, account):
    bank_admin = make.operator(make.org(kind="bank"), roles=("org_admin",))
    auth.login(bank_admin.username)
    assert client.get("/sandbox/yunshuhui/").status_code == 403
    auth.logout()
    admin = make.operator(make.platform(), roles=("platform_admin",))
    auth.login(admin.username)
    page = client.get("/sandbox/yunshuhui/")
    assert page.status_code == 200 and account.app_id in page.get_data(as_text=True)


def test_console_uses_a_coupon_and_changes_behaviour(client, auth, make, account, ysh):
    issue(ysh, "ORDER-CONSOLE")
    admin = make.operator(make.platform(), roles=("platform_admin",))
    auth.login(admin.username)
    page = client.get("/sandbox/yunshuhui/")
    html = page.get_data(as_text=True)
    assert "ORDER-CONSOLE" in html and 'data-testid="use-ORDER-CONSOLE"' in html
    token = csrf_from(page)
    coupon = coupon_of("ORDER-CONSOLE")
    refused = client.post(f"/sandbox/yunshuhui/coupons/{coupon.id}/use", data={"csrf_token": token, "amount": "abc"})
    assert refused.status_code == 302 and coupon_of("ORDER-CONSOLE").redemption_status is None
    used = client.post(f"/sandbox/yunshuhui/coupons/{coupon.id}/use", data={"csrf_token": token, "amount": "66.80"})
    assert used.status_code == 302
    coupon = coupon_of("ORDER-CONSOLE")
    assert (coupon.redemption_status, coupon.total_amount_fen) == ("USED", 6680)
    assert len(callbacks("redemption")) == 1
    saved = client.post("/sandbox/yunshuhui/settings", data={"csrf_token": token, "issue_mode": "process",
                                                             "cb_duplicates": "2", "cb_out_of_order": "1"})
    assert saved.status_code == 302
    settings = sandbox.get_settings()
    assert (settings["issue_mode"], settings["cb_duplicates"], settings["cb_out_of_order"]) == ("process", 2, 1)
    client.post("/sandbox/yunshuhui/settings", data={"csrf_token": token, "issue_mode": "nonsense"})
    assert sandbox.get_settings()["issue_mode"] == "process"
    client.post("/sandbox/yunshuhui/settings/reset", data={"csrf_token": token})
    assert sandbox.get_settings()["issue_mode"] == "success"
    history = client.get("/sandbox/yunshuhui/", query_string={"status": "USED"}).get_data(as_text=True)
    assert "ORDER-CONSOLE" in history
