"""Encryption at rest for personal data and partner secrets.

Values are sealed with AES-256-GCM under a key named by id (`FIELD_ENCRYPTION_KEYS`, the first
key encrypts, all keys decrypt, so keys can be rotated); look-ups use an HMAC-SHA256 keyed hash
stored beside the ciphertext, so equality search and uniqueness work without decrypting.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

VERSION = "v1"


class DecryptionError(ValueError):
    pass


@lru_cache(maxsize=8)
def _parse_keys(spec: str) -> tuple[str, dict[str, bytes]]:
    keys: dict[str, bytes] = {}
    first = ""
    for item in spec.split(","):
        key_id, _, b64 = item.strip().partition(":")
        raw = base64.b64decode(b64)
        if len(raw) != 32:
            raise ValueError(f"encryption key {key_id!r} must be 32 bytes (base64)")
        keys[key_id] = raw
        first = first or key_id
    return first, keys


def _keys() -> tuple[str, dict[str, bytes]]:
    return _parse_keys(current_app.config["FIELD_ENCRYPTION_KEYS"])


def encrypt(plaintext: str | None) -> str | None:
    """'v1:<key id>:<base64 nonce+ciphertext+tag>'."""
    if plaintext is None:
        return None
    key_id, keys = _keys()
    nonce = os.urandom(12)
    sealed = AESGCM(keys[key_id]).encrypt(nonce, plaintext.encode(), key_id.encode())
    return f"{VERSION}:{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        version, key_id, b64 = token.split(":", 2)
        key = _keys()[1][key_id]
        blob = base64.b64decode(b64)
        return AESGCM(key).decrypt(blob[:12], blob[12:], key_id.encode()).decode()
    except Exception as exc:  # any malformed token, unknown key or failed tag is one error
        raise DecryptionError("cannot decrypt field") from exc


def needs_rotation(token: str | None) -> bool:
    return bool(token) and token.split(":", 2)[1] != _keys()[0]


def lookup_hash(value: str | None) -> str | None:
    """A keyed hash for equality look-ups; normalise the value before calling."""
    if value is None:
        return None
    key = current_app.config["LOOKUP_HASH_KEY"].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def mask_phone(phone: str | None) -> str:
    """13812348000 -> 138****8000."""
    if not phone:
        return ""
    if len(phone) < 7:
        return "*" * len(phone)
    return f"{phone[:3]}****{phone[-4:]}"


def normalise_phone(raw: str | None) -> str | None:
    """Digits only, without a +86 / 0086 prefix; None for empty input."""
    if raw is None:
        return None
    digits = "".join(ch for ch in raw if ch.isdigit())
    for prefix in ("0086", "86"):
        if len(digits) == 11 + len(prefix) and digits.startswith(prefix):
            digits = digits[len(prefix):]
    return digits or None
