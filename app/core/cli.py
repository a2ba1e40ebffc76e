"""`flask audit ...`: commands over the audit trail."""
from __future__ import annotations

import click
from flask.cli import AppGroup

audit_cli = AppGroup("audit", help="The audit trail.")


@audit_cli.command("verify")
def verify() -> None:
    """Walk the hash chain; exit 1 and name the first broken event if any."""
    from app.core.audit import verify_chain

    report = verify_chain()
    if report.ok:
        click.echo(f"audit chain OK: {report.checked} events verified")
        return
    click.echo(f"audit chain BROKEN at event {report.broken_at}: {report.reason} "
               f"({report.checked} events before it verified)", err=True)
    raise SystemExit(1)
