"""Voucher jobs: the order sync (every 15 minutes), the status sync (hourly) and the daily
reconciliation, for every active platform account or for one; also started by hand from the
voucher screens. Thin: they take ids and call `app.vouchers.sync`."""
from __future__ import annotations

from datetime import date, timedelta

from flask import current_app

from jobs import job_task, report_progress


def _each_account(account_id: int | None, work) -> dict:
    """Run `work(account)` for each active account (or the one named); one failing platform does
    not stop the others, and the job fails only when every account failed."""
    from app.vouchers.sync import active_accounts, for_each_account

    accounts = active_accounts(account_id)
    run = for_each_account(accounts, work)
    for key, message in run.errors.items():
        current_app.logger.warning("voucher job on account %s failed: %s", key, message)
    if run.errors and not run.results:
        raise RuntimeError("; ".join(f"{key}: {message}" for key, message in run.errors.items()))
    return {"accounts": len(accounts), "results": run.results, "errors": run.errors}


@job_task
def sync_voucher_orders(account_id: int | None = None) -> dict:
    """New platform orders of yesterday and today become vouchers."""
    from app.vouchers.sync import sync_orders

    return _each_account(account_id, lambda account: sync_orders(account).as_dict())


@job_task
def sync_voucher_statuses(account_id: int | None = None, voucher_ids: list[int] | None = None) -> dict:
    """Refresh unfinished vouchers: every one of the accounts, or only those named."""
    from sqlalchemy import select

    from app.extensions import db
    from app.vouchers.models import Voucher
    from app.vouchers.sync import sync_statuses, unfinished_vouchers

    if voucher_ids:
        vouchers = list(db.session.execute(select(Voucher).where(Voucher.id.in_(voucher_ids))
                                           .order_by(Voucher.id)).scalars())
        return {"vouchers": len(vouchers), **sync_statuses(vouchers).as_dict()}
    return _each_account(account_id, lambda account: sync_statuses(unfinished_vouchers(account)).as_dict())


@job_task
def reconcile_vouchers(account_id: int | None = None, day: str | None = None) -> dict:
    """Compare the platforms' verified lists of a Shanghai day (default yesterday) with ours."""
    from app.core.timeutil import business_today
    from app.vouchers.sync import reconcile

    which = date.fromisoformat(day) if day else business_today() - timedelta(days=1)
    report_progress(1, which.isoformat())
    outcome = _each_account(account_id, lambda account: reconcile(account, which).as_dict())
    return {"day": which.isoformat(), **outcome}
