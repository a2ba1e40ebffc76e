"""The home page: its figures, each shown only to those who may open the list behind it."""
from __future__ import annotations

import re

import pytest

from app.dashboard.services import home_figures


def figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="kpi-([\w-]+)">([^<]*)<', html))


def test_an_organisation_admin_sees_every_figure_of_their_organisation(client, auth, make):
    bank = make.org(kind="bank")
    admin = make.operator(bank, roles=("org_admin",))
    make.member(bank)
    auth.login(admin.username)
    html = client.get("/dashboard").get_data(as_text=True)
    assert figures(html) == {"members": "1", "members-today": "1", "products": "0", "organisations": "1",
                             "operators": "1"}
    for path in ("/members", "/products", "/orgs", "/operators"):
        assert f'href="{path}"' in html


@pytest.mark.parametrize("hidden", ["products", "organisations", "operators"])
def test_front_desk_staff_see_no_figure_of_a_list_they_may_not_open(client, auth, make, hidden):
    store = make.org(kind="store", parent=make.org(kind="merchant"))
    auth.login(make.operator(store, roles=("front_desk",)).username)
    html = client.get("/dashboard").get_data(as_text=True)
    assert set(figures(html)) == {"members", "members-today"}
    assert f'data-testid="kpi-{hidden}"' not in html
    assert client.get({"products": "/products", "organisations": "/orgs", "operators": "/operators"}[hidden]
                      ).status_code == 403


def test_a_figure_the_operator_may_not_open_is_not_even_counted(make):
    store = make.org(kind="store", parent=make.org(kind="merchant"))
    figures = home_figures(make.operator(store, roles=("front_desk",)))
    assert (figures.products, figures.organisations, figures.operators) == (None, None, None)
    assert (figures.members, figures.members_today) == (0, 0)
