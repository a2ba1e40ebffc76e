"""Front-desk verification of platform vouchers: preview, confirm (exactly once), undo.

Services never touch `request`: the acting operator (the desk) is an argument.

Platform recognition (`preview`): a scanned Douyin link (it contains "douyin", "encrypted_data="
or "object_id=") is a Douyin certificate, prepared by the `encrypted_data` it carries or, for a
short link that carries none, by the one its redirect leads to (the Douyin client follows it);
otherwise the platform chosen on the screen; with none chosen ("auto") Meituan is asked first and
Douyin when Meituan does not know the code (or the desk has no Meituan account).

Exactly once (`confirm`):

(a) one short transaction locks the voucher row (SELECT ... FOR UPDATE), refuses when it has
    fewer uses left than asked ("already verified") or another verification of it is in flight
    ('verifying', or 'unknown' which must be retried first), and inserts the verification as
    'verifying' under the form's `request_id` (UNIQUE: a double-submitted form finds the first
    one and returns it instead of verifying twice);
(b) the platform is called outside any transaction (Meituan `consume` with the request_id as its
    idempotency key; Douyin `verify` with the token of a fresh `prepare`). A definite refusal
    marks the verification 'failed'; an unknown outcome (timeout, 5xx on consume, Douyin's
    OutcomeUnknown) marks it 'unknown' and nothing is granted: confirming the same request_id
    again retries it safely (Meituan: same requestId; Douyin: the certificate's verify records
    are read first and a verify is only repeated when none is ours);
(c) on success the voucher's uses, the verification ('verified', platform ids, amount) and the
    audit event are staged and committed in the same transaction as the gym's grant
    (`app.gym.services.fulfil`, which commits; `source_ref` = "voucher:<request_id>"). If the
    grant is refused (class full, ...) everything is rolled back, the platform verification is
    compensated (Meituan `reverseconsume`, Douyin `cancel`) and the verification is 'failed' with
    the reason: the voucher stays unverified on both sides.

Undo (`undo`): only 'verified' verifications, and only the latest live one of the voucher (Meituan
reverses a code's latest consumption). The gym's reversal is tried first and rolled back (a dry
run: "lessons already used" refuses before the platform is touched), then the platform is told,
then the gym reversal, the voucher's uses and the verification's 'undone' state commit together.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.auth.models import Operator
from app.core import audit, crypto
from app.core.tenancy import scoped
from app.core.timeutil import business_today, local_day_start, utcnow
from app.extensions import commit_keeping_loaded, db
from app.gym import services as gym
from app.gym.models import ClassSession, GymGrant
from app.members import services as members
from app.members.models import Member, Product
from app.orgs.models import Organisation
from app.providers.douyin import LINK_PARAMETERS, encrypted_data_in
from app.providers.vouchers import (PLATFORMS, PlatformUnavailable, VoucherAlreadyUsed, VoucherError, VoucherNotFound,
                                    VoucherPreview, VoucherWrongCount)
from app.vouchers.models import DealMapping, PlatformAccount, Voucher, VoucherVerification
from app.vouchers.platforms import client_for

REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_LINK_LENGTH = 2048
SESSION_CHOICES = 30
STALE_VERIFYING = timedelta(minutes=2)  # a 'verifying' older than this was interrupted


class DeskError(Exception):
    """A refusal of ours (not the platform's); `message` is for the person at the desk."""

    def __init__(self, message: str, verification: VoucherVerification | None = None):
        super().__init__(message)
        self.message = message
        self.verification = verification


class NoPlatformAccount(DeskError):
    pass


class DealNotMapped(DeskError):
    pass


class AlreadyVerified(DeskError):
    """No uses left: `verification` is the latest verification of the voucher (when we have one)."""


class BeingVerified(DeskError):
    pass


class NotUndoable(DeskError):
    pass


def new_request_id() -> str:
    """The confirm form's idempotency key, from the CSPRNG."""
    return secrets.token_hex(16)


# --- accounts, mappings --------------------------------------------------------------------------

def _nearest_first(org: Organisation) -> list[int]:
    return list(reversed(org.ancestor_ids()))


def account_for(actor_org: Organisation, platform: str, required: bool = True) -> PlatformAccount | None:
    """The desk organisation's active account on `platform`, else its nearest ancestor's."""
    ids = _nearest_first(actor_org)
    accounts = {a.org_id: a for a in db.session.execute(select(PlatformAccount).where(
        PlatformAccount.org_id.in_(ids), PlatformAccount.platform == platform,
        PlatformAccount.status == "active")).scalars()}
    for org_id in ids:
        if org_id in accounts:
            return accounts[org_id]
    if required:
        raise NoPlatformAccount(_("This store has no %(platform)s account. Ask an administrator to set one up "
                                  "under Voucher platforms.", platform=platform_label(platform)))
    return None


def mapping_for(actor_org: Organisation, platform: str, deal_id: str) -> DealMapping | None:
    """The deal's mapping of the desk organisation, else of its nearest ancestor."""
    ids = _nearest_first(actor_org)
    found = {m.org_id: m for m in db.session.execute(select(DealMapping).where(
        DealMapping.org_id.in_(ids), DealMapping.platform == platform, DealMapping.deal_id == deal_id)).scalars()}
    return next((found[i] for i in ids if i in found), None)


def platform_label(platform: str) -> str:
    from app.vouchers.platforms import PLATFORM_LABELS

    return str(PLATFORM_LABELS.get(platform, platform))


# --- recognition and preview ---------------------------------------------------------------------

@dataclass
class Scanned:
    code: str | None  # a typed or scanned code
    encrypted_data: str | None  # Douyin: from a scanned link
    platforms: tuple[str, ...]  # to ask, in order
    short_link: str | None = None  # Douyin: a scanned short link to follow for its encrypted_data


def recognise(raw_code: str, platform: str | None = None) -> Scanned:
    text = (raw_code or "").strip()
    if not text:
        raise DeskError(_("Scan or type the voucher code."))
    lowered = text.lower()
    if "douyin" in lowered or any(f"{name}=" in lowered for name in LINK_PARAMETERS):
        encrypted = encrypted_data_in(text)
        if encrypted:
            return Scanned(None, encrypted, ("douyin",))
        if "://" in text and len(text) <= MAX_LINK_LENGTH:
            return Scanned(None, None, ("douyin",), short_link=text)  # followed by the Douyin client
        raise DeskError(_("This Douyin link carries no voucher. Open the voucher in Douyin and scan its QR "
                          "code, or type its code."))
    code = re.sub(r"\s+", "", text)
    if len(code) > 64:
        raise DeskError(_("This is not a voucher code."))
    if platform in PLATFORMS:
        return Scanned(code, None, (platform,))
    return Scanned(code, None, ("meituan", "douyin"))


@dataclass
class DeskPreview:
    voucher: Voucher
    platform: str
    mapping: DealMapping
    product: Product
    request_id: str
    member: Member | None = None
    sessions: list[ClassSession] = field(default_factory=list)

    @property
    def quantity_per_use(self) -> int:
        return self.mapping.quantity


def _ask(actor: Operator, scanned: Scanned, transport=None) -> tuple[VoucherPreview, PlatformAccount]:
    last_error: VoucherError | None = None
    asked = False
    for platform in scanned.platforms:
        account = account_for(actor.org, platform, required=len(scanned.platforms) == 1)
        if account is None:
            continue
        asked = True
        client = client_for(account, transport)
        commit_keeping_loaded()  # no database connection is held while the platform answers
        try:
            if platform == "douyin" and scanned.short_link:
                found = client.prepare(encrypted_data=client.resolve_short_link(scanned.short_link))
            elif platform == "douyin":
                found = (client.prepare(encrypted_data=scanned.encrypted_data) if scanned.encrypted_data
                         else client.prepare(code=scanned.code))
            else:
                found = client.prepare(scanned.code)
            return found, account
        except VoucherNotFound as exc:
            last_error = exc
            continue
        except VoucherAlreadyUsed as exc:
            exc.platform = platform  # type: ignore[attr-defined]
            raise
        finally:
            client.close()
    if not asked:
        raise NoPlatformAccount(_("This store has no voucher platform account. Ask an administrator to set one up "
                                  "under Voucher platforms."))
    assert last_error is not None
    raise last_error


def _visible(actor: Operator, org_id: int) -> bool:
    org = db.session.get(Organisation, org_id)
    return org is not None and org.path.startswith(actor.org.path)


def _upsert_voucher(actor: Operator, found: VoucherPreview, account: PlatformAccount, mapping: DealMapping | None
                    ) -> Voucher:
    """Our row of the voucher, with what the platform just said (committed)."""
    for attempt in range(2):
        voucher = db.session.execute(select(Voucher).where(
            Voucher.platform == found.platform, Voucher.code == found.code).with_for_update(of=Voucher)
        ).scalar_one_or_none()
        if voucher is None:
            voucher = Voucher(org_id=actor.org_id, platform=found.platform, code=found.code, source="desk",
                              uses_total=max(found.uses_left, 1), uses_left=found.uses_left, status="unused")
            db.session.add(voucher)
        elif not _visible(actor, voucher.org_id):
            # Seen by another store of the same account (or brought in by the sync at the merchant):
            # the platform has just accepted it here, so it moves to this desk's organisation.
            if voucher.org_id not in [o.id for o in db.session.execute(select(Organisation).where(
                    Organisation.path.startswith(db.session.get(Organisation, account.org_id).path))).scalars()]:
                db.session.rollback()
                raise DeskError(_("This voucher belongs to another organisation."))
            voucher.org_id = actor.org_id
        voucher.encrypted_code = found.encrypted_code or voucher.encrypted_code
        voucher.order_id = found.order_id or voucher.order_id
        voucher.deal_id, voucher.title = found.deal_id, found.title[:200]
        voucher.kind = found.voucher_kind
        voucher.buyer_phone_masked = found.buyer_phone_masked or voucher.buyer_phone_masked
        voucher.original_price_fen, voucher.paid_price_fen = found.original_price_fen, found.paid_price_fen
        voucher.uses_total = max(voucher.uses_total or 0, found.uses_left, 1)
        voucher.uses_left = min(found.uses_left, voucher.uses_total)
        voucher.status = ("used" if voucher.uses_left == 0 else
                          "partly_used" if voucher.uses_left < voucher.uses_total else "unused")
        voucher.expires_at = found.expires_at
        voucher.last_synced_at = utcnow()
        if mapping is not None:
            voucher.product_id = mapping.product_id
        try:
            commit_keeping_loaded()
            return voucher
        except IntegrityError:  # another desk inserted it at the same moment
            db.session.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")


def _latest_verified(voucher_id: int) -> VoucherVerification | None:
    return db.session.execute(select(VoucherVerification).where(
        VoucherVerification.voucher_id == voucher_id, VoucherVerification.status == "verified")
        .order_by(VoucherVerification.id.desc()).limit(1)).scalar_one_or_none()


def upcoming_sessions(product: Product, limit: int = SESSION_CHOICES) -> list[ClassSession]:
    """Scheduled sessions of a group class that have not started and have a seat left."""
    return list(db.session.execute(select(ClassSession).where(
        ClassSession.org_id == product.org_id, ClassSession.product_id == product.id,
        ClassSession.status == "scheduled", ClassSession.starts_at > utcnow(),
        ClassSession.seats_taken < ClassSession.capacity).order_by(ClassSession.starts_at).limit(limit)).scalars())


def preview(actor: Operator, raw_code: str, platform: str | None = None, transport=None) -> DeskPreview:
    """What a scanned code is, as the platform says, with the product it is fulfilled as."""
    scanned = recognise(raw_code, platform)
    try:
        found, account = _ask(actor, scanned, transport)
    except VoucherAlreadyUsed:
        known = None
        if scanned.code:
            known = db.session.execute(scoped(Voucher, actor).where(Voucher.code == scanned.code)
                                       ).scalars().first()
        latest = None
        if known is not None:
            known.uses_left, known.status = 0, "used"
            db.session.commit()
            latest = _latest_verified(known.id)
        raise AlreadyVerified(_("This voucher has already been verified."), latest) from None
    mapping = mapping_for(actor.org, found.platform, found.deal_id)
    voucher = _upsert_voucher(actor, found, account, mapping)
    if mapping is None:
        raise DealNotMapped(_("Deal not mapped: %(platform)s deal %(deal)s (%(title)s) is not mapped to one of our "
                              "products. Ask an administrator to map it under Voucher platforms.",
                              platform=platform_label(found.platform), deal=found.deal_id, title=found.title))
    _check_grantable(actor, mapping)
    member = db.session.get(Member, voucher.member_id) if voucher.member_id else None
    product = mapping.product
    sessions = upcoming_sessions(product) if product.kind == "group_class" else []
    return DeskPreview(voucher=voucher, platform=found.platform, mapping=mapping, product=product,
                       request_id=new_request_id(), member=member, sessions=sessions)


# --- confirm -------------------------------------------------------------------------------------

def _lock_voucher(actor: Operator, voucher_id: int) -> Voucher:
    voucher = db.session.execute(scoped(Voucher, actor).where(Voucher.id == voucher_id).with_for_update(of=Voucher)
                                 .execution_options(populate_existing=True)).scalar_one_or_none()
    if voucher is None:
        db.session.rollback()
        raise DeskError(_("No such voucher. Scan it again."))
    return voucher


def _lock_verification(verification_id: int) -> VoucherVerification:
    return db.session.execute(select(VoucherVerification).where(VoucherVerification.id == verification_id)
                              .with_for_update(of=VoucherVerification)
                              .execution_options(populate_existing=True)).scalar_one()


def _by_request(request_id: str) -> VoucherVerification | None:
    return db.session.execute(select(VoucherVerification).where(VoucherVerification.request_id == request_id)
                              .execution_options(populate_existing=True)).scalar_one_or_none()


@dataclass
class MemberChoice:
    member_id: int | None = None
    phone: str | None = None
    name: str | None = None


def _check_member_choice(actor: Operator, choice: MemberChoice, product: Product) -> Member | None:
    """The existing member the verification is for, or None when one must be created (phone checked)."""
    if choice.member_id:
        member = db.session.execute(scoped(Member, actor).where(Member.id == int(choice.member_id))
                                    ).scalar_one_or_none()
        if member is None or product.org_id not in db.session.get(Organisation, member.org_id).ancestor_ids():
            raise DeskError(_("No such member."))
        return member
    phone = (choice.phone or "").strip()
    if not phone:
        raise DeskError(_("Enter the member's mobile phone number."))
    try:
        members.check_phone(None, phone)
    except members.MemberError as exc:
        raise DeskError(str(exc)) from None
    return members.find_member_by_phone(actor.org_id, phone)


def _member_for(actor: Operator, choice: MemberChoice, product: Product) -> Member:
    member = _check_member_choice(actor, choice, product)
    if member is not None:
        return member
    org = actor.org  # members who come in with a voucher belong to the desk's organisation
    tail = (crypto.normalise_phone(choice.phone) or "")[-4:]
    name = (choice.name or "").strip() or _("Voucher customer %(tail)s", tail=tail)
    try:
        return members.create_member(org, members.MemberDetails(name=name, phone=choice.phone,
                                                                source_channel=_("Voucher")))
    except members.MemberError:
        found = members.find_member_by_phone(actor.org_id, choice.phone)  # created at another desk meanwhile
        if found is None:
            raise
        return found


def _start(actor: Operator, voucher_id: int, request_id: str, count: int, member: Member | None
           ) -> tuple[VoucherVerification, bool]:
    """Step (a): (verification, True) when this call started it; (existing one, False) for a repeat."""
    voucher = _lock_voucher(actor, voucher_id)
    existing = _by_request(request_id)  # read after the lock: sees a twin committed meanwhile
    if existing is not None:
        if existing.voucher_id != voucher.id:
            db.session.rollback()
            raise DeskError(_("This form was for another voucher. Scan the voucher again."))
        db.session.rollback()
        return existing, False
    live = db.session.execute(select(VoucherVerification).where(
        VoucherVerification.voucher_id == voucher.id,
        VoucherVerification.status.in_(("verifying", "unknown")))).scalars().first()
    if live is not None and live.status == "verifying" and live.created_at < utcnow() - STALE_VERIFYING:
        # The desk that started it never finished (process stopped between the steps): its outcome
        # is unknown; it is offered for a retry under its own request id like any unknown outcome.
        live.status = "unknown"
        live.error = _("The verification was interrupted. Retry it to learn whether the platform verified it.")
        db.session.commit()
        raise BeingVerified(_("An earlier verification of this voucher has no known outcome yet. Retry it "
                              "(Recent verifications) before verifying again."), live)
    if live is not None:
        db.session.rollback()
        if live.status == "unknown":
            raise BeingVerified(_("An earlier verification of this voucher has no known outcome yet. Retry it "
                                  "(Recent verifications) before verifying again."), live)
        raise BeingVerified(_("This voucher is being verified at another desk."), live)
    if voucher.uses_left < count:
        latest = _latest_verified(voucher.id)
        db.session.rollback()
        if voucher.uses_left == 0:
            raise AlreadyVerified(_("This voucher has already been verified."), latest)
        raise DeskError(_("Only %(n)s uses of this voucher are left.", n=voucher.uses_left))
    verification = VoucherVerification(org_id=actor.org_id, voucher_id=voucher.id, request_id=request_id,
                                       status="verifying", count=count, member_id=member.id if member else None,
                                       operator_id=actor.id)
    db.session.add(verification)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        twin = _by_request(request_id)
        if twin is None:
            raise
        return twin, False
    return verification, True


def _finish(verification_id: int, status: str, error: str | None = None) -> VoucherVerification:
    verification = _lock_verification(verification_id)
    verification.status = status
    verification.error = (error or "")[:500] or None
    db.session.commit()
    return verification


def _platform_verify(actor: Operator, voucher: Voucher, verification: VoucherVerification, transport=None):
    """Step (b). Returns (platform_verify_id, certificate_id) or raises VoucherError."""
    account = account_for(actor.org, voucher.platform)
    client = client_for(account, transport)
    commit_keeping_loaded()  # (reads only so far) no database connection is held while the platform answers
    try:
        if voucher.platform == "meituan":
            done = client.consume(voucher.code, verification.count, verification.request_id, account.store_ref,
                                  actor.username)
            return done.verify_id, None
        if verification.count != 1:
            raise VoucherWrongCount("Douyin verifies one use at a time")
        prepared = client.prepare(code=voucher.code) if voucher.code else client.prepare(
            encrypted_data=voucher.encrypted_code)
        done = client.verify(prepared.verify_token, account.store_ref, prepared.encrypted_code)
        return done.verify_id, done.certificate_id
    finally:
        client.close()


def _douyin_lookup(actor: Operator, voucher: Voucher, verification: VoucherVerification, transport=None):
    """After an unknown Douyin outcome: (verify_id, certificate_id) of a verify record that is ours, or None."""
    account = account_for(actor.org, voucher.platform)
    client = client_for(account, transport)
    commit_keeping_loaded()  # (reads only so far) no database connection is held while the platform answers
    try:
        status = client.get(voucher.encrypted_code)
    finally:
        client.close()
    known = set(db.session.execute(select(VoucherVerification.platform_verify_id).where(
        VoucherVerification.voucher_id == voucher.id, VoucherVerification.platform_verify_id.is_not(None))).scalars())
    since = verification.created_at.timestamp() - 5
    for record in status.verify_records:
        if record.get("cancelled") or str(record.get("verify_id")) in known:
            continue
        if int(record.get("verify_time") or 0) >= since and str(record.get("poi_id")) == account.store_ref:
            return str(record["verify_id"]), status.certificate_id
    return None


def _compensate(actor: Operator, voucher: Voucher, verify_id: str, certificate_id: str | None, transport=None
                ) -> str | None:
    """Undo a platform verification whose grant failed; None when done, else why it could not be."""
    account = account_for(actor.org, voucher.platform)
    client = client_for(account, transport)
    commit_keeping_loaded()  # (reads only so far) no database connection is held while the platform answers
    try:
        if voucher.platform == "meituan":
            client.reverse_consume(voucher.code, voucher.deal_id, account.store_ref, actor.username)
        else:
            client.cancel(verify_id, certificate_id)
        return None
    except VoucherError as exc:
        return str(exc.message)
    finally:
        client.close()


def _grant_summary(granted: gym.Granted) -> dict[str, Any]:
    return {"kind": granted.kind, "summary": granted.summary, "result_type": granted.result_type,
            "result_id": granted.result_id}


def _audit(actor: Operator, action: str, object_id: int, org_id: int, *, before: dict | None = None,
           after: dict | None = None) -> None:
    """An audit event as the desk's operator (whoever the ambient actor is)."""
    current = audit.current_actor()
    if current.operator_id == actor.id:
        audit.record(action, "voucher_verification", object_id, before=before, after=after, org_id=org_id)
        return
    with audit.acting_as(audit.Actor(actor.id, actor.username, actor.org_id, current.ip)):
        audit.record(action, "voucher_verification", object_id, before=before, after=after, org_id=org_id)


def _check_grantable(actor: Operator, mapping: DealMapping) -> None:
    """The product must be the desk's own or of an organisation above it (a merchant's catalogue)."""
    if mapping.product.org_id not in actor.org.ancestor_ids():
        raise DealNotMapped(_("Deal not mapped for this desk: the deal is mapped to a product of another "
                              "organisation. Map it to one of this store's products."))


def _stage_verified(actor: Operator, voucher_id: int, verification_id: int, member: Member, verify_id: str,
                    certificate_id: str | None) -> None:
    voucher = db.session.execute(select(Voucher).where(Voucher.id == voucher_id).with_for_update(of=Voucher)
                                 .execution_options(populate_existing=True)).scalar_one()
    verification = _lock_verification(verification_id)
    voucher.uses_left = max(voucher.uses_left - verification.count, 0)
    voucher.status = "used" if voucher.uses_left == 0 else "partly_used"
    voucher.member_id = member.id
    verification.status = "verified"
    verification.member_id = member.id
    verification.platform_verify_id, verification.certificate_id = verify_id, certificate_id
    if voucher.paid_price_fen is not None:
        verification.amount_fen = voucher.paid_price_fen * verification.count // max(voucher.uses_total, 1)
    verification.verified_at = utcnow()
    verification.error = None
    db.session.flush()
    _audit(actor, "voucher.verify", verification.id, verification.org_id,
           after={"voucher_id": voucher.id, "platform": voucher.platform, "code": voucher.code,
                        "count": verification.count, "member_id": member.id, "request_id": verification.request_id,
                        "platform_verify_id": verify_id, "amount_fen": verification.amount_fen})


def confirm(actor: Operator, voucher_id: int, request_id: str, count: int = 1, phone: str | None = None,
            member_id: int | None = None, session_id: int | None = None, member_name: str | None = None,
            transport=None) -> VoucherVerification:
    """Verify `count` uses of a previewed voucher on its platform and grant what it buys, exactly once."""
    request_id = (request_id or "").strip().lower()
    if not REQUEST_ID.match(request_id):
        raise DeskError(_("This form has expired. Scan the voucher again."))
    if not isinstance(count, int) or count < 1:
        raise DeskError(_("The number of uses must be at least 1."))
    voucher = db.session.execute(scoped(Voucher, actor).where(Voucher.id == voucher_id)).scalar_one_or_none()
    if voucher is None:
        raise DeskError(_("No such voucher. Scan it again."))
    if voucher.platform == "douyin" and count != 1:
        raise DeskError(_("Douyin verifies one use at a time: confirm once per use."))
    mapping = mapping_for(actor.org, voucher.platform, voucher.deal_id)
    if mapping is None:
        raise DealNotMapped(_("Deal not mapped: this voucher's deal is not mapped to one of our products."))
    _check_grantable(actor, mapping)
    product = mapping.product
    choice = MemberChoice(member_id=member_id, phone=phone, name=member_name)
    member = _check_member_choice(actor, choice, product)
    db.session.commit()  # nothing to keep: end the read transaction before taking locks

    verification, started = _start(actor, voucher.id, request_id, count, member)
    if not started:
        if verification.status != "unknown":
            return verification
        verification = _resume_unknown(actor, verification)
        if verification.status != "verifying":
            return verification
    return _run(actor, verification.id, mapping, choice, session_id, transport, retrying=not started)


def _resume_unknown(actor: Operator, verification: VoucherVerification) -> VoucherVerification:
    """Take an 'unknown' verification back to 'verifying' (under the voucher's lock) to retry it."""
    _lock_voucher(actor, verification.voucher_id)
    verification = _lock_verification(verification.id)
    if verification.status != "unknown":
        db.session.rollback()
        return verification
    verification.status, verification.error = "verifying", None
    db.session.commit()
    return verification


def _run(actor: Operator, verification_id: int, mapping: DealMapping, choice: MemberChoice, session_id: int | None,
         transport=None, retrying: bool = False) -> VoucherVerification:
    """Steps (b) and (c) for a verification in 'verifying'."""
    verification = db.session.get(VoucherVerification, verification_id, populate_existing=True)
    voucher = db.session.get(Voucher, verification.voucher_id, populate_existing=True)
    product = mapping.product
    # (b) the platform
    try:
        found = None
        if voucher.platform == "douyin" and retrying and voucher.encrypted_code:
            found = _douyin_lookup(actor, voucher, verification, transport)
        verify_id, certificate_id = found or _platform_verify(actor, voucher, verification, transport)
    except PlatformUnavailable as exc:
        from app.providers.douyin import OutcomeUnknown

        if voucher.platform == "meituan" or isinstance(exc, OutcomeUnknown):
            return _finish(verification.id, "unknown", _("%(why)s The voucher may or may not have been verified on "
                                                         "the platform; nothing was granted. Retry to find out.",
                                                         why=exc.message))
        return _finish(verification.id, "failed", str(exc.message))
    except VoucherError as exc:
        if isinstance(exc, VoucherAlreadyUsed):
            stale = db.session.get(Voucher, voucher.id)
            stale.uses_left, stale.status = 0, "used"
        return _finish(verification.id, "failed", str(exc.message))
    except DeskError as exc:
        return _finish(verification.id, "failed", exc.message)

    # (c) the grant, in the transaction that records the verification
    source_ref = f"voucher:{verification.request_id}"
    try:
        member = _member_for(actor, choice, product)
        member_id = member.id
        _stage_verified(actor, voucher.id, verification.id, member, verify_id, certificate_id)
        granted = gym.fulfil(member, product, quantity=mapping.quantity * verification.count, source_ref=source_ref,
                             operator_id=actor.id, session_id=session_id, source=voucher.platform,
                             price_fen=verification.amount_fen)
    except Exception as exc:  # noqa: BLE001 - every refusal of the grant is compensated on the platform
        db.session.rollback()
        why = exc.message if isinstance(exc, DeskError) else str(exc)
        problem = _compensate(actor, voucher, verify_id, certificate_id, transport)
        if problem is None:
            message = _("Not granted: %(why)s The verification was cancelled on the platform; the voucher is "
                        "still unused.", why=why)
        else:
            message = _("Not granted: %(why)s Cancelling the verification on the platform failed too (%(problem)s): "
                        "ask a manager to undo it on the platform.", why=why, problem=problem)
        failed = _lock_verification(verification.id)
        failed.platform_verify_id, failed.certificate_id = verify_id, certificate_id
        db.session.commit()
        return _finish(verification.id, "failed", message)
    verification = _lock_verification(verification.id)
    if verification.status != "verified":  # fulfil replayed an earlier grant and rolled our staging back
        db.session.rollback()
        member = db.session.get(Member, member_id)
        _stage_verified(actor, voucher.id, verification.id, member, verify_id, certificate_id)
        verification = _lock_verification(verification.id)
    verification.granted = _grant_summary(granted)
    db.session.commit()
    return verification


# --- undo ----------------------------------------------------------------------------------------

def _dry_run_reversal(source_ref: str) -> None:
    """Raise ReversalRefused when the gym cannot take back what the reference granted; changes nothing."""
    grant = db.session.execute(select(GymGrant).where(GymGrant.source_ref == source_ref)).scalar_one_or_none()
    if grant is None:
        db.session.rollback()
        raise NotUndoable(_("Nothing was granted for this verification."))
    try:
        if grant.status == "granted":
            gym._REVERSERS[grant.kind](grant, None)  # noqa: SLF001 - the same rules as reverse(), rolled back
    finally:
        db.session.rollback()


def undo(actor: Operator, verification_id: int, reason: str, transport=None) -> VoucherVerification:
    """Cancel a verification on the platform and take back what it granted (permission checked by the view)."""
    reason = (reason or "").strip()
    if not reason:
        raise DeskError(_("Say why the verification is undone."))
    if len(reason) > 200:
        raise DeskError(_("The reason may have at most %(n)s characters.", n=200))
    verification = get_verification(actor, verification_id)
    if verification.status != "verified":
        raise NotUndoable(_("Only a verified voucher can be undone."))
    source_ref = f"voucher:{verification.request_id}"
    try:
        _dry_run_reversal(source_ref)
    except gym.GymError as exc:
        raise NotUndoable(_("The gym cannot take back what was granted: %(why)s The verification was not undone.",
                            why=str(exc))) from None

    voucher = _lock_voucher(actor, verification.voucher_id)
    verification = _lock_verification(verification.id)  # held until the end: one undo at a time
    if verification.status != "verified":
        db.session.rollback()
        raise NotUndoable(_("Only a verified voucher can be undone."))
    later = db.session.execute(select(VoucherVerification.id).where(
        VoucherVerification.voucher_id == voucher.id, VoucherVerification.status == "verified",
        VoucherVerification.id > verification.id)).first()
    if later is not None:
        db.session.rollback()
        raise NotUndoable(_("A later verification of this voucher must be undone first."))

    problem = None
    account = account_for(actor.org, voucher.platform)
    client = client_for(account, transport)
    try:
        if voucher.platform == "meituan":
            client.reverse_consume(voucher.code, voucher.deal_id, account.store_ref, actor.username)
        else:
            client.cancel(verification.platform_verify_id, verification.certificate_id)
    except VoucherError as exc:
        problem = exc
    finally:
        client.close()
    if problem is not None:
        db.session.rollback()
        raise NotUndoable(str(problem.message))

    before = {"status": verification.status, "uses_left": voucher.uses_left}
    voucher.uses_left = min(voucher.uses_left + verification.count, voucher.uses_total)
    voucher.status = "unused" if voucher.uses_left == voucher.uses_total else "partly_used"
    verification.status, verification.undone_at = "undone", utcnow()
    verification.undone_by, verification.undo_reason = actor.id, reason
    db.session.flush()
    _audit(actor, "voucher.undo", verification.id, verification.org_id, before=before,
           after={"status": "undone", "uses_left": voucher.uses_left, "reason": reason,
                        "platform": voucher.platform, "code": voucher.code})
    try:
        reversed_ = gym.reverse(source_ref, actor.id)  # commits the staged changes with the reversal
    except gym.GymError as exc:
        # Used up in the moment between the dry run and now: the platform has already undone it.
        db.session.rollback()
        flagged = _lock_verification(verification_id)
        flagged.error = _("Undone on the platform, but the gym refused to take back the grant: %(why)s",
                          why=str(exc))[:500]
        db.session.commit()
        raise NotUndoable(flagged.error) from None
    verification = _lock_verification(verification_id)
    granted = dict(verification.granted or {})
    granted["reversal"] = reversed_.summary
    verification.granted = granted
    db.session.commit()
    return verification


# --- queries -------------------------------------------------------------------------------------

def get_verification(actor: Operator, verification_id: int) -> VoucherVerification:
    """A verification the actor may see (DeskError when missing or another organisation's)."""
    verification = db.session.execute(scoped(VoucherVerification, actor).where(
        VoucherVerification.id == verification_id)).scalar_one_or_none()
    if verification is None:
        raise DeskError(_("No such verification."))
    return verification


def recent(actor: Operator, limit: int = 100) -> list[VoucherVerification]:
    """Today's verifications at the desk's organisation, newest first."""
    return list(db.session.execute(scoped(VoucherVerification, actor).where(
        VoucherVerification.org_id == actor.org_id,
        VoucherVerification.created_at >= local_day_start(business_today()))
        .order_by(VoucherVerification.id.desc()).limit(limit)).scalars())

