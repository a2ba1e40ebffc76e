"""`flask vouchers ...`: the voucher sync and reconciliation run by hand (or from a system cron).

    flask vouchers sync [--org CODE] [--platform meituan|douyin] [--days N]
    flask vouchers sync-statuses [--org CODE] [--platform meituan|douyin]
    flask vouchers reconcile [--org CODE] [--platform meituan|douyin] [--day YYYY-MM-DD]

Each works on the active platform accounts (of the organisation `--org` and those below it, when
given), calls the same services as the jobs (`app.vouchers.sync`), prints one line per account
and exits 1 when any account failed. Like the jobs, running a command twice creates nothing twice.
Changes are audited as done by "cli".
"""
from __future__ import annotations

from datetime import date, timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from app.providers.vouchers import PLATFORMS

vouchers_cli = AppGroup("vouchers", help="Voucher platforms: order sync, status sync, reconciliation.")

MAX_DAYS = 31

org_option = click.option("--org", "org_code", metavar="CODE",
                          help="Only the accounts of this organisation and those below it.")
platform_option = click.option("--platform", type=click.Choice(PLATFORMS), help="Only this platform's accounts.")


def _accounts(org_code: str | None, platform: str | None):
    from app.extensions import db
    from app.orgs.models import Organisation
    from app.vouchers.sync import active_accounts

    org = None
    if org_code:
        org = db.session.execute(select(Organisation).where(Organisation.code == org_code)).scalar_one_or_none()
        if org is None:
            raise click.BadParameter(f"no organisation with code {org_code!r}", param_hint="--org")
    accounts = active_accounts(org=org, platform=platform)
    if not accounts:
        where = f" under {org_code}" if org_code else ""
        raise click.ClickException(f"no active voucher platform account{where}")
    return accounts


def _run(accounts, work) -> None:
    """Run `work` per account as "cli", print each outcome, exit 1 if any failed."""
    from app.core import audit
    from app.vouchers.sync import account_key, for_each_account

    with audit.acting_as(audit.Actor(None, "cli", None)):
        run = for_each_account(accounts, work)
    for account in accounts:
        key = account_key(account)
        if key in run.results:
            figures = " ".join(f"{name}={value}" for name, value in run.results[key].items())
            click.echo(f"{key} ({account.store_name or account.org_id}): {figures}")
        else:
            click.echo(f"{key} ({account.store_name or account.org_id}): FAILED {run.errors[key]}", err=True)
    if run.errors:
        raise SystemExit(1)


@vouchers_cli.command("sync")
@org_option
@platform_option
@click.option("--days", type=click.IntRange(1, MAX_DAYS), default=2, show_default=True,
              help="Orders of the last N Shanghai days, today included.")
def sync(org_code: str | None, platform: str | None, days: int) -> None:
    """Bring the platforms' orders in as vouchers (new codes appear, known ones are updated)."""
    from app.core.timeutil import business_today
    from app.vouchers.sync import sync_orders

    today = business_today()
    wanted = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    _run(_accounts(org_code, platform), lambda account: sync_orders(account, wanted).as_dict())


@vouchers_cli.command("sync-statuses")
@org_option
@platform_option
def sync_statuses(org_code: str | None, platform: str | None) -> None:
    """Ask the platforms about every unfinished voucher (refunds, expiries, uses made elsewhere)."""
    from app.vouchers import sync as services

    _run(_accounts(org_code, platform),
         lambda account: services.sync_statuses(services.unfinished_vouchers(account)).as_dict())


@vouchers_cli.command("reconcile")
@org_option
@platform_option
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), help="The Shanghai day (default: yesterday).")
def reconcile(org_code: str | None, platform: str | None, day) -> None:
    """Compare the platforms' verified lists of a day with ours and record each difference."""
    from app.core.timeutil import business_today
    from app.vouchers.sync import reconcile as reconcile_day

    which: date = day.date() if day else business_today() - timedelta(days=1)
    if which > business_today():
        raise click.BadParameter("the day cannot be in the future", param_hint="--day")
    click.echo(f"reconciling {which.isoformat()}")
    _run(_accounts(org_code, platform), lambda account: reconcile_day(account, which).as_dict())
