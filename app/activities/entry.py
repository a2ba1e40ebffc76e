"""How customers reach a theme activity: its H5 entry link and the QR code of that link (drawn with
`segno`).

The link is `/h5/activities/<theme_no>` on the public base URL (`H5_BASE_URL` when configured,
else the address the console is served from). It opens the activity's H5 game page
(`app.activities.h5`): the customer is identified through 云数汇's OpenID hand-off on the first
visit, then sees the wheel, the draws left, "My prizes" and the rules.
"""
from __future__ import annotations

import io

import segno
from flask import current_app

from app.activities.models import ThemeActivity


def entry_path(theme: ThemeActivity) -> str:
    return f"/h5/activities/{theme.theme_no}"


def entry_url(theme: ThemeActivity, console_base_url: str) -> str:
    """The absolute link customers open: on `H5_BASE_URL` if set, else on the console's own address."""
    base = current_app.config.get("H5_BASE_URL") or console_base_url
    return base.rstrip("/") + entry_path(theme)


def qr_png(url: str, scale: int = 10) -> bytes:
    """A PNG of the link's QR code (error correction M, the standard 4-module quiet zone)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()
