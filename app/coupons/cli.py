"""`flask coupons ...`: the bank API tried from the command line.

`flask coupons demo-issue` plays the demo bank's back end: it signs an issue request with the
bank's private key that `flask demo seed` wrote (instance/demo-bank-client.pem) — the LKLAPI way,
over appid, certificate serial, timestamp, nonce and the exact body — sends it to our
`POST /api/v1/coupons/issue` over HTTP with an `Idempotency-Key`, prints our answer and checks our
signature on it with the certificate we gave the bank. The issue then goes through the pipeline
like any other (monitor, sandbox console, reports).
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import click
import httpx
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.coupons.models import BankApiClient, CouponActivity
from app.extensions import db
from app.providers import lklapi

coupons_cli = AppGroup("coupons", help="Coupons: try the bank API.")
ISSUE_PATH = "/api/v1/coupons/issue"


def _client_for_key(private_pem: str) -> BankApiClient:
    """The active API client whose certificate belongs to this private key."""
    from app.coupons.settings import key_matches

    for client in db.session.execute(select(BankApiClient).where(BankApiClient.status == "active")).scalars():
        if key_matches(private_pem, client.client_cert):
            return client
    raise click.ClickException("no active bank API client has this key's certificate: run `flask demo seed` again")


def _default_activity(client: BankApiClient) -> str:
    from app.coupons.demo import ACTIVITIES

    code = db.session.execute(select(CouponActivity.code).where(
        CouponActivity.org_id == client.org_id, CouponActivity.name == ACTIVITIES[0].name)).scalar()
    if code is None:
        raise click.ClickException("the demo's coupon activity is missing: give --activity or run `flask demo seed`")
    return code


def signed_issue_request(client: BankApiClient, private_pem: str, document: dict) -> tuple[bytes, dict[str, str]]:
    """The exact body and the headers of an issue request, as the bank sends it."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Authorization": lklapi.request_authorization(client.app_id, client.client_serial_no, private_pem, body),
               "Content-Type": "application/json; charset=utf-8", "Idempotency-Key": document["callTradeNo"]}
    return body, headers


@coupons_cli.command("demo-issue")
@click.option("--open-id", default=None, help="The customer's openid [default: a new customer].")
@click.option("--activity", "activity_code", default=None, help="The activityCode [default: the demo's WeChat one].")
@click.option("--call-trade-no", default=None, help="The bank's serial number [default: a new one].")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="The bank's private key [default: instance/demo-bank-client.pem].")
@click.option("--base-url", default=None, help="Where our API is served [default: PUBLIC_BASE_URL].")
def demo_issue(open_id: str | None, activity_code: str | None, call_trade_no: str | None, key_file: str | None,
               base_url: str | None) -> None:
    """Sign and send one issue request as the demo bank, and check our signed answer."""
    from app.coupons.demo import default_key_file

    path = Path(key_file) if key_file else default_key_file()
    if not path.exists():
        raise click.ClickException(f"{path} does not exist: run `flask demo seed` first")
    private_pem = path.read_text()
    client = _client_for_key(private_pem)
    site = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    document = {"openId": open_id or f"oDemoCli{secrets.token_hex(8)}",
                "activityCode": activity_code or _default_activity(client),
                "callTradeNo": call_trade_no or f"CLI{secrets.token_hex(10)}",
                "writeOffNotify": f"{site}/sandbox/bank/notify/redeemed",
                "postNotify": f"{site}/sandbox/bank/notify/issued"}
    body, headers = signed_issue_request(client, private_pem, document)
    url = (base_url or site).rstrip("/") + ISSUE_PATH
    click.echo(f"POST {url} as {client.app_id}\n{body.decode()}")
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {url}: {exc} (is the app running?)") from exc
    click.echo(f"HTTP {response.status_code}\n{response.text}")
    try:
        lklapi.verify_response(response.headers, response.content, {client.our_serial_no: client.our_cert})
    except lklapi.SignatureError as exc:
        raise click.ClickException(f"our answer's signature does not verify: {exc}") from exc
    click.echo("our answer's signature verifies with the certificate we gave the bank")
    if response.status_code >= 400:
        raise SystemExit(1)
