"""云数汇 callbacks on the embedded default's SQLite: callbacks arriving at once (as 云数汇 sends them
when a batch of coupons settles) are each applied, none refused with "database is locked"."""
from __future__ import annotations

import os
import threading

from flask_migrate import upgrade
from sqlalchemy import select

from app import create_app
from app.config import TestConfig
from app.coupons.models import CouponCallback, CouponIssue
from app.extensions import db
from tests.conftest import REPO
from tests.coupons.bank_api_helpers import make_bank
from tests.coupons.test_callbacks import ACK, accepted, redemption_body, signed
from tests.coupons.ysh_sandbox import connect_ysh_account
from tests.factories import Factories

CALLBACKS = 8


def test_callbacks_arriving_at_once_are_each_applied(tmp_path):
    # TestConfig but for the database (another Redis would move the process-wide rate limiter to memory).
    app = create_app(TestConfig, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'embedded.db'}")
    with app.app_context():
        upgrade(directory=os.path.join(REPO, "migrations"), revision="heads")
        make = Factories()
        bank = make_bank(make)
        bank.account = connect_ysh_account(bank.org)
        activity = make.coupon_activity(org=bank.org, issue_total=CALLBACKS, per_member_limit=1)
        issues = [accepted(app.test_client(), bank, activity) for _ in range(CALLBACKS)]
        sends = [(f"/callbacks/yunshuhui/{bank.account.id}/redemption", body, signed(body))
                 for body in (redemption_body(issue) for issue in issues)]
        db.session.remove()

    start = threading.Barrier(CALLBACKS)
    answers: list[tuple[int, bytes]] = []

    def send(url: str, body: bytes, headers: dict) -> None:
        http = app.test_client()
        start.wait(10)
        response = http.post(url, data=body, headers=headers)
        answers.append((response.status_code, response.get_data()))

    threads = [threading.Thread(target=send, args=one) for one in sends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert answers == [(200, ACK)] * CALLBACKS
    with app.app_context():
        assert [c.outcome for c in db.session.execute(select(CouponCallback)).scalars()] == ["applied"] * CALLBACKS
        assert [i.redemption_status for i in db.session.execute(select(CouponIssue)).scalars()] == ["used"] * CALLBACKS
        db.session.remove()
