"""A small read-through cache on Redis for figures that may be a little stale (filter choices, counts)."""
from __future__ import annotations

import json
from typing import Any, Callable

from app.extensions import get_redis

PREFIX = "cache:"


def cached(key: str, ttl_seconds: int, compute: Callable[[], Any]) -> Any:
    """The JSON value stored under `key`, computed and stored for `ttl_seconds` when missing."""
    redis = get_redis()
    stored = redis.get(PREFIX + key)
    if stored is not None:
        return json.loads(stored)
    value = compute()
    redis.set(PREFIX + key, json.dumps(value, ensure_ascii=False), ex=ttl_seconds)
    return value


def forget(*keys: str) -> None:
    get_redis().delete(*(PREFIX + key for key in keys))
