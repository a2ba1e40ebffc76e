"""The 云数汇 sandbox's clock (only where the sandboxes are on): settle PROCESS issues, let the
demo's customers use coupons (SANDBOX_YSH_AUTO_REDEEM), and send the callbacks that are due."""
from __future__ import annotations

from jobs import job_task


@job_task
def run_yunshuhui_sandbox() -> dict:
    from app.sandbox.yunshuhui import run_cycle

    return run_cycle()
