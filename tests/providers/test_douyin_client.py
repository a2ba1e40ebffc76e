"""The Douyin client against the Douyin sandbox: tokens, prepare/verify per state, cancel, failures, concurrency.

The client talks HTTP to the sandbox blueprint, in process (httpx.WSGITransport) or, where real
timeouts matter, through a live werkzeug server on a free port.
"""
from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from app.core.timeutil import utcnow
from app.extensions import db, get_redis
from app.providers.douyin import (ASSUMED_CODES, CREDENTIALS_INVALID, MAX_LINK_HOPS, DouyinClient, OutcomeUnknown,
                                  ShortLinkError, VerifyTokenInvalid)
from app.providers.vouchers import (PlatformAuthError, PlatformUnavailable, VoucherAlreadyUsed,
                                    VoucherCancelNotAllowed, VoucherExpired, VoucherNotFound, VoucherNotValidHere,
                                    VoucherNotYetValid, VoucherRefunded)
from app.sandbox import douyin as sandbox
from app.sandbox.douyin_models import SandboxDouyinCertificate, SandboxDouyinToken, SandboxDouyinVerification
from tests.helpers import serving

BASE = "http://sandbox.test/sandbox/douyin"


class Sandbox:
    """Test-side handle on the sandbox's state."""

    def __init__(self):
        self.skus = {sku.sku_id: sku for sku in sandbox.seed_sandbox_skus()}

    def buy(self, sku_id: str = "DYSKU1001", **values) -> SandboxDouyinCertificate:
        return sandbox.buy_certificate(self.skus[sku_id], **values)

    def reload(self, cert: SandboxDouyinCertificate) -> SandboxDouyinCertificate:
        db.session.expire_all()
        return db.session.get(SandboxDouyinCertificate, cert.id)

    def verifications(self, cert: SandboxDouyinCertificate) -> list[SandboxDouyinVerification]:
        db.session.expire_all()
        return list(db.session.execute(select(SandboxDouyinVerification).filter_by(certificate_pk=cert.id)
                                       .order_by(SandboxDouyinVerification.id)).scalars())


@pytest.fixture
def dy(app):
    return Sandbox()


class SleepRecorder:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def make_client(app, sleeps):
    clients = []

    def make(base_url: str = BASE, secret: str = sandbox.SANDBOX_CLIENT_SECRET, **options) -> DouyinClient:
        if base_url == BASE:
            options.setdefault("transport", httpx.WSGITransport(app=app))
        options.setdefault("sleep", sleeps)
        options.setdefault("redis", get_redis())
        client = DouyinClient(base_url, sandbox.SANDBOX_CLIENT_KEY, secret, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client_(make_client):
    return make_client()


@pytest.fixture
def live_server(app):
    """The app on a real socket, for real timeouts; waits for slow sandbox requests before the next test."""
    with serving(app) as base:
        yield base + "/sandbox/douyin"


# --- token ----------------------------------------------------------------------------------------

def test_token_is_fetched_once_and_shared_through_redis(dy, client_, make_client):
    cert = dy.buy()
    client_.prepare(code=cert.code)
    client_.prepare(code=cert.code)
    assert sandbox.call_count("token") == 1
    assert sandbox.call_count("prepare") == 2

    other_process = make_client()  # a new client object, as another web process or worker would have
    other_process.prepare(code=cert.code)
    assert sandbox.call_count("token") == 1

    ttl = get_redis().ttl(client_.token_key)
    assert 0 < ttl < 7200  # cached a little shorter than Douyin's expires_in
    cached = get_redis().get(client_.token_key).decode()
    assert db.session.execute(select(SandboxDouyinToken).filter_by(access_token=cached)).scalar_one()


def test_expired_token_is_refreshed_once_transparently(dy, client_):
    cert = dy.buy()
    client_.prepare(code=cert.code)
    old = get_redis().get(client_.token_key).decode()
    token = db.session.execute(select(SandboxDouyinToken).filter_by(access_token=old)).scalar_one()
    token.expires_at = utcnow() - timedelta(seconds=1)  # Douyin expired it before our cache did
    db.session.commit()

    preview = client_.prepare(code=cert.code)

    assert preview.code == cert.code
    assert sandbox.call_count("token") == 2
    assert sandbox.call_count("prepare") == 3  # the first, the rejected one, the repeat
    assert get_redis().get(client_.token_key).decode() != old


def test_invalid_cached_token_is_replaced(dy, client_):
    cert = dy.buy()
    get_redis().set(client_.token_key, "clt.not-a-token", ex=600)

    client_.prepare(code=cert.code)

    assert sandbox.call_count("token") == 1
    assert sandbox.call_count("prepare") == 2
    assert get_redis().get(client_.token_key).decode() != "clt.not-a-token"


def test_wrong_secret_is_an_auth_error(dy, make_client):
    client = make_client(secret="not-the-secret")
    with pytest.raises(PlatformAuthError) as caught:
        client.prepare(code=dy.buy().code)
    assert caught.value.platform_code == CREDENTIALS_INVALID
    assert sandbox.call_count("token") == 1  # a refusal is not retried
    assert sandbox.call_count("prepare") == 0
    assert get_redis().get(client.token_key) is None


# --- prepare and verify -----------------------------------------------------------------------------

def test_unused_voucher_prepares_and_verifies(dy, client_):
    cert = dy.buy("DYSKU1001", buyer_phone="13812348000")

    preview = client_.prepare(code=cert.code)

    assert preview.platform == "douyin"
    assert (preview.code, preview.deal_id, preview.title) == (cert.code, "DYSKU1001", "月卡（30 天）")
    assert (preview.original_price_fen, preview.paid_price_fen) == (39900, 29900)
    assert (preview.uses_left, preview.voucher_kind) == (1, "single")
    assert preview.encrypted_code == cert.encrypted_code
    assert preview.order_id == cert.order_id
    assert preview.buyer_phone_masked == "138****8000"
    assert abs((preview.expires_at - cert.expire_time).total_seconds()) < 1
    assert preview.verify_token

    verified = client_.verify(preview.verify_token, "POI-1", [preview.encrypted_code])

    assert verified.platform == "douyin"
    assert (verified.code, verified.deal_id, verified.certificate_id) == (cert.code, "DYSKU1001", cert.certificate_id)
    assert verified.order_id == cert.order_id
    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("used", 1)
    [record] = dy.verifications(cert)
    assert (record.verify_id, record.poi_id) == (verified.verify_id, "POI-1")


def test_prepare_by_scanned_encrypted_data(dy, client_):
    cert = dy.buy()
    preview = client_.prepare(encrypted_data=cert.encrypted_code)
    assert preview.code == cert.code
    assert preview.encrypted_code == cert.encrypted_code


def _expire(cert):
    cert.expire_time = utcnow() - timedelta(minutes=1)


def _refund(cert):
    cert.status = "refunded"


def _use(cert):
    cert.status, cert.times_used = "used", 1


def _not_yet(cert):
    cert.valid_from = utcnow() + timedelta(days=1)


def _marked_expired(cert):
    cert.status = "expired"


@pytest.mark.parametrize("change, error", [
    (_use, VoucherAlreadyUsed),
    (_expire, VoucherExpired),
    (_marked_expired, VoucherExpired),
    (_refund, VoucherRefunded),
    (_not_yet, VoucherNotYetValid),
])
def test_prepare_refuses_by_state(dy, client_, change, error):
    cert = dy.buy()
    change(cert)
    db.session.commit()
    with pytest.raises(error) as caught:
        client_.prepare(code=cert.code)
    assert caught.value.platform_code == next(c.error_code for c in ASSUMED_CODES.values() if c.error is error)


def test_unknown_code_is_not_found(dy, client_):
    with pytest.raises(VoucherNotFound):
        client_.prepare(code="000000000000")


@pytest.mark.parametrize("change, error", [
    (_use, VoucherAlreadyUsed),
    (_expire, VoucherExpired),
    (_refund, VoucherRefunded),
])
def test_verify_rechecks_the_state_after_prepare(dy, client_, change, error):
    """The certificate changed between prepare and verify (used elsewhere, expired, refunded)."""
    cert = dy.buy()
    preview = client_.prepare(code=cert.code)
    change(cert)
    db.session.commit()
    with pytest.raises(error) as caught:
        client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    assert caught.value.verified == []
    assert dy.verifications(cert) == []


def test_voucher_for_another_poi_is_refused_and_stays_usable(dy, client_):
    cert = dy.buy(poi_id="POI-A")
    preview = client_.prepare(code=cert.code)
    with pytest.raises(VoucherNotValidHere):
        client_.verify(preview.verify_token, "POI-B", preview.encrypted_code)
    assert dy.reload(cert).status == "unused"

    preview = client_.prepare(code=cert.code)
    client_.verify(preview.verify_token, "POI-A", preview.encrypted_code)
    assert dy.reload(cert).status == "used"


def test_time_card_counts_its_uses(dy, client_):
    cert = dy.buy("DYSKU1003")
    preview = client_.prepare(code=cert.code)
    assert (preview.voucher_kind, preview.uses_left) == ("multi_use", 20)

    client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    preview = client_.prepare(code=cert.code)
    assert preview.uses_left == 19
    client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("unused", 2)

    cert.times_used = 19
    db.session.commit()
    preview = client_.prepare(code=cert.code)
    assert preview.uses_left == 1
    client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("used", 20)
    with pytest.raises(VoucherAlreadyUsed):
        client_.prepare(code=cert.code)


def test_verify_token_is_single_use(dy, client_):
    cert = dy.buy("DYSKU1003")  # a time card: only the token stops a second use
    preview = client_.prepare(code=cert.code)
    client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)

    with pytest.raises(VerifyTokenInvalid):
        client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    assert dy.reload(cert).times_used == 1


def test_verify_token_covers_only_the_prepared_certificate(dy, client_):
    prepared, other = dy.buy(), dy.buy()
    preview = client_.prepare(code=prepared.code)
    with pytest.raises(VerifyTokenInvalid):
        client_.verify(preview.verify_token, "POI-1", other.encrypted_code)
    assert dy.reload(other).status == "unused"


# --- cancel and get -----------------------------------------------------------------------------

def test_cancel_within_the_hour_restores_the_certificate(dy, client_):
    cert = dy.buy()
    preview = client_.prepare(code=cert.code)
    verified = client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    assert client_.get(cert.encrypted_code).status == "used"

    client_.cancel(verified.verify_id, verified.certificate_id)

    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("unused", 0)
    status = client_.get(cert.encrypted_code)
    assert (status.status, status.times_used) == ("unused", 0)
    assert [r["cancelled"] for r in status.verify_records] == [True]
    with pytest.raises(VoucherCancelNotAllowed):  # once only
        client_.cancel(verified.verify_id, verified.certificate_id)
    preview = client_.prepare(code=cert.code)  # usable again
    client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    assert dy.reload(cert).status == "used"


def test_cancel_after_the_hour_is_refused(dy, client_):
    cert = dy.buy()
    preview = client_.prepare(code=cert.code)
    verified = client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    [record] = dy.verifications(cert)
    record.verified_at = utcnow() - timedelta(minutes=61)
    db.session.commit()

    with pytest.raises(VoucherCancelNotAllowed) as caught:
        client_.cancel(verified.verify_id, verified.certificate_id)

    assert caught.value.platform_code == ASSUMED_CODES["cancel_window_passed"].error_code
    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("used", 1)
    assert dy.verifications(cert)[0].cancelled_at is None


def test_cancel_of_an_unknown_verification(dy, client_):
    cert = dy.buy()
    with pytest.raises(VoucherNotFound):
        client_.cancel("7000000000000000000", cert.certificate_id)


def test_get_of_an_unknown_certificate(dy, client_):
    with pytest.raises(VoucherNotFound):
        client_.get("CgYInot-a-code")


# --- failures ------------------------------------------------------------------------------------

def test_prepare_is_retried_a_bounded_number_of_times_on_5xx(dy, client_, sleeps):
    cert = dy.buy()
    client_.access_token()
    sandbox.set_misbehave(status=503, only=["prepare"])

    with pytest.raises(PlatformUnavailable) as caught:
        client_.prepare(code=cert.code)

    assert caught.value.retryable
    assert sandbox.call_count("prepare") == 3  # one try and two retries
    assert sleeps.calls == [0.2, 0.4]


def test_prepare_recovers_from_a_transient_5xx(dy, client_, sleeps):
    cert = dy.buy()
    sandbox.set_misbehave(status=500, only=["prepare"], times=1)
    preview = client_.prepare(code=cert.code)
    assert preview.code == cert.code
    assert sandbox.call_count("prepare") == 2
    assert sleeps.calls == [0.2]


def test_token_fetch_is_retried_on_5xx(dy, client_):
    sandbox.set_misbehave(status=502, only=["token"])
    with pytest.raises(PlatformUnavailable):
        client_.prepare(code=dy.buy().code)
    assert sandbox.call_count("token") == 3
    assert sandbox.call_count("prepare") == 0


def test_verify_is_not_retried_on_5xx(dy, client_, sleeps):
    cert = dy.buy()
    preview = client_.prepare(code=cert.code)
    sandbox.set_misbehave(status=500, only=["verify"])

    with pytest.raises(OutcomeUnknown) as caught:
        client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)

    assert isinstance(caught.value, PlatformUnavailable)
    assert not caught.value.retryable  # the desk must look the certificate up, not repeat the verify
    assert sandbox.call_count("verify") == 1
    assert sleeps.calls == []
    assert dy.reload(cert).status == "unused"


def test_cancel_is_not_retried_on_5xx(dy, client_):
    cert = dy.buy()
    preview = client_.prepare(code=cert.code)
    verified = client_.verify(preview.verify_token, "POI-1", preview.encrypted_code)
    sandbox.set_misbehave(status=503, only=["cancel"])
    with pytest.raises(OutcomeUnknown):
        client_.cancel(verified.verify_id, verified.certificate_id)
    assert sandbox.call_count("cancel") == 1
    assert dy.reload(cert).status == "used"


def test_unreachable_platform_is_unavailable(dy, make_client, sleeps):
    client = make_client(base_url="http://127.0.0.1:9/sandbox/douyin", timeout=0.5)
    with pytest.raises(PlatformUnavailable):
        client.prepare(code="123456789012")
    assert sleeps.calls == [0.2, 0.4]


def test_prepare_timing_out_is_retried_then_unavailable(dy, make_client, live_server, sleeps):
    cert = dy.buy()
    client = make_client(base_url=live_server, timeout=0.3)
    client.access_token()
    sandbox.set_misbehave(timeout_seconds=0.6, only=["prepare"])

    with pytest.raises(PlatformUnavailable):
        client.prepare(code=cert.code)

    assert sleeps.calls == [0.2, 0.4]
    import time

    time.sleep(0.7)  # the sandbox's last hanging answer
    assert sandbox.call_count("prepare") == 3


def test_verify_slower_than_the_timeout_is_not_retried_and_reported_unknown(dy, make_client, live_server, sleeps):
    """The verify did happen on the platform: the client says so instead of repeating it."""
    cert = dy.buy()
    client = make_client(base_url=live_server, timeout=0.3)
    preview = client.prepare(code=cert.code)
    sandbox.set_misbehave(latency_ms=800, only=["verify"])

    with pytest.raises(OutcomeUnknown):
        client.verify(preview.verify_token, "POI-1", preview.encrypted_code)

    assert sandbox.call_count("verify") == 1
    assert sleeps.calls == []
    import time

    deadline = time.monotonic() + 5
    while client.get(cert.encrypted_code).status != "used":  # what the desk does after OutcomeUnknown
        assert time.monotonic() < deadline, "the slow verify never completed"
        time.sleep(0.1)
    assert sandbox.call_count("verify") == 1


# --- concurrency ---------------------------------------------------------------------------------

def _race(app, make_client, jobs):
    """Run each job(client) in its own thread at the same moment; return results or exceptions."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list = [None] * len(jobs)
    clients = [make_client() for _ in jobs]

    def run(i):
        with app.app_context():
            barrier.wait()
            try:
                outcomes[i] = jobs[i](clients[i])
            except Exception as exc:  # noqa: BLE001 - the outcome under test
                outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.parametrize("round_", range(3))
def test_two_desks_verifying_one_certificate_exactly_one_succeeds(app, dy, client_, make_client, round_):
    cert = dy.buy()
    first, second = client_.prepare(code=cert.code), client_.prepare(code=cert.code)  # two desks scanned it

    outcomes = _race(app, make_client, [
        lambda c: c.verify(first.verify_token, "POI-1", first.encrypted_code),
        lambda c: c.verify(second.verify_token, "POI-2", second.encrypted_code),
    ])

    succeeded = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(succeeded) == 1, outcomes
    assert len(refused) == 1 and isinstance(refused[0], VoucherAlreadyUsed), outcomes
    cert = dy.reload(cert)
    assert (cert.status, cert.times_used) == ("used", 1)
    assert len(dy.verifications(cert)) == 1


def test_one_verify_token_used_twice_at_once_verifies_once(app, dy, client_, make_client):
    cert = dy.buy("DYSKU1003")
    preview = client_.prepare(code=cert.code)

    outcomes = _race(app, make_client, [
        lambda c: c.verify(preview.verify_token, "POI-1", preview.encrypted_code),
        lambda c: c.verify(preview.verify_token, "POI-1", preview.encrypted_code),
    ])

    assert sum(not isinstance(o, Exception) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, VerifyTokenInvalid) for o in outcomes) == 1, outcomes
    assert dy.reload(cert).times_used == 1


def test_concurrent_time_card_uses_all_count(app, dy, client_, make_client):
    cert = dy.buy("DYSKU1003")
    previews = [client_.prepare(code=cert.code) for _ in range(4)]

    outcomes = _race(app, make_client, [
        (lambda p: (lambda c: c.verify(p.verify_token, "POI-1", p.encrypted_code)))(p) for p in previews])

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert len({o.verify_id for o in outcomes}) == 4
    assert dy.reload(cert).times_used == 4


# --- short links --------------------------------------------------------------------------------------

def test_a_sandbox_short_link_is_followed_to_its_certificate(dy, client_):
    cert = dy.buy("DYSKU1003")
    link = f"{BASE}/s/{sandbox.short_link_slug(cert)}/"
    assert "encrypted_data" not in link and cert.encrypted_code not in link
    encrypted = client_.resolve_short_link(link)
    assert encrypted == cert.encrypted_code
    preview = client_.prepare(encrypted_data=encrypted)
    assert (preview.code, preview.voucher_kind, preview.uses_left) == (cert.code, "multi_use", 20)


def test_an_unknown_sandbox_short_link_leads_nowhere(dy, client_):
    with pytest.raises(ShortLinkError):
        client_.resolve_short_link(f"{BASE}/s/zzzzzzzz/")


def recording(handler):
    """A transport that answers with `handler` and records every URL asked for."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return handler(request)

    return httpx.MockTransport(handle), seen


def test_a_douyin_short_link_is_read_off_its_redirects_without_fetching_the_target(make_client):
    def douyin(request: httpx.Request) -> httpx.Response:
        if request.url.host == "v.douyin.com":
            return httpx.Response(302, headers={"Location": "https://www.douyin.com/hop/abc"})
        if request.url.path == "/hop/abc":  # a second hop, relative Location
            return httpx.Response(301, headers={"Location": "/life/voucher?object_id=CgYI-object&scene=1"})
        return httpx.Response(500)

    transport, seen = recording(douyin)
    client = make_client("https://open.douyin.com", transport=transport)
    assert client.resolve_short_link(" https://v.douyin.com/iAbCdEf/ ") == "CgYI-object"
    assert seen == ["https://v.douyin.com/iAbCdEf/", "https://www.douyin.com/hop/abc"]


def test_a_link_carrying_its_data_needs_no_request(make_client):
    transport, seen = recording(lambda request: httpx.Response(500))
    client = make_client("https://open.douyin.com", transport=transport)
    assert client.resolve_short_link("https://v.douyin.com/x/?encrypted_data=CgYIabc") == "CgYIabc"
    assert client.resolve_short_link("https://www.iesdouyin.com/share/?object_id=CgYIdef&u=1") == "CgYIdef"
    assert seen == []


@pytest.mark.parametrize("link", ["http://127.0.0.1:6379/douyin", "https://evil.example/v.douyin.com/x",
                                  "http://v.douyin.com/abc/", "https://v.douyin.com.evil.example/abc",
                                  "file:///etc/douyin", "ftp://v.douyin.com/abc"])
def test_links_off_douyin_are_never_fetched(make_client, link):
    transport, seen = recording(lambda request: httpx.Response(302, headers={"Location": "/?object_id=x"}))
    client = make_client("https://open.douyin.com", transport=transport)
    with pytest.raises(ShortLinkError):
        client.resolve_short_link(link)
    assert seen == []


def test_a_redirect_off_douyin_or_no_redirect_or_a_loop_is_refused(make_client):
    def off(request):
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})

    transport, seen = recording(off)
    with pytest.raises(ShortLinkError):
        make_client("https://open.douyin.com", transport=transport).resolve_short_link("https://v.douyin.com/a/")
    assert seen == ["https://v.douyin.com/a/"]  # the address it pointed to was not asked

    transport, _ = recording(lambda request: httpx.Response(200, text="<html>expired</html>"))
    with pytest.raises(ShortLinkError):
        make_client("https://open.douyin.com", transport=transport).resolve_short_link("https://v.douyin.com/b/")

    transport, seen = recording(lambda request: httpx.Response(302, headers={"Location": str(request.url)}))
    with pytest.raises(ShortLinkError):
        make_client("https://open.douyin.com", transport=transport).resolve_short_link("https://v.douyin.com/c/")
    assert len(seen) == MAX_LINK_HOPS + 1


def test_a_short_link_host_that_fails_is_retried_then_unavailable(make_client, sleeps):
    transport, seen = recording(lambda request: httpx.Response(503))
    client = make_client("https://open.douyin.com", transport=transport, retries=2, backoff=0.1)
    with pytest.raises(PlatformUnavailable):
        client.resolve_short_link("https://v.douyin.com/d/")
    assert len(seen) == 3 and sleeps.calls == [0.1, 0.2]
