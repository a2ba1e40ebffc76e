"""Security basics: CSRF, login throttling, session cookie flags and timeouts, headers, redirects."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from app import create_app
from app.auth.models import Operator
from app.config import TestConfig
from app.core.audit import AuditEvent
from app.extensions import db
from tests.factories import PASSWORD
from tests.helpers import csrf_from, htmx_headers


@pytest.fixture
def admin(make):
    return make.operator(org=make.platform(), roles=("platform_admin",), username="root")


def new_operator_form(org_id: int, username: str = "newbie") -> dict:
    return {"username": username, "display_name": "新人", "org_id": org_id, "roles": ["viewer"],
            "password": "abcdef123456"}


def test_password_is_stored_with_a_strong_hash(admin):
    assert admin.password_hash.startswith("scrypt:")
    assert PASSWORD not in admin.password_hash


def test_form_post_without_csrf_token_is_refused_and_changes_nothing(client, auth, admin):
    auth.login("root")
    response = client.post("/operators/new", data=new_operator_form(admin.org_id))
    assert response.status_code == 400
    assert db.session.execute(select(Operator).where(Operator.username == "newbie")).first() is None


def test_htmx_post_needs_the_csrf_header(client, auth, admin):
    auth.login("root")
    page = client.get("/operators")
    headers = htmx_headers(target="modal-content")
    refused = client.post("/operators/new", data=new_operator_form(admin.org_id), headers=headers)
    assert refused.status_code == 400
    accepted = client.post("/operators/new", data=new_operator_form(admin.org_id),
                           headers={**headers, "X-CSRFToken": csrf_from(page)})
    assert accepted.status_code == 204
    assert "toast" in accepted.headers["HX-Trigger"]
    assert db.session.execute(select(Operator).where(Operator.username == "newbie")).scalar_one()


def test_login_is_throttled_per_account_after_repeated_failures(client, auth, admin):
    for _ in range(5):
        assert auth.login("root", "wrong-password-1").status_code == 422
    blocked = auth.login("root")  # even the right password waits now
    assert blocked.status_code == 429
    assert "login-throttled" in blocked.get_data(as_text=True)
    assert "/login" in client.get("/dashboard").headers.get("Location", "")


def test_throttling_one_account_does_not_lock_out_another(client, auth, make, admin):
    make.operator(org=admin.org, username="other")
    for _ in range(5):
        auth.login("root", "wrong-password-1")
    assert auth.login("other").status_code == 302


def test_login_is_throttled_per_ip(client, auth, make, admin):
    for i in range(20):
        auth.login(f"nobody{i}", "wrong-password-1")
    assert auth.login("root").status_code == 429


def test_failed_login_gives_one_message_and_is_audited(client, auth, admin):
    unknown = auth.login("ghost", "whatever-123")
    wrong = auth.login("root", "whatever-123")
    assert unknown.status_code == wrong.status_code == 422
    actions = db.session.execute(select(AuditEvent.action)).scalars().all()
    assert actions.count("auth.login_failed") == 2


def test_session_cookie_flags(client, auth, admin):
    response = auth.login("root")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in tests


def test_session_cookie_is_secure_in_production():
    app = create_app(TestConfig, SESSION_COOKIE_SECURE=True)
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("key,age_seconds", [("seen_at", 31 * 60), ("auth_at", 13 * 3600)])
def test_idle_and_absolute_session_timeouts(client, auth, admin, key, age_seconds):
    auth.login("root")
    assert client.get("/dashboard").status_code == 200
    with client.session_transaction() as session:
        session[key] = time.time() - age_seconds
    expired = client.get("/dashboard")
    assert expired.status_code == 302 and "/login" in expired.headers["Location"]
    assert client.get("/dashboard").status_code == 302  # logged out for good


def test_security_headers_and_vary(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example/x", "/dashboard"])
def test_login_redirects_only_within_the_site(client, admin, target):
    page = client.get("/login")
    response = client.post(f"/login?next={target}", data={"username": "root", "password": PASSWORD,
                                                           "csrf_token": csrf_from(page)})
    assert response.headers["Location"] == "/dashboard"


def test_disabled_operator_cannot_log_in_and_is_signed_out(client, auth, make, admin):
    user = make.operator(org=admin.org, username="leaver")
    auth.login("leaver")
    assert client.get("/dashboard").status_code == 200
    user.status = "disabled"
    db.session.commit()
    assert client.get("/dashboard").status_code == 302
    assert auth.login("leaver").status_code == 422


def test_operators_of_a_disabled_organisation_are_signed_out(client, auth, make):
    bank = make.org(kind="bank")
    store = make.org(kind="store", parent=bank)
    make.operator(org=store, username="clerk", roles=("front_desk",))
    auth.login("clerk")
    assert client.get("/dashboard").status_code == 200
    bank.status = "disabled"
    db.session.commit()
    assert client.get("/dashboard").status_code == 302


def test_password_reset_ends_other_sessions(client, app, auth, make, admin):
    make.operator(org=admin.org, username="target")
    other = app.test_client()
    page = other.get("/login")
    other.post("/login", data={"username": "target", "password": PASSWORD, "csrf_token": csrf_from(page)})
    assert other.get("/dashboard").status_code == 200
    auth.login("root")
    target = db.session.execute(select(Operator).where(Operator.username == "target")).scalar_one()
    page = client.get(f"/operators/{target.id}/password")
    response = client.post(f"/operators/{target.id}/password", data={
        "password": "brandnew12345", "confirm": "brandnew12345", "csrf_token": csrf_from(page)})
    assert response.status_code == 302
    assert other.get("/dashboard").status_code == 302


def _count_business_rows() -> int:
    """Rows in every table but the audit trail (reading an export is audited, and that is no change)."""
    return sum(db.session.execute(select(func.count()).select_from(t)).scalar_one()
               for t in db.metadata.sorted_tables if t.name != "audit_events")


def test_no_get_request_changes_state(client, app, auth, make, admin):
    """Every GET route, called with real ids, leaves every table as it was."""
    bank = make.org(kind="bank")
    operator = make.operator(org=bank)
    member = make.member(bank)
    product = make.product(bank)
    ids = {"org_id": bank.id, "operator_id": operator.id, "member_id": member.id, "product_id": product.id}
    auth.login("root")
    before = _count_business_rows()
    last_event = db.session.execute(select(func.max(AuditEvent.id))).scalar_one()
    visited = 0
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static" or rule.rule.startswith("/sandbox"):
            continue
        values = {}
        for argument in rule.arguments:
            converter = rule._converters.get(argument)
            choices = sorted(getattr(converter, "items", ()))  # an any(...) converter: one of its words
            values[argument] = ids.get(argument, choices[0] if choices else 1)
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **values)
        response = client.get(url)
        assert response.status_code < 500, url
        visited += 1
    db.session.expire_all()
    assert visited > 5
    assert _count_business_rows() == before
    audited = db.session.execute(select(AuditEvent.action).where(AuditEvent.id > last_event)).scalars().all()
    assert all(action.endswith(".export") for action in audited), audited


def test_behind_a_proxy_the_client_address_is_seen():
    """The address the audit trail and the login throttle use is the client's, not the proxy's."""
    proxied = create_app(TestConfig, PROXY_FIX_HOPS=1)
    direct = create_app(TestConfig)
    seen = {}
    for name, app in (("proxied", proxied), ("direct", direct)):
        @app.get("/_ip")
        def show_ip():
            from app.extensions import client_ip

            return client_ip()
        seen[name] = app.test_client().get("/_ip", headers={"X-Forwarded-For": "203.0.113.9"},
                                           environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_data(as_text=True)
    assert seen == {"proxied": "203.0.113.9", "direct": "10.0.0.2"}
