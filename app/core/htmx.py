"""Page-or-fragment rendering and HX-Trigger feedback.

A page template holds its fragments as named blocks. A view renders the whole page, unless
htmx asked for one of its fragments by target (hx-boost makes every navigation an htmx
request, so HX-Request alone does not mean "fragment").
"""
from __future__ import annotations

import json
from typing import Any

from flask import Response, flash, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block


def htmx_targets(*target_ids: str) -> bool:
    """True when this is an htmx request aimed at one of the given element ids (not a boosted page load)."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request or htmx.boosted:
        return False
    return htmx.target in target_ids


def render_page(template: str, block: str | None = None, targets: tuple[str, ...] = (), **context: Any) -> str:
    """The full page, or only `block` when htmx targets one of `targets` (default: the block's own name)."""
    if block and htmx_targets(*(targets or (block,))):
        return render_block(template, block, **context)
    return render_template(template, **context)


def trigger(response: Response, event: str, detail: Any = True) -> Response:
    """Add an event to the response's HX-Trigger header (merging with any already there)."""
    existing = response.headers.get("HX-Trigger")
    events: dict[str, Any] = json.loads(existing) if existing else {}
    events[event] = detail
    # ASCII only: header values go out as Latin-1, so a Chinese toast must travel as \u escapes.
    response.headers["HX-Trigger"] = json.dumps(events)
    return response


def toast(response: Response | str, message: str, level: str = "success") -> Response:
    """Show a toast in the browser when htmx receives this response."""
    response = make_response(response)
    return trigger(response, "toast", {"message": str(message), "level": level})


def done(message: str, *events: str, redirect_to: str, level: str = "success") -> Response:
    """The answer to a successful form.

    In a modal (htmx): nothing to swap; close the modal, toast, and fire `events` so lists refresh.
    Without JavaScript: flash the message and redirect to `redirect_to`.
    """
    if not htmx_targets("modal-content"):
        flash(str(message), level)
        return redirect(redirect_to)
    response = make_response("", 204)
    trigger(response, "modal:close")
    for event in events:
        trigger(response, event)
    return toast(response, message, level)
