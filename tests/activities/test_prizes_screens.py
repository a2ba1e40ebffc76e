"""The prize pool screen: the list with chances, inline editing, stock added, a prize added — with
htmx and without JavaScript — and who may see and change what."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.activities.prize_models import Prize
from app.core.audit import AuditEvent
from app.extensions import db
from tests.helpers import htmx_headers, log_in_in_english


@pytest.fixture
def bank(make):
    return make.org(kind="bank")


@pytest.fixture
def theme(make, bank):
    theme = make.wheel_theme(bank, thanks_weight=20, thanks_order=9)
    make.prize(theme, name="十元话费", kind="cash", cash_fen=1000, stock=5, weight=80, sort_order=1)
    return theme


@pytest.fixture
def admin(client, auth, make, bank):
    make.operator(org=bank, roles=("org_admin",), username="pool_admin")
    return log_in_in_english(client, auth, "pool_admin")


def prize_named(theme, name: str) -> Prize:
    return db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id, Prize.name == name)
                              ).scalar_one()


def text(response) -> str:
    return response.get_data(as_text=True)


def test_the_pool_shows_each_prize_with_its_stock_and_chance(client, admin, theme):
    page = client.get(f"/activities/{theme.id}/prizes")

    body = text(page)
    assert page.status_code == 200 and "十元话费" in body and "谢谢参与" in body
    assert "80.00 %" in body and "20.00 %" in body and "5 / 5" in body and "¥10.00" in body
    assert 'data-testid="add-prize"' in body


def test_an_inline_edit_opens_the_row_and_saves_it_with_the_new_chances(client, admin, theme):
    prize = prize_named(theme, "十元话费")
    row = client.get(f"/activities/{theme.id}/prizes/{prize.id}/edit", headers=htmx_headers(f"prize-{prize.id}"))
    assert row.status_code == 200 and text(row).lstrip().startswith("<tr") and f'form="prize-form-{prize.id}"' in text(row)

    saved = client.post(f"/activities/{theme.id}/prizes/{prize.id}/edit", headers=htmx_headers("prize-pool"),
                        data={"csrf_token": admin, "name": "二十元话费", "kind": "cash", "cash": "20.00",
                              "weight": "20", "sort_order": "1", "colour": "#00aa00", "enabled": "y"})

    assert saved.status_code == 200 and "HX-Trigger" in saved.headers
    assert "二十元话费" in text(saved) and "50.00 %" in text(saved)  # 20 of 40
    prize = db.session.get(Prize, prize.id, populate_existing=True)
    assert (prize.cash_fen, prize.weight, prize.colour) == (2000, 20, "#00aa00")


def test_a_refused_edit_shows_the_row_again_with_the_message(client, admin, theme):
    prize = prize_named(theme, "十元话费")

    refused = client.post(f"/activities/{theme.id}/prizes/{prize.id}/edit", headers=htmx_headers("prize-pool"),
                          data={"csrf_token": admin, "name": "十元话费", "kind": "cash", "cash": "10",
                                "weight": "101", "sort_order": "9", "colour": "#00aa00"})

    assert refused.status_code == 422
    assert f'data-testid="editing-{prize.id}"' in text(refused)
    assert "The weight is a whole number from 1 to 100." in text(refused)
    assert "Another prize of this pool has order 9." in text(refused)


def test_stock_is_added_from_the_row(client, admin, theme):
    prize = prize_named(theme, "十元话费")

    added = client.post(f"/activities/{theme.id}/prizes/{prize.id}/stock", headers=htmx_headers("prize-pool"),
                        data={"csrf_token": admin, "amount": "15"})
    refused = client.post(f"/activities/{theme.id}/prizes/{prize.id}/stock", headers=htmx_headers("prize-pool"),
                          data={"csrf_token": admin, "amount": "0"})

    assert added.status_code == 200 and "20 / 20" in text(added)
    assert refused.status_code == 422 and "toast" in refused.headers["HX-Trigger"]
    assert db.session.get(Prize, prize.id, populate_existing=True).stock_total == 20
    event = db.session.execute(select(AuditEvent).where(AuditEvent.action == "theme_prize.add_stock")).scalar_one()
    assert event.after["added"] == 15


def test_a_prize_is_added_without_javascript(client, admin, theme):
    response = client.post(f"/activities/{theme.id}/prizes",
                           data={"csrf_token": admin, "name": "保温杯", "kind": "gift", "stock_total": "30",
                                 "weight": "10", "sort_order": "2", "colour": "#3366ff", "enabled": "y"})

    assert response.status_code == 302 and response.headers["Location"].endswith(f"/activities/{theme.id}/prizes")
    prize = prize_named(theme, "保温杯")
    assert (prize.kind, prize.stock_remaining, prize.enabled) == ("gift", 30, True)
    assert "保温杯" in text(client.get(response.headers["Location"]))


def test_a_refused_prize_keeps_what_was_typed(client, admin, theme):
    response = client.post(f"/activities/{theme.id}/prizes", headers=htmx_headers("prize-pool"),
                           data={"csrf_token": admin, "name": "积分", "kind": "points", "points": "",
                                 "stock_total": "30", "weight": "10", "sort_order": "3", "colour": "#3366ff"})

    assert response.status_code == 422
    body = text(response)
    assert "Points are a whole number from 1 to 1,000,000." in body and 'value="积分"' in body
    assert re.search(r"<details[^>]*open", body)


def test_a_viewer_sees_the_pool_but_cannot_change_it(client, auth, make, bank, theme):
    make.operator(org=bank, roles=("viewer",), username="pool_viewer")
    token = log_in_in_english(client, auth, "pool_viewer")
    prize = prize_named(theme, "十元话费")

    page = client.get(f"/activities/{theme.id}/prizes")
    change = client.post(f"/activities/{theme.id}/prizes/{prize.id}/stock", data={"csrf_token": token, "amount": "5"})

    assert page.status_code == 200 and 'data-testid="add-prize"' not in text(page) and "Add stock" not in text(page)
    assert change.status_code == 403


def test_another_banks_pool_and_prizes_are_404(client, admin, make):
    other = make.wheel_theme(make.org(kind="bank"))
    theirs = make.prize(other, stock=5)

    assert client.get(f"/activities/{other.id}/prizes").status_code == 404
    assert client.get(f"/activities/{other.id}/prizes/{theirs.id}/edit").status_code == 404
    assert client.post(f"/activities/{other.id}/prizes/{theirs.id}/stock",
                       data={"csrf_token": admin, "amount": "5"}).status_code == 404
    assert db.session.get(Prize, theirs.id, populate_existing=True).stock_total == 5


def test_a_prize_is_reached_only_through_its_own_activity(client, admin, make, bank, theme):
    sibling = make.wheel_theme(bank)
    prize = prize_named(theme, "十元话费")

    assert client.get(f"/activities/{sibling.id}/prizes/{prize.id}/edit").status_code == 404
