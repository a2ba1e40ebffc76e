"""Small helpers for tests: CSRF tokens from pages, HTMX headers, the app served over a real socket."""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import make_server

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')


def csrf_from(response) -> str:
    """The CSRF token embedded in a rendered page."""
    match = _TOKEN.search(response.get_data(as_text=True))
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def log_in_in_english(client, auth, username: str) -> str:
    """Log in, in English (assertions read the English messages); the CSRF token of the session."""
    auth.login(username)
    with client.session_transaction() as session:
        session["locale"] = "en"
    return csrf_from(client.get("/dashboard"))


def htmx_headers(target: str | None = None, boosted: bool = False) -> dict[str, str]:
    headers = {"HX-Request": "true"}
    if target:
        headers["HX-Target"] = target
    if boosted:
        headers["HX-Boosted"] = "true"
    return headers


@contextmanager
def serving(app, name: str = "live-server") -> Iterator[str]:
    """The app served on http://127.0.0.1:<free port> by a threaded werkzeug server in a daemon
    thread, for what needs real HTTP (client timeouts, `requests`-based SDKs, jobs that build their
    own clients, a browser); yields that base URL and stops the server afterwards.

    Each request runs in an app context of its own, as the real platform would; the server shares
    the test database and Redis."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
