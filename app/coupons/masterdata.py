"""Master data of the joint-marketing line: institutions (报名机构), partner banks (关联银行) and
position numbers (头寸编号).

This module owns their rules: codes of exactly 8 digits, unique; bank standard codes in capital
letters; one partner bank per bank organisation; position numbers of exactly 23 digits, a
duplicate being a conflict; contact phones in a mainland format. It also owns the look-ups the
type-ahead pickers use (normal / available rows only) and the list queries of the screens.
Master data is the platform's reference data, not a tenant's: it carries no `org_id` (a partner
bank names the organisation its operators sign in to). Every change writes an audit event with
the fields before and after.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Mapping

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError

from app.core import audit
from app.core.listing import ListParams
from app.coupons.models import INSTITUTION_KINDS, MASTER_STATUSES, Institution, PartnerBank, PositionNumber
from app.extensions import db
from app.orgs.models import Organisation

CODE = re.compile(r"\d{8}")
POSITION_NUMBER = re.compile(r"\d{23}")
STANDARD_CODE = re.compile(r"[A-Z]{2,20}")
MOBILE = re.compile(r"1[3-9]\d{9}")
LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}(-\d{1,6})?")  # 021-68881234, 0571-8888888-123
SERVICE_LINE = re.compile(r"[48]00-?\d{3}-?\d{4}")  # 400-820-8820
NAME_MAX = 100
CONTACT_NAME_MAX = 50
NOTE_MAX = 200
PICKER_LIMIT = 20
BULK_MAX_LINES = 1000
POSITION_STATUSES = ("available", "unavailable")

KIND_LABELS = {
    "state_owned": _l("State-owned bank"),
    "joint_stock": _l("Joint-stock bank"),
    "commercial": _l("City commercial bank"),
    "local": _l("Local bank"),
}
STATUS_LABELS = {"normal": _l("Active"), "disabled": _l("Disabled")}
POSITION_STATUS_LABELS = {"available": _l("Available"), "unavailable": _l("Unavailable")}

audit.ACTION_LABELS.update({
    "institution.create": _l("Added an institution"),
    "institution.update": _l("Edited an institution"),
    "institution.disable": _l("Disabled an institution"),
    "institution.enable": _l("Enabled an institution"),
    "institution.export": _l("Exported institutions"),
    "partner_bank.create": _l("Added a bank"),
    "partner_bank.update": _l("Edited a bank"),
    "partner_bank.disable": _l("Disabled a bank"),
    "partner_bank.enable": _l("Enabled a bank"),
    "partner_bank.export": _l("Exported banks"),
    "position_number.create": _l("Added a position number"),
    "position_number.update": _l("Edited a position number"),
    "position_number.disable": _l("Made a position number unavailable"),
    "position_number.enable": _l("Made a position number available"),
    "position_number.export": _l("Exported position numbers"),
})


class MasterDataError(ValueError):
    """A change the rules refuse. `field` names the form field; `conflict` marks a duplicate
    (the screens answer it with 409 rather than 422)."""

    def __init__(self, message: str, field: str = "code", conflict: bool = False):
        super().__init__(message)
        self.field = field
        self.conflict = conflict


# --- shared checks ----------------------------------------------------------------------------

def clean_code(raw: str | None) -> str:
    """An institution or bank code: exactly 8 digits."""
    code = (raw or "").strip()
    if not code:
        raise MasterDataError(_("Enter the 8-digit code."))
    if not CODE.fullmatch(code):
        raise MasterDataError(_("The code must be exactly 8 digits, e.g. 10000001."))
    return code


def clean_phone(raw: str | None) -> str | None:
    """A contact phone: a mainland mobile, a landline with its area code, or a 400/800 number."""
    phone = re.sub(r"[\s()]", "", raw or "")
    if phone.startswith("+86"):
        phone = phone[3:]
    if not phone:
        return None
    if not (MOBILE.fullmatch(phone) or LANDLINE.fullmatch(phone) or SERVICE_LINE.fullmatch(phone)):
        raise MasterDataError(_("Enter a mobile number (13812345678), a landline with its area code "
                                "(021-68881234) or a 400/800 number."), "contact_phone")
    return phone


def _clean_text(raw: str | None, limit: int, field: str, label: str, required: bool = False) -> str | None:
    value = (raw or "").strip()
    if not value:
        if required:
            raise MasterDataError(_("Enter the %(label)s.", label=label), field)
        return None
    if len(value) > limit:
        raise MasterDataError(_("The %(label)s may have at most %(n)s characters.", label=label, n=limit), field)
    return value


@contextmanager
def _refusing_duplicates(errors: Mapping[str, MasterDataError]) -> Iterator[None]:
    """Write and commit inside. A concurrent writer that passed our check first hits the unique
    constraint; the person then sees the same message as after the check."""
    try:
        yield
    except IntegrityError as exc:
        db.session.rollback()
        for constraint, error in errors.items():
            if constraint in str(exc.orig):
                raise error from exc
        raise


def _taken(column, value: str | int, exclude_id: int | None = None) -> bool:
    stmt = select(column.table.c.id).where(column == value)
    if exclude_id is not None:
        stmt = stmt.where(column.table.c.id != exclude_id)
    return db.session.execute(stmt.limit(1)).first() is not None


# --- institutions and banks -------------------------------------------------------------------

@dataclass
class PartyDetails:
    """What an operator says about an institution, or (with `standard_code` and `org_id`) a bank."""

    code: str
    name: str
    kind: str
    contact_name: str | None = None
    contact_phone: str | None = None
    standard_code: str | None = None
    org_id: int | None = None

    def cleaned(self) -> "PartyDetails":
        if self.kind not in INSTITUTION_KINDS:
            raise MasterDataError(_("Choose a type from the list."), "kind")
        return replace(self, code=clean_code(self.code),
                       name=_clean_text(self.name, NAME_MAX, "name", _("name"), required=True),
                       contact_name=_clean_text(self.contact_name, CONTACT_NAME_MAX, "contact_name",
                                                _("contact person")),
                       contact_phone=clean_phone(self.contact_phone))


PARTY_FIELDS = ("code", "name", "kind", "contact_name", "contact_phone", "status")
BANK_FIELDS = PARTY_FIELDS + ("standard_code", "org_id")


def code_taken_error(model: type) -> MasterDataError:
    what = _("an institution") if model is Institution else _("a bank")
    return MasterDataError(_("This code is already used by %(what)s. Codes must be unique.", what=what), "code",
                           conflict=True)


def check_code(model: type, raw: str | None, exclude_id: int | None = None) -> str:
    """The cleaned code if it is well formed and not used by another row of `model`."""
    code = clean_code(raw)
    if _taken(model.code, code, exclude_id):
        raise code_taken_error(model)
    return code


def _bank_org_error() -> MasterDataError:
    return MasterDataError(_("This organisation already has a bank in the master data."), "org_id", conflict=True)


def _clean_bank(details: PartyDetails, org: Organisation | None, bank_id: int | None) -> PartyDetails:
    standard = (details.standard_code or "").strip().upper() or None
    if standard and not STANDARD_CODE.fullmatch(standard):
        raise MasterDataError(_("The standard code is 2 to 20 letters, e.g. ICBC."), "standard_code")
    if org is None:
        raise MasterDataError(_("Choose the bank's organisation."), "org_id")
    if org.kind != "bank":
        raise MasterDataError(_("Choose an organisation of the kind “bank”."), "org_id")
    if _taken(PartnerBank.org_id, org.id, bank_id):
        raise _bank_org_error()
    return replace(details, standard_code=standard, org_id=org.id)


def _apply(row, details: PartyDetails, fields: tuple[str, ...]) -> None:
    for name in fields:
        if name != "status":
            setattr(row, name, getattr(details, name))


def _duplicate_errors(model: type) -> dict[str, MasterDataError]:
    errors = {f"uq_{model.__tablename__}_code": code_taken_error(model)}
    if model is PartnerBank:
        errors["uq_partner_banks_org_id"] = _bank_org_error()
    return errors


def _object_type(model: type) -> str:
    return {Institution: "institution", PartnerBank: "partner_bank", PositionNumber: "position_number"}[model]


def create_party(model: type, details: PartyDetails, org: Organisation | None = None):
    """Add an institution (`model=Institution`) or a bank (`model=PartnerBank`, with its organisation)."""
    details = details.cleaned()
    details = replace(details, code=check_code(model, details.code))
    fields = PARTY_FIELDS
    if model is PartnerBank:
        details, fields = _clean_bank(details, org, None), BANK_FIELDS
    row = model(status="normal")
    _apply(row, details, fields)
    with _refusing_duplicates(_duplicate_errors(model)):
        db.session.add(row)
        db.session.flush()
        audit.record(f"{_object_type(model)}.create", _object_type(model), row.id,
                     after=audit.snapshot(row, fields))
        db.session.commit()
    return row


def update_party(row, details: PartyDetails, org: Organisation | None = None):
    """Change an institution or a bank; only the fields that changed reach the audit trail."""
    model = type(row)
    fields = BANK_FIELDS if model is PartnerBank else PARTY_FIELDS
    details = details.cleaned()
    details = replace(details, code=check_code(model, details.code, row.id))
    if model is PartnerBank:
        details = _clean_bank(details, org, row.id)
    before = audit.snapshot(row, fields)
    _apply(row, details, fields)
    old, new = audit.changed(before, audit.snapshot(row, fields))
    with _refusing_duplicates(_duplicate_errors(model)):
        if new:
            audit.record(f"{_object_type(model)}.update", _object_type(model), row.id, before=old, after=new)
        db.session.commit()
    return row


def set_status(row, status: str):
    """Disable or enable an institution or bank (normal / disabled), or make a position number
    available / unavailable; audited, and a no-op when nothing changes."""
    model = type(row)
    allowed = POSITION_STATUSES if model is PositionNumber else MASTER_STATUSES
    if status not in allowed:
        raise MasterDataError(_("Unknown status."), "status")
    action = "enable" if status in ("normal", "available") else "disable"
    if audit.change_status(row, _object_type(model), status, f"{_object_type(model)}.{action}", None):
        db.session.commit()
    return row


def _party_search(model: type, q: str):
    """Name contains `q`, or code starts with it (master data holds thousands of rows, not millions)."""
    return or_(model.name.icontains(q, autoescape=True), model.code.startswith(q, autoescape=True))


def parties_matching(model: type, params: ListParams) -> Select:
    """The institutions or banks of a list page: search box (name or code), type and status filters."""
    stmt = select(model)
    if params.q:
        stmt = stmt.where(_party_search(model, params.q))
    if params.filters.get("kind") in INSTITUTION_KINDS:
        stmt = stmt.where(model.kind == params.filters["kind"])
    if params.filters.get("status") in MASTER_STATUSES:
        stmt = stmt.where(model.status == params.filters["status"])
    return stmt


def pickable_parties(model: type, q: str, within: Select | None = None, limit: int = PICKER_LIMIT) -> list:
    """What a type-ahead picker offers: normal rows whose name or code matches, codes first.
    `within` narrows the rows (the web layer passes the banks an operator's tenancy allows)."""
    stmt = (select(model) if within is None else within).where(model.status == "normal")
    q = (q or "").strip()[:100]
    if q:
        stmt = stmt.where(_party_search(model, q))
    return list(db.session.execute(stmt.order_by(model.code).limit(limit)).scalars())


# --- position numbers -------------------------------------------------------------------------

def clean_position_number(raw: str | None) -> str:
    number = re.sub(r"\s", "", raw or "")
    if not number:
        raise MasterDataError(_("Enter the 23-digit position number."), "number")
    if not POSITION_NUMBER.fullmatch(number):
        raise MasterDataError(_("A position number is exactly 23 digits (%(n)s given).", n=len(number))
                              if number.isdigit() else _("A position number has digits only, exactly 23 of them."),
                              "number")
    return number


def position_taken_error(number: str) -> MasterDataError:
    return MasterDataError(_("Position number %(number)s already exists.", number=number), "number", conflict=True)


def add_position_number(raw: str | None, note: str | None = None) -> PositionNumber:
    """Add one position number (available); a number already there is a conflict."""
    number = clean_position_number(raw)
    note = _clean_text(note, NOTE_MAX, "note", _("note"))
    if _taken(PositionNumber.number, number):
        raise position_taken_error(number)
    row = PositionNumber(number=number, note=note, status="available")
    with _refusing_duplicates({"uq_position_numbers_number": position_taken_error(number)}):
        db.session.add(row)
        db.session.flush()
        audit.record("position_number.create", "position_number", row.id,
                     after=audit.snapshot(row, ("number", "note", "status")))
        db.session.commit()
    return row


def update_position_note(row: PositionNumber, note: str | None) -> PositionNumber:
    """The number itself never changes (activities refer to it); only its note does."""
    note = _clean_text(note, NOTE_MAX, "note", _("note"))
    if note != row.note:
        audit.record("position_number.update", "position_number", row.id, before={"note": row.note},
                     after={"note": note})
        row.note = note
        db.session.commit()
    return row


@dataclass(frozen=True)
class LineResult:
    """What became of one pasted line: added, or why not."""

    line_no: int
    text: str
    outcome: str  # added | exists | repeated | invalid
    message: str

    @property
    def added(self) -> bool:
        return self.outcome == "added"


def add_position_numbers(pasted: str, note: str | None = None) -> list[LineResult]:
    """Add many numbers pasted one per line; blank lines are skipped. Every line gets a result.

    The valid new numbers are inserted in one transaction; a number inserted concurrently by
    someone else between our check and our insert fails the whole batch with a clear message
    rather than a half-written one (the person pastes again and sees it as "exists").
    """
    lines = [(n, text.strip()) for n, text in enumerate((pasted or "").splitlines(), 1) if text.strip()]
    if not lines:
        raise MasterDataError(_("Paste at least one position number, one per line."), "numbers")
    if len(lines) > BULK_MAX_LINES:
        raise MasterDataError(_("Paste at most %(n)s numbers at a time.", n=BULK_MAX_LINES), "numbers")
    note = _clean_text(note, NOTE_MAX, "note", _("note"))
    cleaned: dict[int, str] = {}
    results: dict[int, LineResult] = {}
    for line_no, text in lines:
        try:
            cleaned[line_no] = clean_position_number(text)
        except MasterDataError as exc:
            results[line_no] = LineResult(line_no, text, "invalid", str(exc))
    existing = set(db.session.execute(
        select(PositionNumber.number).where(PositionNumber.number.in_(set(cleaned.values())))).scalars())
    texts = dict(lines)
    seen: dict[str, int] = {}
    to_add: list[PositionNumber] = []
    for line_no, number in cleaned.items():
        text = texts[line_no]
        if number in existing:
            results[line_no] = LineResult(line_no, text, "exists", _("Already in the master data."))
        elif number in seen:
            results[line_no] = LineResult(line_no, text, "repeated",
                                          _("Same as line %(n)s.", n=seen[number]))
        else:
            seen[number] = line_no
            to_add.append(PositionNumber(number=number, note=note, status="available"))
            results[line_no] = LineResult(line_no, text, "added", _("Added."))
    if to_add:
        conflict = MasterDataError(_("Someone added some of these numbers at the same moment. Nothing was "
                                     "added; paste the list again."), "numbers", conflict=True)
        with _refusing_duplicates({"uq_position_numbers_number": conflict}):
            db.session.add_all(to_add)
            db.session.flush()
            for row in to_add:
                audit.record("position_number.create", "position_number", row.id,
                             after=audit.snapshot(row, ("number", "note", "status")))
            db.session.commit()
    return [results[line_no] for line_no, _text in lines]


def positions_matching(params: ListParams) -> Select:
    """Position numbers of the list page: the search box matches the start or the end of a number."""
    stmt = select(PositionNumber)
    q = re.sub(r"\s", "", params.q)
    if q:
        stmt = stmt.where(or_(PositionNumber.number.startswith(q, autoescape=True),
                              PositionNumber.number.endswith(q, autoescape=True),
                              PositionNumber.note.icontains(q, autoescape=True)))
    if params.filters.get("status") in POSITION_STATUSES:
        stmt = stmt.where(PositionNumber.status == params.filters["status"])
    return stmt


def pickable_positions(q: str, limit: int = PICKER_LIMIT) -> list[PositionNumber]:
    """Available position numbers starting (or ending) with the digits typed."""
    stmt = select(PositionNumber).where(PositionNumber.status == "available")
    q = re.sub(r"\s", "", q or "")[:23]
    if q:
        stmt = stmt.where(or_(PositionNumber.number.startswith(q, autoescape=True),
                              PositionNumber.number.endswith(q, autoescape=True)))
    return list(db.session.execute(stmt.order_by(PositionNumber.number).limit(limit)).scalars())


# --- exports ----------------------------------------------------------------------------------

def record_export(model: type, fmt: str, filters: Mapping[str, str], rows: int) -> None:
    """Every export of master data is itself audited: who took which slice, and how many rows."""
    audit.record(f"{_object_type(model)}.export", _object_type(model), None,
                 after={"format": fmt, "filters": dict(filters), "rows": rows})
    db.session.commit()
