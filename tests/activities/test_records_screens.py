"""The draw records and gift shipping screens: pages and their htmx fragments, empty states, exports
read back with openpyxl, shipping by hand and from an uploaded list, the contact shown in full, a
failed fulfilment retried — and who may do what: a viewer looks only, another bank gets 404."""
from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.activities import records_routes
from app.activities.prize_models import PrizeDelivery
from app.core.audit import AuditEvent
from app.coupons.models import CouponIssue
from app.extensions import db
from tests.activities.draw_records import (GIFT, POINTS, THANKS, EmptiesThePick, draw_row, fulfil, gift_wheel,
                                           gift_with_address, spin, workbook)
from tests.coupons.ysh_sandbox import connect_ysh_account
from tests.helpers import htmx_headers, log_in_in_english


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def wheel(make, bank):
    return gift_wheel(make, bank)


@pytest.fixture
def admin(client, auth, make, bank):
    make.operator(org=bank, roles=("org_admin",), username="records_admin")
    return log_in_in_english(client, auth, "records_admin")


@pytest.fixture
def viewer(client, auth, make, bank):
    make.operator(org=bank, roles=("viewer",), username="records_viewer")
    return log_in_in_english(client, auth, "records_viewer")


def text(response) -> str:
    return response.get_data(as_text=True)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def sheet_rows(response) -> list[tuple]:
    assert response.status_code == 200 and response.mimetype.endswith("spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    return [tuple(row) for row in book.worksheets[0].iter_rows(values_only=True)]


# --- the draw records ----------------------------------------------------------------------------

def test_the_records_show_each_draw_masked_with_its_prizes_and_fulfilment(client, admin, make, bank):
    connect_ysh_account(bank)
    wheel = gift_wheel(make, bank)
    coupon = make.coupon_activity(theme=wheel.theme, issue_total=10, per_member_limit=5)
    make.prize(wheel.theme, kind="coupon", name="10元券", coupon_activity_id=coupon.id, stock=5, weight=100,
               sort_order=3)
    won_coupon = spin(wheel.theme, "oCoupon000001", 201)  # gift 100, points 100, coupon 100, then thanks
    fulfil(won_coupon)
    fell_back = spin(wheel.theme, "oCarol0000003", rng=EmptiesThePick(wheel.points, POINTS))
    issue = db.session.execute(select(CouponIssue)).scalar_one()

    page = client.get(f"/activities/{wheel.theme.id}/draws")

    body = text(page)
    assert page.status_code == 200 and won_coupon.draw_no in body and fell_back.draw_no in body
    assert "oCou****0001" in body and "oCoupon000001" not in body
    assert 'data-testid="fell-back"' in body and "Fulfilled" in body
    assert f'href="/coupons/monitor/issues/{issue.id}"' in body and issue.order_no in body


def test_filters_answer_the_rows_fragment_and_say_when_nothing_matches(client, admin, wheel):
    thanks = spin(wheel.theme, "oAlice0000001", THANKS)
    gift = spin(wheel.theme, "oBobby0000002", GIFT)

    fragment = client.get(f"/activities/{wheel.theme.id}/draws?result=thanks", headers=htmx_headers("draw-rows"))
    nothing = client.get(f"/activities/{wheel.theme.id}/draws?channel=api", headers=htmx_headers("draw-rows"))
    partial = client.get(f"/activities/{wheel.theme.id}/draws?openid=oAlice%25", headers=htmx_headers("draw-rows"))

    assert "<html" not in text(fragment) and thanks.draw_no in text(fragment) and gift.draw_no not in text(fragment)
    assert "No draw matches" in text(nothing)
    assert 'data-testid="bad-openid"' in text(partial) and thanks.draw_no not in text(partial)


def test_an_activity_without_draws_says_where_they_come_from(client, admin, wheel):
    body = text(client.get(f"/activities/{wheel.theme.id}/draws"))

    assert "No draws yet" in body


def test_the_records_export_is_masked_and_audited(client, admin, wheel):
    gift = spin(wheel.theme, "oAlice0000001", GIFT)
    spin(wheel.theme, "oBobby0000002", THANKS)

    rows = sheet_rows(client.get(f"/activities/{wheel.theme.id}/draws/export?result=won&openid=oAlice0000001"))

    assert rows[0][:3] == ("Draw no.", "Drawn at", "Customer (OpenID)")
    assert [r[0] for r in rows[1:]] == [gift.draw_no] and rows[1][2] == "oAli****0001"
    assert rows[1][4:8] == ("保温杯", "保温杯", "No", "Yes")
    [event] = events("theme_draw.export")
    assert event.after == {"theme_no": wheel.theme.theme_no, "filters": {"result": "won", "openid": "oAli****0001"},
                           "rows": 1, "format": "xlsx"}


def test_an_export_over_the_limit_is_refused_with_the_filters_kept(client, admin, wheel, monkeypatch):
    spin(wheel.theme, "oAlice0000001", THANKS)
    spin(wheel.theme, "oBobby0000002", THANKS)
    monkeypatch.setattr(records_routes, "EXPORT_ROW_LIMIT", 1)

    refused = client.get(f"/activities/{wheel.theme.id}/draws/export?channel=h5")

    assert refused.status_code == 302 and "channel=h5" in refused.headers["Location"]
    assert "2 draws match" in text(client.get(refused.headers["Location"])) and not events("theme_draw.export")


def test_a_failed_fulfilment_is_retried_from_its_row(client, admin, make, bank):
    connect_ysh_account(bank)
    theme = make.wheel_theme(bank, thanks_weight=1)
    coupon = make.coupon_activity(theme=theme, enabled=False)
    make.prize(theme, kind="coupon", coupon_activity_id=coupon.id, stock=3, weight=100, sort_order=1)
    failed = spin(theme, "oCoupon000001", 0)
    fulfil(failed)
    page = text(client.get(f"/activities/{theme.id}/draws?status=failed"))
    assert f'data-testid="retry-{failed.draw_no}"' in page and "coupon not issued" in page

    retried = client.post(f"/activities/{theme.id}/draws/{failed.draw_id}/retry", headers=htmx_headers("draw-rows"),
                          data={"csrf_token": admin})

    assert retried.status_code == 204 and "theme-draws-changed" in retried.headers["HX-Trigger"]
    assert draw_row(failed).fulfilment_status == "pending" and len(events("theme_draw.retry_fulfilment")) == 1


# --- the gifts ------------------------------------------------------------------------------------

def test_the_gift_tabs_show_counts_and_the_contact_masked(client, admin, wheel):
    gift_with_address(wheel.theme, recipient="张三", phone="13800138000")
    waiting = spin(wheel.theme, "oWaiting00001", GIFT)
    fulfil(waiting)

    to_ship = text(client.get(f"/activities/{wheel.theme.id}/deliveries"))
    awaiting = text(client.get(f"/activities/{wheel.theme.id}/deliveries?tab=awaiting", headers=htmx_headers("delivery-rows")))

    assert "张*" in to_ship and "138****8000" in to_ship and "13800138000" not in to_ship and "张三" not in to_ship
    assert "上海市浦东新****" in to_ship and 'data-testid="count-to_ship">1<' in to_ship
    assert "<html" not in awaiting and waiting.draw_no in awaiting and 'id="ship-' not in awaiting
    empty = text(client.get(f"/activities/{wheel.theme.id}/deliveries?tab=shipped"))
    assert "No gift has been shipped yet" in empty


def test_a_gift_is_shipped_from_its_row(client, admin, wheel):
    outcome = gift_with_address(wheel.theme)

    shipped = client.post(f"/activities/{wheel.theme.id}/deliveries/{outcome.draw_id}/ship",
                          headers=htmx_headers(f"ship-{outcome.draw_id}"),
                          data={"csrf_token": admin, "tracking_no": "SF1234567890"})
    again = client.post(f"/activities/{wheel.theme.id}/deliveries/{outcome.draw_id}/ship",
                        headers=htmx_headers(f"ship-{outcome.draw_id}"),
                        data={"csrf_token": admin, "tracking_no": "SF1234567890"})

    assert shipped.status_code == 204 and "gift-deliveries-changed" in shipped.headers["HX-Trigger"]
    assert "shipped with tracking number SF1234567890" in shipped.headers["HX-Trigger"]
    assert again.status_code == 204 and "already shipped" in again.headers["HX-Trigger"]
    assert draw_row(outcome).fulfilment_status == "shipped"
    listed = text(client.get(f"/activities/{wheel.theme.id}/deliveries?tab=shipped"))
    assert "SF1234567890" in listed and outcome.draw_no in listed


def test_a_wrong_tracking_number_answers_the_form_with_the_message(client, admin, wheel):
    outcome = gift_with_address(wheel.theme)

    refused = client.post(f"/activities/{wheel.theme.id}/deliveries/{outcome.draw_id}/ship",
                          headers=htmx_headers(f"ship-{outcome.draw_id}"),
                          data={"csrf_token": admin, "tracking_no": "SF 12"})

    body = text(refused)
    assert refused.status_code == 422 and body.lstrip().startswith("<form") and 'value="SF 12"' in body
    assert "1 to 64 letters" in body and draw_row(outcome).fulfilment_status == "address_given"


def test_shipping_works_without_javascript(client, admin, wheel):
    outcome = gift_with_address(wheel.theme)

    done = client.post(f"/activities/{wheel.theme.id}/deliveries/{outcome.draw_id}/ship",
                       data={"csrf_token": admin, "tracking_no": "YT0001"})

    assert done.status_code == 302 and done.headers["Location"].endswith(f"/activities/{wheel.theme.id}/deliveries")
    assert draw_row(outcome).fulfilment_status == "shipped"


def test_the_contact_is_shown_in_full_on_demand_and_audited(client, admin, wheel):
    outcome = gift_with_address(wheel.theme, recipient="张三", phone="13800138000")

    shown = client.post(f"/activities/{wheel.theme.id}/deliveries/{outcome.draw_id}/reveal",
                        headers=htmx_headers(f"contact-{outcome.draw_id}"), data={"csrf_token": admin})

    assert shown.status_code == 200 and "13800138000" in text(shown) and "上海市浦东新区世纪大道1号" in text(shown)
    assert len(events("prize_delivery.reveal")) == 1


def test_the_shipping_list_exports_masked_or_in_full_and_is_audited(client, admin, wheel):
    outcome = gift_with_address(wheel.theme, recipient="张三", phone="13800138000")

    masked = sheet_rows(client.get(f"/activities/{wheel.theme.id}/deliveries/export"))
    full = sheet_rows(client.get(f"/activities/{wheel.theme.id}/deliveries/export?full=1"))

    assert masked[0][:6] == ("Draw no.", "Tracking no.", "Gift", "Recipient", "Phone", "Address")
    assert masked[1][:6] == (outcome.draw_no, None, "保温杯", "张*", "138****8000", "上海市浦东新****")
    assert full[1][3:6] == ("张三", "13800138000", "上海市浦东新区世纪大道1号")
    assert [e.after["full"] for e in events("prize_delivery.export")] == [False, True]
    assert events("prize_delivery.export")[0].after["filters"] == {"tab": "to_ship"}


def test_the_exported_list_filled_in_and_uploaded_ships_the_gifts(client, admin, wheel):
    first = gift_with_address(wheel.theme, "oFirst0000001")
    second = gift_with_address(wheel.theme, "oSecond000001")
    exported = sheet_rows(client.get(f"/activities/{wheel.theme.id}/deliveries/export"))
    filled = [(row[0], "SF900000" + row[0][-4:] if row[0] == first.draw_no else None) for row in exported[1:]]

    answer = client.post(f"/activities/{wheel.theme.id}/deliveries/import", headers=htmx_headers("delivery-rows"),
                         data={"csrf_token": admin, "file": (workbook(filled), "list.xlsx")},
                         content_type="multipart/form-data")

    body = text(answer)
    assert answer.status_code == 200 and 'data-testid="import-results"' in body and "1 shipped, 1 not" in answer.headers["HX-Trigger"]
    assert draw_row(first).fulfilment_status == "shipped" and draw_row(second).fulfilment_status == "address_given"
    refused = client.post(f"/activities/{wheel.theme.id}/deliveries/import", headers=htmx_headers("delivery-rows"),
                          data={"csrf_token": admin, "file": (io.BytesIO(b"plain text"), "list.xlsx")},
                          content_type="multipart/form-data")
    assert refused.status_code == 422 and 'data-testid="import-error"' in text(refused)


def test_the_activity_page_and_the_prize_pool_link_to_both_screens(client, admin, wheel):
    for url in (f"/activities/{wheel.theme.id}", f"/activities/{wheel.theme.id}/prizes"):
        body = text(client.get(url))
        assert f'href="/activities/{wheel.theme.id}/draws"' in body
        assert f'href="/activities/{wheel.theme.id}/deliveries"' in body


# --- who may do what ------------------------------------------------------------------------------

def test_a_viewer_looks_but_does_not_ship_reveal_retry_or_export_in_full(client, viewer, wheel):
    outcome = gift_with_address(wheel.theme)
    theme_id, draw_id = wheel.theme.id, outcome.draw_id

    page = text(client.get(f"/activities/{theme_id}/deliveries"))
    assert outcome.draw_no in page and f"ship-{draw_id}" not in page and "reveal-" not in page
    assert client.get(f"/activities/{theme_id}/draws").status_code == 200
    assert sheet_rows(client.get(f"/activities/{theme_id}/deliveries/export"))[1][4] == "138****8000"
    for url in (f"/activities/{theme_id}/deliveries/{draw_id}/ship", f"/activities/{theme_id}/deliveries/{draw_id}/reveal",
                f"/activities/{theme_id}/draws/{draw_id}/retry", f"/activities/{theme_id}/deliveries/import"):
        assert client.post(url, data={"csrf_token": viewer, "tracking_no": "SF1"}).status_code == 403
    assert client.get(f"/activities/{theme_id}/deliveries/export?full=1").status_code == 403
    assert draw_row(outcome).fulfilment_status == "address_given" and not events("prize_delivery.reveal")


def test_another_banks_activity_answers_404(client, auth, make, wheel):
    outcome = gift_with_address(wheel.theme)
    make.operator(org=make.org(kind="bank"), roles=("org_admin",), username="other_admin")
    token = log_in_in_english(client, auth, "other_admin")
    theme_id, draw_id = wheel.theme.id, outcome.draw_id

    for url in (f"/activities/{theme_id}/draws", f"/activities/{theme_id}/deliveries",
                f"/activities/{theme_id}/draws/export", f"/activities/{theme_id}/deliveries/export?full=1"):
        assert client.get(url).status_code == 404, url
    for url in (f"/activities/{theme_id}/deliveries/{draw_id}/ship", f"/activities/{theme_id}/deliveries/{draw_id}/reveal",
                f"/activities/{theme_id}/draws/{draw_id}/retry"):
        assert client.post(url, data={"csrf_token": token, "tracking_no": "SF1"}).status_code == 404, url
    assert db.session.execute(select(PrizeDelivery.status)).scalar_one() == "address_given"


def test_a_draw_of_another_activity_answers_404(client, admin, make, bank, wheel):
    outcome = gift_with_address(wheel.theme)
    sibling = gift_wheel(make, bank).theme

    answer = client.post(f"/activities/{sibling.id}/deliveries/{outcome.draw_id}/ship",
                         data={"csrf_token": admin, "tracking_no": "SF1"})

    assert answer.status_code == 404 and draw_row(outcome).fulfilment_status == "address_given"
