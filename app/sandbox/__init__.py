"""Sandboxes of the partner platforms: blueprints under /sandbox/<platform>/ that play the
platform's side of the same protocol, with their own state in sandbox_* tables. On in the
embedded default and in tests, off in production (SANDBOXES_ENABLED)."""

from flask import Blueprint


def blueprints() -> list[Blueprint]:
    """The sandbox blueprints, registered only when SANDBOXES_ENABLED."""
    from app.sandbox.bank import bp as bank
    from app.sandbox.douyin import bp as douyin
    from app.sandbox.meituan import bp as meituan
    from app.sandbox.wechatpay import bp as wechatpay
    from app.sandbox.yunshuhui import bp as yunshuhui

    return [meituan, douyin, wechatpay, yunshuhui, bank]
