"""The roulette designer screen: the page, the preview fragment (with the rows' chances and messages
out of band), adding and removing rows with htmx and without JavaScript, saving, the links to it, and
who may see and change what."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.activities.models import ThemeActivity
from app.activities.prize_models import Prize
from app.core.audit import AuditEvent
from app.extensions import db
from tests.helpers import htmx_headers, log_in_in_english


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def theme(make, bank):
    theme = make.theme_activity(bank, name="春节转盘")
    make.prize(theme, kind="thanks", name="谢谢参与", weight=20, sort_order=9, colour="#c8c8c8")
    make.prize(theme, name="十元话费", kind="cash", cash_fen=1000, stock=5, weight=80, sort_order=1)
    return theme


@pytest.fixture
def coupon(make, theme):
    return make.coupon_activity(theme=theme, name="满100减10券", issue_total=200, per_member_limit=2)


@pytest.fixture
def admin(client, auth, make, bank):
    make.operator(org=bank, roles=("org_admin",), username="wheel_admin")
    return log_in_in_english(client, auth, "wheel_admin")


def prize_named(theme, name: str) -> Prize:
    db.session.expire_all()
    return db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.name == name)).scalar_one()


def text(response) -> str:
    return response.get_data(as_text=True)


def posted(token: str, rows: list[tuple[str, object, object, object]], wheel_on: bool = False, **extra) -> dict:
    """The designer's form: rows of (key, order, colour, weight)."""
    data = {"csrf_token": token, **extra}
    if wheel_on:
        data["wheel_on"] = "y"
    for i, (key, order, colour, weight) in enumerate(rows):
        data.update({f"rows-{i}-key": key, f"rows-{i}-sort_order": str(order), f"rows-{i}-colour": colour,
                     f"rows-{i}-weight": str(weight)})
    return data


def the_rows(theme) -> list[tuple[str, object, object, object]]:
    cash, thanks = prize_named(theme, "十元话费"), prize_named(theme, "谢谢参与")
    return [(f"prize-{cash.id}", 1, "#ff6600", 80), (f"prize-{thanks.id}", 2, "#c8c8c8", 20)]


def test_the_page_shows_the_rows_the_preview_and_the_switch(client, admin, theme, coupon):
    page = client.get(f"/activities/{theme.id}/wheel")

    body = text(page)
    cash = prize_named(theme, "十元话费")
    assert page.status_code == 200
    assert 'data-testid="wheel-preview"' in body and 'data-segments="2"' in body and f'data-prize-id="{cash.id}"' in body
    assert "80.00 %" in body and "20.00 %" in body and "¥10.00" in body
    assert 'id="wheel-on"' in body and 'data-testid="save"' in body and "Sortable.min.js" in body
    assert f'data-testid="choice-coupon-{coupon.id}"' in body and coupon.code in body  # the picker
    assert body.count('data-preset="') == 2 * 20  # 20 presets per row
    assert re.search(r'name="rows-0-sort_order"[^>]*value="1"', body)


def test_the_preview_answers_the_wheel_with_the_rows_chances_and_messages(client, admin, theme):
    rows = the_rows(theme)
    rows[0] = (rows[0][0], 1, "#00aa00", 60)
    rows[1] = (rows[1][0], 1, "nope", 20)

    response = client.post(f"/activities/{theme.id}/wheel/preview", headers=htmx_headers("wheel-preview"),
                           data=posted(admin, rows))

    body = text(response)
    thanks = prize_named(theme, "谢谢参与")
    assert response.status_code == 200 and "<html" not in body
    assert 'fill="#00aa00"' in body  # redrawn with the new colour
    assert re.search(r'id="chance-prize-\d+"[^>]*hx-swap-oob="true"[^>]*>75.00 %', body)
    assert f'id="err-prize-{thanks.id}-colour"' in body and "The colour is #RRGGBB" in body
    assert "Another prize of this pool has order 1." in body  # both rows say so
    assert "Fix these before saving" in body
    assert prize_named(theme, "十元话费").colour == "#ff6600"  # nothing saved


def test_a_row_is_added_from_the_picker_and_removed_again(client, admin, theme, coupon):
    added = client.post(f"/activities/{theme.id}/wheel/preview", headers=htmx_headers("wheel-designer"),
                        data=posted(admin, the_rows(theme), add=f"coupon-{coupon.id}"))

    body = text(added)
    assert added.status_code == 200 and f'data-testid="row-coupon-{coupon.id}"' in body and "<html" not in body
    assert "200 coupons for this prize" in body and 'data-segments="3"' in body
    assert f'name="rows-2-key" value="coupon-{coupon.id}"' in body
    assert not db.session.execute(select(Prize).where(Prize.coupon_activity_id == coupon.id)).first()  # not saved

    rows = [*the_rows(theme), (f"coupon-{coupon.id}", 3, "#e53935", 10)]
    cash = prize_named(theme, "十元话费")
    removed = client.post(f"/activities/{theme.id}/wheel/preview", headers=htmx_headers("wheel-designer"),
                          data=posted(admin, rows, remove=f"prize-{cash.id}"))
    body = text(removed)
    assert f'data-testid="row-prize-{cash.id}"' not in body and f'data-testid="choice-prize-{cash.id}"' in body


def test_the_fallback_row_offers_no_remove_and_refuses_one(client, admin, theme):
    thanks = prize_named(theme, "谢谢参与")
    page = text(client.get(f"/activities/{theme.id}/wheel"))
    assert f'data-testid="remove-prize-{thanks.id}"' not in page

    refused = client.post(f"/activities/{theme.id}/wheel/preview", headers=htmx_headers("wheel-designer"),
                          data=posted(admin, the_rows(theme), remove=f"prize-{thanks.id}"))

    assert f'data-testid="row-prize-{thanks.id}"' in text(refused) and "toast" in refused.headers["HX-Trigger"]


def test_saving_with_htmx_turns_the_wheel_on_and_answers_the_designer_with_a_toast(client, admin, theme, coupon):
    rows = [*the_rows(theme), (f"coupon-{coupon.id}", 3, "#1e88e5", 25)]

    saved = client.post(f"/activities/{theme.id}/wheel", headers=htmx_headers("wheel-designer"),
                        data=posted(admin, rows, wheel_on=True))

    assert saved.status_code == 200 and "toast" in saved.headers["HX-Trigger"] and "on" in saved.headers["HX-Trigger"]
    assert 'id="wheel-on"' in text(saved) and "<html" not in text(saved)
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is True
    new = prize_named(theme, "满100减10券")
    assert (new.kind, new.stock_total, new.per_member_cap, new.colour, new.weight) == ("coupon", 200, 2, "#1e88e5", 25)
    actions = db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions.count("theme_activity.wheel_on") == 1 and actions.count("theme_prize.create") == 1


def test_a_refused_save_shows_the_problems_and_keeps_what_was_typed(client, admin, theme):
    rows = the_rows(theme)
    rows[0] = (rows[0][0], 1, "#ff6600", "abc")

    refused = client.post(f"/activities/{theme.id}/wheel", headers=htmx_headers("wheel-designer"),
                          data=posted(admin, rows, wheel_on=True))

    body = text(refused)
    assert refused.status_code == 422 and "The weight is a whole number from 1 to 100." in body
    assert 'value="abc"' in body and "toast" in refused.headers["HX-Trigger"]
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is False


def test_saving_without_javascript_redirects_to_the_page(client, admin, theme):
    response = client.post(f"/activities/{theme.id}/wheel", data=posted(admin, the_rows(theme), wheel_on=True))

    assert response.status_code == 302 and response.headers["Location"].endswith(f"/activities/{theme.id}/wheel")
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is True
    assert "customers can draw" in text(client.get(response.headers["Location"]))


def test_the_theme_pages_link_to_the_designer(client, admin, theme):
    link = f'href="/activities/{theme.id}/wheel"'

    assert link in text(client.get(f"/activities/{theme.id}"))
    assert link in text(client.get(f"/activities/{theme.id}/prizes"))
    listing = text(client.get("/activities"))
    assert link in listing and "Turn wheel on" in listing


def test_a_viewer_sees_the_wheel_read_only_and_cannot_change_it(client, auth, make, bank, theme):
    make.operator(org=bank, roles=("viewer",), username="wheel_viewer")
    token = log_in_in_english(client, auth, "wheel_viewer")

    page = client.get(f"/activities/{theme.id}/wheel")
    save = client.post(f"/activities/{theme.id}/wheel", data=posted(token, the_rows(theme), wheel_on=True))
    preview = client.post(f"/activities/{theme.id}/wheel/preview", data=posted(token, the_rows(theme)))

    body = text(page)
    assert page.status_code == 200 and 'data-testid="wheel-preview"' in body and "View only" in body
    assert 'data-testid="save"' not in body and 'data-testid="add-row"' not in body and "Sortable.min.js" not in body
    assert re.search(r'id="wheel-on"[^>]*disabled', body)
    assert save.status_code == 403 and preview.status_code == 403
    assert db.session.get(ThemeActivity, theme.id, populate_existing=True).wheel_enabled is False


def test_an_expired_activitys_wheel_is_shown_but_not_saved(client, admin, make, bank):
    from datetime import timedelta

    from app.core.timeutil import utcnow

    now = utcnow()
    over = make.theme_activity(bank, start_at=now - timedelta(days=9), end_at=now - timedelta(days=1))
    thanks = make.prize(over, kind="thanks", name="谢谢参与", sort_order=1)
    gift = make.prize(over, kind="gift", name="杯子", sort_order=2, stock=1)

    page = text(client.get(f"/activities/{over.id}/wheel"))
    saved = client.post(f"/activities/{over.id}/wheel", headers=htmx_headers("wheel-designer"),
                        data=posted(admin, [(f"prize-{gift.id}", 1, "#000000", 5), (f"prize-{thanks.id}", 2, "#ffffff", 5)]))

    assert "Expired: view only" in page and 'data-testid="save"' not in page
    assert saved.status_code == 422 and "The activity is over" in saved.headers["HX-Trigger"]
    assert prize_named(over, "杯子").weight == 10


def test_another_banks_wheel_is_404(client, admin, make):
    other = make.theme_activity(make.org(kind="bank"))

    assert client.get(f"/activities/{other.id}/wheel").status_code == 404
    assert client.post(f"/activities/{other.id}/wheel", data={"csrf_token": admin}).status_code == 404
