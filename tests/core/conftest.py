"""A real HTTP endpoint on 127.0.0.1 for outbox deliveries to hit, run in a thread of the test."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    """Records every JSON POST it gets and answers with `status`.

    `gate`, when set, makes each request wait for it before answering (to hold a delivery in flight);
    `arrived` is set as soon as a request has been read.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                              "body": json.loads(body)})
                    status = receiver.status
                receiver.arrived.set()
                if receiver.gate is not None:
                    receiver.gate.wait(10)
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                answer = b"ok" if status < 400 else b"server error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        return Handler

    def bodies(self) -> list[dict]:
        with self._lock:
            return [r["body"] for r in self.requests]

    def serve(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="test-receiver", daemon=True).start()

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.serve()
    yield receiver
    receiver.close()


def another_app(app, **overrides):
    """A second app in this process (e.g. one whose Redis is unreachable).

    The rate limiter is a process-wide singleton that every `create_app` rebinds to its own
    storage; keep it on the session app's working storage, or later logins would fail.
    """
    from app import create_app
    from app.config import TestConfig

    overrides.setdefault("RATELIMIT_STORAGE_URI", app.config["RATELIMIT_STORAGE_URI"])
    return create_app(TestConfig, **overrides)
