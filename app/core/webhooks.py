"""The generic outbox handler that POSTs a JSON document to a URL (bank notifications, webhooks).

Payload: {"url": ..., "body": {...}, "headers": {...}}. Any answer other than 2xx is a failure,
so the outbox retries it with backoff.
"""
from __future__ import annotations

import json

import httpx

from app.core.outbox import outbox_handler

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class DeliveryRefused(Exception):
    pass


@outbox_handler("http.post_json")
def post_json(payload: dict) -> str:
    body = json.dumps(payload["body"], ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", **payload.get("headers", {})}
    response = httpx.post(payload["url"], content=body, headers=headers, timeout=TIMEOUT)
    if not 200 <= response.status_code < 300:
        raise DeliveryRefused(f"HTTP {response.status_code}: {response.text[:200]}")
    return f"HTTP {response.status_code}: {response.text[:200]}"
