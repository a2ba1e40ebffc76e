"""Managing the organisation tree and operators: forms, rules, permissions, audit, tenancy."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.auth.models import Operator
from app.core.audit import AuditEvent
from app.extensions import db
from app.orgs.models import Organisation
from tests.helpers import csrf_from, htmx_headers


@pytest.fixture
def tree(make):
    """A platform with two banks; bank A has a branch store."""
    platform = make.platform()
    bank_a = make.org(kind="bank", code="BANKA", name="甲银行")
    bank_b = make.org(kind="bank", code="BANKB", name="乙银行")
    branch = make.org(kind="store", parent=bank_a, code="BANKA-1", name="甲银行一支行")
    return {"platform": platform, "a": bank_a, "b": bank_b, "branch": branch}


def post(client, url, data, page_url=None, htmx_target=None):
    page = client.get(page_url or url)
    headers = htmx_headers(target=htmx_target) if htmx_target else {}
    return client.post(url, data={**data, "csrf_token": csrf_from(page)}, headers=headers)


def operator_named(username):
    return db.session.execute(select(Operator).where(Operator.username == username)).scalar_one_or_none()


def test_org_admin_creates_an_operator_in_a_branch_and_it_is_audited(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    response = post(client, "/operators/new", {"username": "teller1", "display_name": "柜员一", "org_id": tree["branch"].id,
                                               "roles": ["operator"], "password": "welcome12345"},
                    htmx_target="modal-content")
    assert response.status_code == 204
    created = operator_named("teller1")
    assert created.org_id == tree["branch"].id and created.roles == ["operator"]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "operator.create")).scalar_one()
    assert event.actor_name == "a_admin" and event.object_id == str(created.id)
    assert "password" not in str(event.after) and event.ip


def test_invalid_operator_form_is_shown_again_with_errors_and_changes_nothing(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    response = post(client, "/operators/new", {"username": "x", "display_name": "", "org_id": tree["a"].id,
                                               "roles": [], "password": "short"}, htmx_target="modal-content")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert body.count("invalid-feedback d-block") >= 4
    assert 'value="x"' in body  # input kept
    assert operator_named("x") is None


def test_inline_validation_reports_a_taken_username(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    page = client.get("/operators")
    taken = client.post("/operators/validate/username", data={"username": "a_admin"},
                        headers={**htmx_headers(), "X-CSRFToken": csrf_from(page)})
    free = client.post("/operators/validate/username", data={"username": "brand_new"},
                       headers={**htmx_headers(), "X-CSRFToken": csrf_from(page)})
    assert taken.get_data(as_text=True) != "" and free.get_data(as_text=True) == ""


def test_inline_validation_answers_a_rules_message_as_text(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    headers = {**htmx_headers(), "X-CSRFToken": csrf_from(client.get("/operators"))}
    pattern = client.post("/operators/validate/username", data={"username": "王 小明"}, headers=headers)
    weak = client.post("/operators/validate/password", data={"password": "short"}, headers=headers)
    assert pattern.status_code == 200 and "_" in pattern.get_data(as_text=True)
    assert weak.status_code == 200 and weak.get_data(as_text=True) != ""


def test_an_org_admin_cannot_grant_platform_admin(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    response = post(client, "/operators/new", {"username": "sneaky", "display_name": "x", "org_id": tree["a"].id,
                                               "roles": ["platform_admin"], "password": "welcome12345"},
                    htmx_target="modal-content")
    assert response.status_code == 422
    assert operator_named("sneaky") is None


def test_edit_changes_roles_and_name_and_audits_only_changed_fields(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    target = make.operator(org=tree["a"], roles=("viewer",), username="clerk")
    auth.login("a_admin")
    url = f"/operators/{target.id}/edit"
    response = post(client, url, {"username": "clerk", "display_name": "新名字", "org_id": tree["a"].id,
                                  "roles": ["operator"]}, htmx_target="modal-content")
    assert response.status_code == 204
    db.session.expire_all()
    assert operator_named("clerk").roles == ["operator"]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "operator.update")).scalar_one()
    assert set(event.after) == {"display_name", "roles"}
    assert event.before["roles"] == ["viewer"]


def test_cannot_change_your_own_roles(client, auth, make, tree):
    me = make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    response = post(client, f"/operators/{me.id}/edit", {"username": "a_admin", "display_name": "我", "org_id": tree["a"].id,
                                                       "roles": ["viewer"]}, htmx_target="modal-content")
    assert response.status_code == 422
    assert "不能修改自己的角色。" in response.get_data(as_text=True)
    db.session.expire_all()
    assert operator_named("a_admin").roles == ["org_admin"]
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "operator.update")).first() is None


def test_form_without_javascript_redirects_with_a_flash(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    response = post(client, "/operators/new", {"username": "plain", "display_name": "普通", "org_id": tree["a"].id,
                                               "roles": ["viewer"], "password": "welcome12345"})
    assert response.status_code == 302 and response.headers["Location"] == "/operators"


def test_cannot_disable_yourself(client, auth, make, tree):
    me = make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    post(client, f"/operators/{me.id}/status", {"status": "disabled"}, page_url="/operators")
    db.session.expire_all()
    assert operator_named("a_admin").status == "active"


def test_disable_and_enable_an_operator(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    target = make.operator(org=tree["a"], roles=("viewer",), username="clerk")
    auth.login("a_admin")
    post(client, f"/operators/{target.id}/status", {"status": "disabled"}, page_url="/operators")
    db.session.expire_all()
    assert operator_named("clerk").status == "disabled"
    post(client, f"/operators/{target.id}/status", {"status": "active"}, page_url="/operators")
    db.session.expire_all()
    assert operator_named("clerk").status == "active"
    actions = db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions[-2:] == ["operator.disable", "operator.enable"]


def test_operator_list_filters_by_role_and_org_subtree(client, auth, make, tree):
    make.operator(org=tree["platform"], roles=("platform_admin",), username="root")
    make.operator(org=tree["branch"], roles=("front_desk",), username="desk")
    make.operator(org=tree["b"], roles=("viewer",), username="b_viewer")
    auth.login("root")
    body = client.get(f"/operators?org_id={tree['a'].id}").get_data(as_text=True)
    assert "operator-row-desk" in body and "operator-row-b_viewer" not in body
    body = client.get("/operators?role=viewer").get_data(as_text=True)
    assert "operator-row-b_viewer" in body and "operator-row-desk" not in body


def test_operator_rows_fragment_for_htmx_and_full_page_otherwise(client, auth, make, tree):
    make.operator(org=tree["platform"], roles=("platform_admin",), username="root")
    auth.login("root")
    fragment = client.get("/operators?q=root", headers=htmx_headers(target="operator-rows")).get_data(as_text=True)
    assert "<html" not in fragment and "operator-row-root" in fragment
    boosted = client.get("/operators?q=root", headers=htmx_headers(target="operator-rows", boosted=True))
    assert "<html" in boosted.get_data(as_text=True)


def test_create_org_respects_the_tree_rules(client, auth, make, tree):
    make.operator(org=tree["platform"], roles=("platform_admin",), username="root")
    auth.login("root")
    ok = post(client, "/orgs/new", {"parent_id": tree["a"].id, "kind": "store", "code": "BANKA-2", "name": "甲银行二支行"},
              htmx_target="modal-content")
    assert ok.status_code == 204
    created = db.session.execute(select(Organisation).where(Organisation.code == "BANKA-2")).scalar_one()
    assert created.path == tree["a"].path + f"{created.id:08d}/"
    wrong_kind = post(client, "/orgs/new", {"parent_id": tree["branch"].id, "kind": "store", "code": "DEEP",
                                            "name": "太深"}, htmx_target="modal-content")
    assert wrong_kind.status_code == 422
    duplicate = post(client, "/orgs/new", {"parent_id": tree["a"].id, "kind": "store", "code": "banka-2",
                                           "name": "重复"}, htmx_target="modal-content")
    assert duplicate.status_code == 422


def test_viewer_sees_but_cannot_change(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("viewer",), username="watcher")
    auth.login("watcher")
    assert client.get("/operators").status_code == 200
    assert "new-operator" not in client.get("/operators").get_data(as_text=True)
    assert client.get("/operators/new").status_code == 403
    assert client.get("/orgs/new").status_code == 403


# --- tenancy: bank A's admin never reaches bank B -------------------------------------------------

@pytest.fixture
def a_admin(client, auth, make, tree):
    make.operator(org=tree["a"], roles=("org_admin",), username="a_admin")
    auth.login("a_admin")
    return tree


@pytest.mark.parametrize("kind", ["url", "htmx"])
def test_other_banks_operator_is_404(client, make, a_admin, kind):
    other = make.operator(org=a_admin["b"], username="b_clerk")
    headers = htmx_headers(target="modal-content") if kind == "htmx" else {}
    for url in (f"/operators/{other.id}/edit", f"/operators/{other.id}/password"):
        assert client.get(url, headers=headers).status_code == 404


def test_other_banks_operator_cannot_be_changed_by_post(client, make, a_admin):
    other = make.operator(org=a_admin["b"], username="b_clerk")
    for url, data in ((f"/operators/{other.id}/edit", {"username": "hacked", "display_name": "x",
                                                       "org_id": a_admin["a"].id, "roles": ["viewer"]}),
                      (f"/operators/{other.id}/status", {"status": "disabled"}),
                      (f"/operators/{other.id}/password", {"password": "hacked12345", "confirm": "hacked12345"})):
        assert post(client, url, data, page_url="/operators").status_code == 404
    db.session.expire_all()
    assert operator_named("b_clerk").status == "active"


def test_org_field_pointing_at_another_bank_is_404(client, a_admin):
    response = post(client, "/operators/new", {"username": "planted", "display_name": "x", "org_id": a_admin["b"].id,
                                               "roles": ["viewer"], "password": "welcome12345"},
                    page_url="/operators")
    assert response.status_code in (404, 422)  # not even offered as a choice
    assert operator_named("planted") is None
    response = post(client, "/orgs/new", {"parent_id": a_admin["b"].id, "kind": "store", "code": "PLANT",
                                          "name": "x"}, page_url="/orgs")
    assert response.status_code in (404, 422)
    assert db.session.execute(select(Organisation).where(Organisation.code == "PLANT")).first() is None


def test_other_bank_org_is_404_and_hidden(client, a_admin):
    b = a_admin["b"]
    assert client.get(f"/orgs/{b.id}/edit").status_code == 404
    assert client.get(f"/orgs/{b.id}/edit", headers=htmx_headers(target="modal-content")).status_code == 404
    assert post(client, f"/orgs/{b.id}/status", {"status": "disabled"}, page_url="/orgs").status_code == 404
    body = client.get("/orgs").get_data(as_text=True)
    assert "BANKB" not in body and "BANKA-1" in body
    assert "b_clerk" not in client.get("/operators").get_data(as_text=True)
