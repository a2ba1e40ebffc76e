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
        click.echo(report.describe())
        return
    click.echo(report.describe(), err=True)
    raise SystemExit(1)
