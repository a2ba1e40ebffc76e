"""The coupon activity screens: list (tunnel tabs, channel, filters, sorting, paging), add and edit
forms (errors kept with the input, validation while typing, theme type-ahead), a coupon activity's
page, batch and single enable / disable, terminate, export (capped, audited), tenancy and permissions."""
from __future__ import annotations

import io
import json
import re
from urllib.parse import quote
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, text

from app.core.audit import AuditEvent
from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons.models import CouponActivity
from app.extensions import db
from tests.helpers import csrf_from, htmx_headers

LIST = "/coupons/activities"


class Console:
    def __init__(self, client, auth, make):
        self.client, self.auth, self.make = client, auth, make

    def login(self, org, roles=("org_admin",)):
        """Log in, in English (the assertions read the English messages, whatever the translations say)."""
        operator = self.make.operator(org=org, roles=roles)
        assert self.auth.login(operator.username).status_code == 302
        with self.client.session_transaction() as session:
            session["locale"] = "en"
        return operator

    def csrf(self) -> str:
        return csrf_from(self.client.get("/dashboard"))

    def post(self, url, data=None, **kwargs):
        return self.client.post(url, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)


@pytest.fixture
def console(client, auth, make):
    return Console(client, auth, make)


@pytest.fixture
def bank(make):
    return make.org(kind="bank", name="华东银行")


def codes_on(response) -> list[str]:
    return re.findall(r'data-testid="activity-row-([^"]+)"', response.get_data(as_text=True))


def local(dt) -> str:
    return dt.astimezone(BUSINESS_TZ).strftime("%Y-%m-%dT%H:%M:%S")


def form_data(bank, **changes) -> dict:
    now = utcnow()
    data = {"name": "双十一满减券", "theme": "", "org_id": str(bank.id), "institution_id": "", "tunnel": "yunshuhui",
            "channel": "wechat", "coupon_type": "threshold", "batch_no": "123456789",
            "upstream_activity_id": "1234567890", "owner_id": "12345678", "promotion_id": "PROMO1",
            "show_in_miniprogram": "y", "promo_amount": "10.00", "discount_rate": "", "threshold": "100",
            "start_at": local(now + timedelta(hours=1)), "end_at": local(now + timedelta(days=10)),
            "valid_type": "absolute", "valid_days": "", "issue_total": "1000", "per_member_limit": "1",
            "settle_type": "", "settle_rate": "", "description": "每人限领一张", "usage_rules": "满100元可用"}
    data.update(changes)
    return data


# --- the list ---------------------------------------------------------------------------------------

def test_list_shows_the_yunshuhui_tab_first_and_newest_first(console, make, bank):
    console.login(bank, roles=("viewer",))
    older = make.coupon_activity(org=bank, name="旧的")
    newer = make.coupon_activity(org=bank, name="新的", channel="alipay")
    internal = make.coupon_activity(org=bank, name="内部", tunnel="internal")
    page = console.client.get(LIST)
    assert page.status_code == 200
    assert codes_on(page) == [newer.code, older.code]
    body = page.get_data(as_text=True)
    assert 'data-testid="tunnel-yunshuhui"' in body and "新的" in body and "内部" not in body
    assert codes_on(console.client.get(LIST, query_string={"tunnel": "internal"})) == [internal.code]
    assert codes_on(console.client.get(LIST, query_string={"channel": "alipay"})) == [newer.code]


def test_list_filters(console, make, bank):
    console.login(bank)
    theme = make.theme_activity(bank, theme_no="5000000555")
    now = utcnow()
    linked = make.coupon_activity(theme=theme, name="春节红包", batch_no="111111111", valid_type="relative", valid_days=7)
    later = make.coupon_activity(org=bank, name="国庆满减", start_at=now + timedelta(days=40),
                                 end_at=now + timedelta(days=50))
    ended = make.coupon_activity(org=bank, name="已结束的", start_at=now - timedelta(days=9),
                                 end_at=now - timedelta(days=8))
    stopped = make.coupon_activity(org=bank, name="终止的", terminated_at=now)

    def found(**args):
        return sorted(codes_on(console.client.get(LIST, query_string=args)))

    assert found(theme_no="5000000555") == [linked.code]
    assert found(batch_no="111111111") == [linked.code]
    assert found(name="满减") == [later.code]
    assert found(code=linked.code[:14].lower()) == [linked.code]
    assert found(valid_type="relative") == [linked.code]
    assert found(status="not_started") == [later.code]
    assert found(status="ended") == [ended.code]
    assert found(status="terminated") == [stopped.code]
    assert found(status="running") == [linked.code]
    day = (now + timedelta(days=45)).astimezone(BUSINESS_TZ).date().isoformat()
    assert found(**{"from": day, "to": day}) == [later.code]


def test_sorting_paging_and_the_rows_fragment(console, make, bank):
    console.login(bank)
    made = [make.coupon_activity(org=bank, name=f"券{n:02d}") for n in range(12)]
    first = console.client.get(LIST, query_string={"per_page": 10, "sort": "name", "dir": "asc"})
    assert codes_on(first) == [a.code for a in made[:10]]
    assert "12" in first.get_data(as_text=True)
    second = console.client.get(LIST, query_string={"per_page": 10, "sort": "name", "dir": "asc", "page": 2},
                                headers=htmx_headers("activity-rows"))
    body = second.get_data(as_text=True)
    assert codes_on(second) == [a.code for a in made[10:]]
    assert "<html" not in body and 'id="activity-filters"' not in body  # only the rows block


def test_sorting_by_status_follows_the_lifecycle(console, make, bank):
    console.login(bank)
    now = utcnow()
    terminated = make.coupon_activity(org=bank, terminated_at=now)
    ended = make.coupon_activity(org=bank, start_at=now - timedelta(days=3), end_at=now - timedelta(days=1))
    running = make.coupon_activity(org=bank)
    later = make.coupon_activity(org=bank, start_at=now + timedelta(days=1), end_at=now + timedelta(days=3))
    ordered = codes_on(console.client.get(LIST, query_string={"sort": "status", "dir": "asc"}))
    assert ordered == [later.code, running.code, ended.code, terminated.code]


def test_empty_list_says_what_to_do(console, bank):
    console.login(bank)
    body = console.client.get(LIST).get_data(as_text=True)
    assert 'data-testid="empty"' in body and "New coupon activity" in body


# --- add -------------------------------------------------------------------------------------------

def test_create_through_the_modal_closes_it_and_refreshes_the_list(console, bank):
    console.login(bank)
    response = console.post(f"{LIST}/new", form_data(bank), headers=htmx_headers("modal-content"))
    assert response.status_code == 204
    triggers = json.loads(response.headers["HX-Trigger"])
    assert "coupon-activities-changed" in triggers and "modal:close" in triggers
    activity = db.session.execute(select(CouponActivity)).scalar_one()
    assert (activity.name, activity.promo_amount_fen, activity.threshold_fen) == ("双十一满减券", 1000, 10000)
    assert activity.org_id == bank.id and activity.description == "每人限领一张"
    assert re.fullmatch(r"WX.+_\d{10}", activity.code)


def test_create_without_javascript_redirects_to_the_new_activity(console, bank):
    console.login(bank)
    response = console.post(f"{LIST}/new", form_data(bank, coupon_type="discount", discount_rate="8.5",
                                                     threshold="0", valid_type="relative", valid_days="15",
                                                     settled="y", settle_type="proportional", settle_rate="40"))
    activity = db.session.execute(select(CouponActivity)).scalar_one()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{LIST}/{activity.id}")
    assert (activity.discount_bp, activity.valid_days, activity.settle_rate_bp) == (8500, 15, 4000)
    page = console.client.get(f"{LIST}/{activity.id}").get_data(as_text=True)
    assert activity.code in page and "¥10.00" in page


def test_errors_come_back_beside_their_fields_with_the_input_kept(console, bank):
    console.login(bank)
    response = console.post(f"{LIST}/new", form_data(bank, threshold="5", batch_no="12ab", promo_amount="1.234",
                                                     name="保留我"), headers=htmx_headers("modal-content"))
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "must be above the face value" not in body  # the face value itself could not be read
    assert "at most two decimals" in body and "9 digits" in body
    assert 'value="保留我"' in body and 'value="12ab"' in body and 'value="1.234"' in body
    assert db.session.execute(select(CouponActivity)).first() is None


def test_hidden_fields_that_do_not_apply_do_not_block_saving(console, bank):
    console.login(bank)
    response = console.post(f"{LIST}/new", form_data(bank, discount_rate="abc", valid_days="x",
                                                     settle_rate="zz"), headers=htmx_headers("modal-content"))
    assert response.status_code == 204


def test_validation_while_typing_uses_the_same_rules(console, make, bank):
    console.login(bank)
    make.coupon_activity(org=bank, name="已有的名字")

    def check(field, **changes):
        return console.post(f"{LIST}/validate/{field}", form_data(bank, **changes)).get_data(as_text=True)

    assert "unique" in check("name", name="已有的名字")
    assert check("name", name="新名字") == ""
    assert "above the face value" in check("threshold", threshold="10")
    assert "9 digits" in check("batch_no", batch_no="123")
    assert "at most two decimals" in check("promo_amount", promo_amount="1.001")
    assert "exceed" in check("per_member_limit", per_member_limit="5000")
    assert console.post(f"{LIST}/validate/nonsense", form_data(bank)).status_code == 404


def test_theme_type_ahead_offers_only_linkable_visible_themes(console, make, bank):
    console.login(bank)
    mine = make.theme_activity(bank, theme_no="5000000777", name="春节主题")
    make.theme_activity(make.org(kind="bank"), theme_no="5000000778", name="春节别家")
    make.theme_activity(bank, theme_no="5000000779", name="春节暂停", status="paused")
    body = console.client.get(f"{LIST}/themes", query_string={"theme": "春节"},
                              headers=htmx_headers("theme-options")).get_data(as_text=True)
    assert "5000000777" in body and "5000000778" not in body and "5000000779" not in body
    picked = console.client.get(f"{LIST}/themes", query_string={"theme": "5000000777 · 春节主题"},
                                headers=htmx_headers("theme-options")).get_data(as_text=True)
    assert 'hx-swap-oob="true"' in picked and "华东银行" in picked
    response = console.post(f"{LIST}/new", form_data(bank, theme=f"{mine.theme_no} · 春节主题", org_id=""))
    activity = db.session.execute(select(CouponActivity)).scalar_one()
    assert response.status_code == 302 and activity.theme_activity_id == mine.id
    assert activity.code.startswith("WX5000000777_")


# --- edit, view -------------------------------------------------------------------------------------

def test_edit_form_locks_fields_and_saves_the_rest(console, make, bank):
    console.login(bank)
    activity = make.coupon_activity(org=bank, name="旧名", issued_count=5)
    page = console.client.get(f"{LIST}/{activity.id}/edit", headers=htmx_headers("modal-content"))
    body = page.get_data(as_text=True)
    assert 'data-testid="locked-code"' in body and 'name="batch_no"' not in body and 'name="tunnel"' not in body
    data = form_data(bank, name="新名", issue_total="4", per_member_limit="1", batch_no="999999999",
                     start_at=local(activity.start_at), end_at=local(activity.end_at))
    refused = console.post(f"{LIST}/{activity.id}/edit", data, headers=htmx_headers("modal-content"))
    assert refused.status_code == 422 and "5 coupons have been issued" in refused.get_data(as_text=True)
    data["issue_total"] = "2000"
    saved = console.post(f"{LIST}/{activity.id}/edit", data, headers=htmx_headers("modal-content"))
    assert saved.status_code == 204
    db.session.refresh(activity)
    assert (activity.name, activity.issue_total, activity.batch_no) != ("旧名", 1000, "999999999")
    assert activity.name == "新名" and activity.issue_total == 2000
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_activity.update")).scalar_one()
    assert event.before["name"] == "旧名" and event.after["name"] == "新名"


def test_detail_page_shows_history_and_only_the_tabs_that_exist(app, console, make, bank):
    console.login(bank)
    activity = make.coupon_activity(org=bank)
    console.post(f"{LIST}/{activity.id}/status", {"enabled": "0"})
    body = console.client.get(f"{LIST}/{activity.id}").get_data(as_text=True)
    assert "Disabled a coupon activity" in body and 'data-testid="details"' in body
    history = body[body.index('data-testid="history"'):]
    assert re.search(r'<span class="code">enabled</span>:\s*True → False', history)
    assert '<span class="code">name</span>' not in history  # the values it was created with are not listed
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    for tab in ("issues", "redemptions"):
        built = f"/coupons/activities/<int:activity_id>/{tab}" in rules
        assert (f'data-testid="tab-{tab}"' in body) is built


# --- enable / disable / terminate --------------------------------------------------------------------

def test_batch_disable_from_the_list_refreshes_the_rows(console, make, bank):
    console.login(bank, roles=("operator",))
    first, second = make.coupon_activity(org=bank), make.coupon_activity(org=bank)
    untouched = make.coupon_activity(org=bank)
    response = console.post(f"{LIST}/status", {"enabled": "0", "ids": [str(first.id), str(second.id)]},
                            headers=htmx_headers())
    assert response.status_code == 204
    triggers = json.loads(response.headers["HX-Trigger"])
    assert triggers["toast"]["message"].startswith("2") and "coupon-activities-changed" in triggers
    for activity in (first, second, untouched):
        db.session.refresh(activity)
    assert (first.enabled, second.enabled, untouched.enabled) == (False, False, True)
    nothing = console.post(f"{LIST}/status", {"enabled": "0"}, headers=htmx_headers())
    assert json.loads(nothing.headers["HX-Trigger"])["toast"]["level"] == "warning"


def test_single_enable_without_javascript_flashes_and_goes_back(console, make, bank):
    console.login(bank)
    activity = make.coupon_activity(org=bank, enabled=False)
    response = console.post(f"{LIST}/{activity.id}/status", {"enabled": "1", "next": f"{LIST}?tunnel=yunshuhui"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"{LIST}?tunnel=yunshuhui")
    db.session.refresh(activity)
    assert activity.enabled


def test_terminate_needs_its_own_permission(console, make, bank):
    activity = make.coupon_activity(org=bank)
    console.login(bank, roles=("operator",))
    assert console.post(f"{LIST}/{activity.id}/terminate").status_code == 403
    page = console.client.get(f"{LIST}/{activity.id}").get_data(as_text=True)
    assert 'data-testid="terminate"' not in page
    console.auth.logout()
    console.login(bank, roles=("org_admin",))
    page = console.client.get(f"{LIST}/{activity.id}").get_data(as_text=True)
    assert 'data-testid="terminate"' in page and "cannot be undone" in page
    assert console.post(f"{LIST}/{activity.id}/terminate").status_code == 302
    db.session.refresh(activity)
    assert activity.terminated_at is not None
    again = console.post(f"{LIST}/{activity.id}/terminate", follow_redirects=True)
    assert "Only a running coupon activity" in again.get_data(as_text=True)


def test_viewers_see_but_do_not_change(console, make, bank):
    activity = make.coupon_activity(org=bank)
    console.login(bank, roles=("viewer",))
    body = console.client.get(LIST).get_data(as_text=True)
    assert activity.code in body and 'data-testid="new-coupon-activity"' not in body and "batch-disable" not in body
    assert console.client.get(f"{LIST}/new").status_code == 403
    assert console.client.get(f"{LIST}/{activity.id}/edit").status_code == 403
    assert console.post(f"{LIST}/{activity.id}/status", {"enabled": "0"}).status_code == 403
    assert console.post(f"{LIST}/status", {"enabled": "0", "ids": [str(activity.id)]}).status_code == 403


# --- tenancy ----------------------------------------------------------------------------------------

def test_bank_a_neither_sees_nor_changes_bank_b(console, make, bank):
    other = make.org(kind="bank")
    theirs = make.coupon_activity(org=other, name="别家的券")
    make.theme_activity(other, theme_no="5000000888")
    console.login(bank)
    assert "别家的券" not in console.client.get(LIST).get_data(as_text=True)
    assert console.client.get(f"{LIST}/{theirs.id}").status_code == 404
    assert console.client.get(f"{LIST}/{theirs.id}/edit").status_code == 404
    assert console.post(f"{LIST}/{theirs.id}/terminate").status_code == 404
    validated = console.post(f"{LIST}/validate/name", {"name": "x"}, query_string={"activity_id": theirs.id})
    assert validated.status_code == 404
    console.post(f"{LIST}/status", {"enabled": "0", "ids": [str(theirs.id)]})
    db.session.refresh(theirs)
    assert theirs.enabled
    # Neither their theme nor their bank can be named in a new activity.
    response = console.post(f"{LIST}/new", form_data(bank, theme="5000000888"), headers=htmx_headers("modal-content"))
    assert response.status_code == 422 and "No theme activity 5000000888" in response.get_data(as_text=True)
    response = console.post(f"{LIST}/new", form_data(bank, org_id=str(other.id)), headers=htmx_headers("modal-content"))
    assert response.status_code == 422
    stored = db.session.execute(select(CouponActivity).where(CouponActivity.org_id == other.id)).scalars().all()
    assert stored == [theirs]


def test_the_platform_sees_every_bank(console, make, bank):
    theirs = make.coupon_activity(org=make.org(kind="bank"))
    mine = make.coupon_activity(org=bank)
    console.login(make.platform(), roles=("platform_admin",))
    assert sorted(codes_on(console.client.get(LIST))) == sorted([theirs.code, mine.code])


# --- export -----------------------------------------------------------------------------------------

def test_export_follows_the_filters_and_is_audited(console, make, bank):
    console.login(bank, roles=("viewer",))
    make.coupon_activity(org=bank, name="微信券", promo_amount_fen=1234)
    make.coupon_activity(org=bank, name="支付宝券", channel="alipay")
    response = console.client.get(f"{LIST}/export", query_string={"channel": "wechat"})
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert re.search(r"filename\*=UTF-8''" + re.escape(quote("活动优惠券列表")) + r"_\d{8}_\d{6}\.xlsx$", disposition)
    sheet = load_workbook(io.BytesIO(response.get_data()), read_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(rows) == 2 and rows[1][1] == "微信券" and 12.34 in rows[1]
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_activity.export")).scalar_one()
    assert event.after["rows"] == 1 and event.after["filters"]["channel"] == "wechat"


def test_export_refuses_more_than_ten_thousand_rows(console, bank):
    console.login(bank)
    db.session.execute(text("""
        INSERT INTO coupon_activities (code, name, tunnel, channel, coupon_type, batch_no, start_at, end_at,
            promo_amount_fen, threshold_fen, valid_type, issue_total, per_member_limit, issued_count,
            show_in_miniprogram, settled, enabled, org_id, created_at, updated_at)
        SELECT 'WX00000000_' || lpad(n::text, 10, '0'), '券' || n, 'yunshuhui', 'wechat', 'threshold', '123456789',
               now(), now() + interval '1 day', 100, 0, 'absolute', 10, 1, 0, true, false, true, :org, now(), now()
        FROM generate_series(1, 10001) AS n"""), {"org": bank.id})
    db.session.commit()
    refused = console.client.get(f"{LIST}/export", follow_redirects=True)
    body = refused.get_data(as_text=True)
    assert refused.request.path == LIST and "10,001" in body and "10,000" in body
    assert db.session.execute(select(AuditEvent).where(AuditEvent.action == "coupon_activity.export")).first() is None
    narrowed = console.client.get(f"{LIST}/export", query_string={"name": "券1000"})  # 券1000 and 券10000, 券10001
    assert narrowed.status_code == 200
