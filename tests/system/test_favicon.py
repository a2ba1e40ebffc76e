"""Every page names its icon, so no browser asks for a /favicon.ico that is not there."""
from __future__ import annotations


def test_the_console_names_its_icon_and_serves_it(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" type="image/svg+xml" href="/static/img/favicon.svg">' in html
    icon = client.get("/static/img/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
