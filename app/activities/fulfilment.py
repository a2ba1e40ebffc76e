"""Handing a won prize to the customer, after the draw has committed, through the outbox.

The draw engine writes one outbox message per win (`hand_over`, dedupe key = the draw's id) in the
draw's own transaction; the handler `activities.fulfil_prize` runs later, locks the draw row and
acts only while the draw is `pending`, so a message delivered twice (or retried after a crash)
fulfils once. By kind:

- points / cash: credited to the customer's ledger at the bank (`PointsAccount` / `CashAccount`):
  an entry with the unique business key `draw:<id>` and an atomic balance update under the
  account's row lock — a retry finds the entry and pays nothing twice;
- coupon: a `CouponIssue` of the linked coupon activity is queued in the coupon pipeline
  (`app.coupons.issuance`: its stock and per-member counts are taken by the same guarded
  statements as a bank's request, and its own outbox message calls the tunnel). Its
  `call_trade_no` is `DRAW<draw no.>`, unique per bank, so the coupon is never issued twice. A
  coupon activity that cannot issue (disabled, over, no stock, the customer's limit) fails the
  fulfilment with the reason, for an operator to see; it is retried only by hand (`requeue`);
- gift: the draw waits for the winner's delivery address (`leave_address`, personal data kept
  encrypted); an operator ships it (`app.activities.records.ship`).

A fulfilment that failed is handed over again by `requeue` (the operator's retry on the draw records).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select, update

from app.core import crypto, outbox
from app.core.timeutil import utcnow
from app.coupons import issuance
from app.coupons.models import CouponActivity, CouponIssue
from app.extensions import db, upsert

from .prize_models import (CashAccount, CashEntry, PointsAccount, PointsEntry, Prize, PrizeDelivery, ThemeDraw,
                           ThemeParticipant)

FULFIL_KIND = "activities.fulfil_prize"
NOTE_MAX = 300


def hand_over(draw_id: int, org_id: int) -> outbox.OutboxMessage:
    """Queue the fulfilment of a won draw, in the draw's transaction (once per draw)."""
    return outbox.add_message(FULFIL_KIND, {"draw_id": draw_id}, org_id=org_id, dedupe_key=f"{FULFIL_KIND}:{draw_id}")


class NothingToRetry(Exception):
    """The draw's fulfilment has not failed (or the draw is gone): nothing to hand over again."""

    def __init__(self, status: str | None):
        super().__init__(status)
        self.status = status


def requeue(draw_id: int) -> tuple[ThemeDraw, str | None]:
    """Hand a failed fulfilment over again, once its cause is fixed (an operator's retry); the draw
    and the reason it had failed. Raises NothingToRetry unless the draw is `failed`.

    The draw is locked and pending again, and a new message is queued: the first one was delivered
    (a refusal is a result, not an error), so the outbox will not send it again. Its own dedupe key
    (`…:retry:<n>`) keeps one message per retry; the row lock keeps two operators from both retrying.
    """
    draw = db.session.execute(select(ThemeDraw).where(ThemeDraw.id == draw_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()
    if draw is None or draw.fulfilment_status != "failed":
        raise NothingToRetry(draw.fulfilment_status if draw else None)
    prefix = f"{FULFIL_KIND}:{draw.id}:retry:"
    retries = db.session.execute(select(func.count()).select_from(outbox.OutboxMessage)
                                 .where(outbox.OutboxMessage.dedupe_key.startswith(prefix))).scalar_one()
    note = draw.fulfilment_note
    draw.fulfilment_status, draw.fulfilment_note = "pending", None
    outbox.add_message(FULFIL_KIND, {"draw_id": draw.id}, org_id=draw.org_id, dedupe_key=f"{prefix}{retries + 1}")
    return draw, note


@outbox.outbox_handler(FULFIL_KIND)
def fulfil_prize(payload: dict) -> str:
    draw = db.session.execute(select(ThemeDraw).where(ThemeDraw.id == payload["draw_id"]).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()
    if draw is None:
        return "gone"
    if draw.fulfilment_status != "pending":
        return f"nothing to do: {draw.fulfilment_status}"
    prize = db.session.get(Prize, draw.prize_id)
    participant = db.session.get(ThemeParticipant, draw.participant_id)
    return _FULFILLERS[prize.kind](draw, prize, participant)


def _fulfilled(draw: ThemeDraw, status: str = "fulfilled", note: str | None = None) -> None:
    draw.fulfilment_status = status
    draw.fulfilment_note = note[:NOTE_MAX] if note else None
    if status == "fulfilled":
        draw.fulfilled_at = utcnow()


def _credit_points(draw: ThemeDraw, prize: Prize, participant: ThemeParticipant) -> str:
    balance = credit(POINTS, draw.org_id, participant, prize.points, f"draw:{draw.id}", f"prize {draw.draw_no}")
    _fulfilled(draw)
    return f"{prize.points} points credited; balance {balance}"


def _credit_cash(draw: ThemeDraw, prize: Prize, participant: ThemeParticipant) -> str:
    balance = credit(CASH, draw.org_id, participant, prize.cash_fen, f"draw:{draw.id}", f"prize {draw.draw_no}")
    _fulfilled(draw)
    return f"{prize.cash_fen} fen credited; balance {balance} fen"


def _await_address(draw: ThemeDraw, prize: Prize, participant: ThemeParticipant) -> str:
    _fulfilled(draw, "awaiting_address")
    return "waiting for the winner's delivery address"


# --- coupons --------------------------------------------------------------------------------------


def _issue_coupon(draw: ThemeDraw, prize: Prize, participant: ThemeParticipant) -> str:
    call_trade_no = f"DRAW{draw.draw_no}"
    issue = db.session.execute(select(CouponIssue).where(CouponIssue.org_id == draw.org_id,
                                                         CouponIssue.call_trade_no == call_trade_no)).scalar_one_or_none()
    if issue is None:
        activity = db.session.get(CouponActivity, prize.coupon_activity_id)
        refusal = _coupon_refusal(activity)
        if refusal is None:
            issue, refusal = _queue_coupon_issue(activity, participant, call_trade_no)
        if refusal is not None:
            _fulfilled(draw, "failed", f"coupon not issued: {refusal}")
            return f"failed: {refusal}"
    draw.coupon_issue_id = issue.id
    _fulfilled(draw)
    return f"coupon issue {issue.order_no} queued"


def _coupon_refusal(activity: CouponActivity) -> str | None:
    try:
        issuance.check_issuable(activity)
    except issuance.IssueRefused as exc:
        return exc.message
    return None


def _queue_coupon_issue(activity: CouponActivity, participant: ThemeParticipant,
                        call_trade_no: str) -> tuple[CouponIssue | None, str | None]:
    """A queued issue in the coupon pipeline (its counts taken, its delivery in the outbox), or why not."""
    savepoint = db.session.begin_nested()
    issue = CouponIssue(org_id=activity.org_id, order_no=issuance.new_order_no(), call_trade_no=call_trade_no,
                        coupon_activity_id=activity.id, openid_enc=participant.openid_enc,
                        openid_hash=participant.openid_hash, openid_masked=participant.openid_masked, status="queued")
    refusal = issuance.queue_issue(issue, activity)
    if refusal is not None:
        savepoint.rollback()
        return None, refusal.message
    savepoint.commit()
    return issue, None


_FULFILLERS = {"points": _credit_points, "cash": _credit_cash, "gift": _await_address, "coupon": _issue_coupon}


# --- the customers' ledgers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Ledger:
    account: type
    entry: type
    balance: str  # the account's balance column
    amount: str  # the entry's amount column
    balance_after: str  # the entry's balance-after column


POINTS = Ledger(PointsAccount, PointsEntry, "balance", "points", "balance_after")
CASH = Ledger(CashAccount, CashEntry, "balance_fen", "amount_fen", "balance_after_fen")


def credit(ledger: Ledger, org_id: int, holder, amount: int, business_key: str, reason: str) -> int:
    """Credit `amount` to the customer's account once per `business_key`; the balance after it.

    The account row is created if missing and locked (upsert), so credits to one account queue; a
    key credited before changes nothing (the unique key on the entries stands behind the check).
    """
    table = ledger.account.__table__.c
    account_id = db.session.execute(
        upsert(ledger.account).values(org_id=org_id, openid_hash=holder.openid_hash, openid_enc=holder.openid_enc,
                                      openid_masked=holder.openid_masked, **{ledger.balance: 0},
                                      created_at=utcnow(), updated_at=utcnow())
        .on_conflict_do_update(index_elements=["org_id", "openid_hash"], set_={"updated_at": utcnow()})
        .returning(table.id)).scalar_one()
    entry_table = ledger.entry.__table__.c
    earlier = db.session.execute(select(entry_table[ledger.balance_after])
                                 .where(entry_table.business_key == business_key)).scalar_one_or_none()
    if earlier is not None:
        return earlier
    balance = db.session.execute(
        update(ledger.account).where(table.id == account_id).values({ledger.balance: table[ledger.balance] + amount})
        .returning(table[ledger.balance]).execution_options(synchronize_session=False)).scalar_one()
    db.session.execute(ledger.entry.__table__.insert().values(
        org_id=org_id, account_id=account_id, business_key=business_key, reason=reason[:100], created_at=utcnow(),
        **{ledger.amount: amount, ledger.balance_after: balance}))
    return balance


def balance_of(ledger: Ledger, org_id: int, open_id: str) -> int:
    """A customer's balance at a bank (0 without an account)."""
    table = ledger.account.__table__.c
    return db.session.execute(select(table[ledger.balance]).where(
        table.org_id == org_id, table.openid_hash == crypto.lookup_hash(open_id))).scalar_one_or_none() or 0


# --- gifts ----------------------------------------------------------------------------------------


PHONE = re.compile(r"^1\d{10}$")


@dataclass
class AddressRefused(Exception):
    field: str
    message: str


def leave_address(theme_id: int, draw_no: str, open_id: str, recipient: str, phone: str, address: str) -> PrizeDelivery:
    """The winner of a gift says where it goes (once; committed). Raises AddressRefused."""
    draw = db.session.execute(
        select(ThemeDraw).join(ThemeParticipant, ThemeParticipant.id == ThemeDraw.participant_id)
        .where(ThemeDraw.theme_activity_id == theme_id, ThemeDraw.draw_no == draw_no,
               ThemeParticipant.openid_hash == crypto.lookup_hash(open_id)).with_for_update(of=ThemeDraw)
    ).scalar_one_or_none()
    if draw is None or draw.fulfilment_status != "awaiting_address":
        db.session.rollback()
        raise AddressRefused("draw", "this draw does not wait for a delivery address")
    recipient, address = (recipient or "").strip(), (address or "").strip()
    phone = crypto.normalise_phone(phone) or ""
    for name, ok, message in (("recipient", 1 <= len(recipient) <= 50, "the recipient's name, at most 50 characters"),
                              ("phone", PHONE.match(phone), "an 11-digit mobile number"),
                              ("address", 5 <= len(address) <= 200, "the address, 5 to 200 characters")):
        if not ok:
            db.session.rollback()
            raise AddressRefused(name, message)
    delivery = PrizeDelivery(org_id=draw.org_id, draw_id=draw.id, recipient_enc=crypto.encrypt(recipient),
                             phone_enc=crypto.encrypt(phone), address_enc=crypto.encrypt(address))
    db.session.add(delivery)
    draw.fulfilment_status = "address_given"
    db.session.commit()
    return delivery
