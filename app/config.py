"""Configuration read from the environment.

With nothing configured the app runs in its *embedded default*: SQLite under `instance/`,
fakeredis with an in-process job worker and cron thread, and the partner sandboxes on.
Setting `DATABASE_URL` and `REDIS_URL` switches to PostgreSQL and Redis.
"""
from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _dev_key(label: str) -> str:
    """A stable development-only key, derived from a label; production sets real keys."""
    return base64.b64encode(hashlib.sha256(f"marketing-hub-dev-{label}".encode()).digest()).decode()


class Config:
    ENV_NAME = os.environ.get("APP_ENV", "development")
    SECRET_KEY = os.environ.get("SECRET_KEY") or _dev_key("secret")

    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE / 'marketing_hub.db'}"
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL") or ""  # empty: fakeredis inside the process
    # The embedded default runs jobs and cron in threads of the web process.
    EMBEDDED_WORKERS = _env_bool("EMBEDDED_WORKERS", not os.environ.get("REDIS_URL"))

    # Field encryption: "keyid:base64key,keyid2:base64key2"; the first one encrypts new values.
    FIELD_ENCRYPTION_KEYS = os.environ.get("FIELD_ENCRYPTION_KEYS") or f"dev1:{_dev_key('field')}"
    LOOKUP_HASH_KEY = os.environ.get("LOOKUP_HASH_KEY") or _dev_key("lookup")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", ENV_NAME == "production")
    REMEMBER_COOKIE_HTTPONLY = True
    SESSION_IDLE_MINUTES = int(os.environ.get("SESSION_IDLE_MINUTES", "30"))
    SESSION_ABSOLUTE_HOURS = int(os.environ.get("SESSION_ABSOLUTE_HOURS", "12"))
    PERMANENT_SESSION_LIFETIME = timedelta(hours=SESSION_ABSOLUTE_HOURS)

    WTF_CSRF_TIME_LIMIT = None  # the session lifetime bounds the token
    RATELIMIT_ENABLED = _env_bool("RATELIMIT_ENABLED", True)
    LOGIN_LIMIT_PER_ACCOUNT = os.environ.get("LOGIN_LIMIT_PER_ACCOUNT", "5 per 15 minutes")
    LOGIN_LIMIT_PER_IP = os.environ.get("LOGIN_LIMIT_PER_IP", "20 per 15 minutes")

    BABEL_DEFAULT_LOCALE = "zh_CN"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES = {"zh_CN": "简体中文", "en": "English"}
    BABEL_TRANSLATION_DIRECTORIES = str(ROOT / "translations")

    # How many reverse proxies stand in front of the app (0: none). Their X-Forwarded-* headers are
    # trusted for exactly that many hops, so the audit trail and login throttling see the client's IP.
    PROXY_FIX_HOPS = int(os.environ.get("PROXY_FIX_HOPS", "0"))
    SANDBOXES_ENABLED = _env_bool("SANDBOXES_ENABLED", ENV_NAME != "production")
    # The 云数汇 sandbox uses some coupons by itself, so the demo's reports fill up (embedded mode only).
    SANDBOX_YSH_AUTO_REDEEM = _env_bool("SANDBOX_YSH_AUTO_REDEEM", EMBEDDED_WORKERS and ENV_NAME != "production")
    # Where 云数汇, WeChat and bank browsers reach us: the base of our callback and hand-off URLs.
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000")
    # Where customers open the H5 pages (the theme activity links and QR codes); the console's address otherwise.
    H5_BASE_URL = os.environ.get("H5_BASE_URL", "")
    # Uploaded images (theme activity backgrounds); relative paths are under instance/.
    UPLOAD_FOLDER = os.environ.get("UPLOAD_FOLDER", str(INSTANCE / "uploads"))
    OUTBOX_MAX_ATTEMPTS = int(os.environ.get("OUTBOX_MAX_ATTEMPTS", "8"))
    OUTBOX_BASE_DELAY_SECONDS = int(os.environ.get("OUTBOX_BASE_DELAY_SECONDS", "30"))
    EXPORT_MAX_ROWS = int(os.environ.get("EXPORT_MAX_ROWS", "100000"))
    TESTING = False


class TestConfig(Config):
    """Tests run on the real PostgreSQL and Redis of the machine."""

    ENV_NAME = "test"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    EMBEDDED_WORKERS = False
    SANDBOX_YSH_AUTO_REDEEM = False
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_SECURE = False
    # scrypt still, at a work factor of 2^10 instead of werkzeug's 2^15: each hash took ~130 ms, and
    # the suite makes and checks one for nearly every test's operators and logins.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"
