"""Sandboxes of the partner platforms: blueprints under /sandbox/<platform>/ that play the
platform's side of the same protocol, with their own state in sandbox_* tables. On in the
embedded default and in tests, off in production (SANDBOXES_ENABLED)."""

from flask import Blueprint


def blueprints() -> list[Blueprint]:
    """The sandbox blueprints to register (each platform's module adds itself here)."""
    found: list[Blueprint] = []
    for module_name in ("meituan", "douyin"):
        try:
            module = __import__(f"app.sandbox.{module_name}", fromlist=["bp"])
        except ModuleNotFoundError as exc:
            if exc.name != f"app.sandbox.{module_name}":
                raise
            continue
        found.append(module.bp)
    return found
