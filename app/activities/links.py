"""The institutions enrolled in (报名机构) and the banks linked to (关联银行) a theme activity: the two
link lists of its view, with adding from the master data, deleting one or many, and importing
from an Excel template.

One set of functions serves both lists, configured by `LinkKind`. The rows carry no `org_id`:
callers pass a theme activity fetched through the tenancy helper. An expired theme activity's
lists are view-only.

"Linked data" (a row that cannot be deleted):
- an institution is the theme activity's own enrolling institution, or a coupon activity of the
  theme names it as its institution;
- a bank is the theme activity's own bank, or a coupon activity of the theme belongs to the
  bank's organisation.

Institutions in normal use may be added by anyone managing the theme; a bank only by operators
who see its organisation (a bank's operators, their own bank), as in the master-data pickers.
An import reads the first sheet's first column (8-digit codes) from the second row on, at most
1,000 rows, and answers each row: added, already in the list, unknown, disabled, or not a code.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from sqlalchemy import Select, select

from app.activities.models import ThemeActivity, ThemeActivityBank, ThemeActivityInstitution
from app.activities.services import is_view_only, lock_theme, operator_names
from app.core import audit
from app.core.tenancy import scoped
from app.core.timeutil import utcnow
from app.coupons.models import CouponActivity, Institution, PartnerBank
from app.extensions import db

if TYPE_CHECKING:
    from app.auth.models import Operator

IMPORT_MAX_ROWS = 1000
IMPORT_MAX_BYTES = 2 * 1024 * 1024
CODE = re.compile(r"\d{8}")


@dataclass(frozen=True)
class LinkKind:
    key: str  # the URL segment: "institutions" | "banks"
    link_model: type
    party_model: type
    party_column: str  # the link's column naming the master-data row
    time_column: str
    by_column: str
    theme_column: str  # the theme activity's own column naming its institution / bank
    action: str  # the audit actions are theme_activity.<link|unlink|import>_<action>
    template_name: str
    code_header: Any
    name_header: Any

    def party_id(self, link) -> int:
        return getattr(link, self.party_column)


KINDS = {
    "institutions": LinkKind("institutions", ThemeActivityInstitution, Institution, "institution_id", "enrolled_at",
                             "enrolled_by", "institution_id", "institution", "主题活动报名机构导入模板",
                             _l("Institution code (8 digits)"), _l("Institution name (for reference only)")),
    "banks": LinkKind("banks", ThemeActivityBank, PartnerBank, "partner_bank_id", "linked_at", "linked_by",
                      "partner_bank_id", "bank", "主题活动关联银行导入模板",
                      _l("Bank code (8 digits)"), _l("Bank name (for reference only)")),
}
# The import's template names the audit action in the plural.
_IMPORT_ACTIONS = {"institutions": "theme_activity.import_institutions", "banks": "theme_activity.import_banks"}


class LinkError(ValueError):
    """A change of a link list the rules refuse; the message is for the person."""


@dataclass
class LinkRow:
    link: Any
    party: Any
    operator: str
    locked_reason: str | None  # why it cannot be deleted (it has linked data), or None


@dataclass
class RemoveResult:
    removed: list[str] = field(default_factory=list)  # codes
    kept: list[tuple[str, str]] = field(default_factory=list)  # (code, why)


@dataclass
class ImportRow:
    row: int
    code: str
    outcome: str  # added | already | unknown | disabled | invalid | repeated
    name: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("added", "already")


# --- reading the lists -----------------------------------------------------------------------------

def _links(kind: LinkKind, theme: ThemeActivity) -> Select:
    return select(kind.link_model).where(kind.link_model.theme_activity_id == theme.id)


def locked_reasons(kind: LinkKind, theme: ThemeActivity) -> dict[int, str]:
    """Master-data ids of the list that have linked data, with the reason (see the module docstring)."""
    reasons: dict[int, str] = {}
    own = getattr(theme, kind.theme_column)
    coupons = db.session.execute(select(CouponActivity.code, CouponActivity.institution_id, CouponActivity.org_id)
                                 .where(CouponActivity.theme_activity_id == theme.id)
                                 .order_by(CouponActivity.id)).all()
    if kind.key == "institutions":
        for code, institution_id, _org in coupons:
            if institution_id:
                reasons.setdefault(institution_id, _("Coupon activity %(code)s is enrolled through it.", code=code))
        if own:
            reasons[own] = _("It is the theme activity's enrolling institution.")
        return reasons
    banks_by_org = dict(db.session.execute(select(PartnerBank.org_id, PartnerBank.id).where(
        PartnerBank.org_id.in_({org for _c, _i, org in coupons}))).all()) if coupons else {}
    for code, _institution, org_id in coupons:
        if org_id in banks_by_org:
            reasons.setdefault(banks_by_org[org_id], _("Coupon activity %(code)s belongs to it.", code=code))
    if own:
        reasons[own] = _("It is the theme activity's bank.")
    return reasons


def list_links(kind: LinkKind, theme: ThemeActivity) -> list[LinkRow]:
    """The list, newest first, with each row's master data, who added it and whether it may be deleted."""
    link_time = getattr(kind.link_model, kind.time_column)
    rows = db.session.execute(
        select(kind.link_model, kind.party_model)
        .join(kind.party_model, kind.party_model.id == getattr(kind.link_model, kind.party_column))
        .where(kind.link_model.theme_activity_id == theme.id)
        .order_by(link_time.desc(), kind.link_model.id.desc())).all()
    names = operator_names(getattr(link, kind.by_column) for link, _party in rows)
    reasons = locked_reasons(kind, theme)
    return [LinkRow(link, party, names.get(getattr(link, kind.by_column), ""), reasons.get(party.id))
            for link, party in rows]


# --- adding and removing ---------------------------------------------------------------------------

def _visible(kind: LinkKind, actor: "Operator") -> Select:
    """Master-data rows the actor may know of: every institution; the banks whose organisation they see."""
    return scoped(PartnerBank, actor) if kind.party_model is PartnerBank else select(Institution)


def pickable(kind: LinkKind, actor: "Operator") -> Select:
    """Master-data rows the actor may add: those they may know of, in normal use."""
    return _visible(kind, actor).where(kind.party_model.status == "normal")


def _refuse_if_view_only(theme: ThemeActivity, now: datetime) -> None:
    if is_view_only(theme, now):
        db.session.rollback()
        raise LinkError(_("This theme activity has expired: its lists can only be viewed."))


def _linked_ids(kind: LinkKind, theme: ThemeActivity) -> set[int]:
    column = getattr(kind.link_model, kind.party_column)
    return set(db.session.execute(select(column).where(kind.link_model.theme_activity_id == theme.id)).scalars())


def _new_link(kind: LinkKind, theme: ThemeActivity, party_id: int, actor: "Operator", now: datetime):
    return kind.link_model(theme_activity_id=theme.id, **{kind.party_column: party_id, kind.time_column: now,
                                                          kind.by_column: actor.id})


def _party_record(party) -> dict[str, str]:
    return {"code": party.code, "name": party.name}


def add_link(actor: "Operator", kind: LinkKind, theme: ThemeActivity, party_id: int | None,
             now: datetime | None = None):
    """Add one institution / bank from the master data to the theme's list (audited); LinkError if refused."""
    now = now or utcnow()
    lock_theme(theme)  # one change of a theme's lists at a time: no duplicate slips in
    _refuse_if_view_only(theme, now)
    party = db.session.execute(pickable(kind, actor).where(kind.party_model.id == party_id)).scalar_one_or_none() \
        if party_id else None
    if party is None:
        db.session.rollback()
        raise LinkError(_("Choose one from the list (only rows in normal use can be added)."))
    if party.id in _linked_ids(kind, theme):
        db.session.rollback()
        raise LinkError(_("%(name)s is already in the list.", name=party.name))
    db.session.add(_new_link(kind, theme, party.id, actor, now))
    audit.record(f"theme_activity.link_{kind.action}", "theme_activity", theme.id, after=_party_record(party),
                 org_id=theme.org_id)
    db.session.commit()
    return party


def remove_links(actor: "Operator", kind: LinkKind, theme: ThemeActivity, link_ids: Iterable[int],
                 now: datetime | None = None) -> RemoveResult:
    """Delete the theme's list rows among `link_ids`, except those with linked data (each deletion audited)."""
    now = now or utcnow()
    lock_theme(theme)
    _refuse_if_view_only(theme, now)
    wanted = {int(i) for i in link_ids}
    rows = db.session.execute(
        select(kind.link_model, kind.party_model)
        .join(kind.party_model, kind.party_model.id == getattr(kind.link_model, kind.party_column))
        .where(kind.link_model.theme_activity_id == theme.id, kind.link_model.id.in_(wanted or {0}))
        .order_by(kind.link_model.id)).all()
    reasons = locked_reasons(kind, theme)
    result = RemoveResult()
    for link, party in rows:
        if party.id in reasons:
            result.kept.append((party.code, reasons[party.id]))
            continue
        db.session.delete(link)
        audit.record(f"theme_activity.unlink_{kind.action}", "theme_activity", theme.id,
                     before=_party_record(party), org_id=theme.org_id)
        result.removed.append(party.code)
    db.session.commit()
    return result


# --- the Excel template and import ------------------------------------------------------------------

class ImportFileError(ValueError):
    """The uploaded file cannot be read as the template; the message is for the person."""


def template_workbook(kind: LinkKind) -> bytes:
    """The import template: a header row and the code column formatted as text (so 0-led codes survive)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "import"
    sheet.append([str(kind.code_header), str(kind.name_header)])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.column_dimensions["A"].width = 28
    sheet.column_dimensions["B"].width = 40
    sheet.column_dimensions["A"].number_format = "@"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):  # a code typed as a number lost its leading zeros
        return str(value).zfill(8)
    return str(value).strip()


def read_codes(stream: BinaryIO) -> list[tuple[int, str]]:
    """(row number, code as written) of the first sheet's first column, below the header; blank rows skipped."""
    data = stream.read(IMPORT_MAX_BYTES + 1)
    if not data:
        raise ImportFileError(_("Choose the filled-in template (.xlsx)."))
    if len(data) > IMPORT_MAX_BYTES:
        raise ImportFileError(_("The file may be at most 2 MB."))
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise ImportFileError(_("The file is not an Excel workbook (.xlsx). Download the template and fill it in.")) from exc
    codes = []
    for number, row in enumerate(workbook.worksheets[0].iter_rows(min_row=2, max_col=1, values_only=True), start=2):
        text = _cell_text(row[0] if row else None)
        if text:
            codes.append((number, text))
        if len(codes) > IMPORT_MAX_ROWS:
            raise ImportFileError(_("The file has more than %(n)s codes. Split it and import each part.",
                                    n=IMPORT_MAX_ROWS))
    workbook.close()
    if not codes:
        raise ImportFileError(_("The file has no codes below the header row."))
    return codes


def import_links(actor: "Operator", kind: LinkKind, theme: ThemeActivity, codes: list[tuple[int, str]],
                 now: datetime | None = None) -> list[ImportRow]:
    """Add the rows named by code (one audit event lists what was added); each row's outcome."""
    now = now or utcnow()
    lock_theme(theme)
    _refuse_if_view_only(theme, now)
    valid = {code for _row, code in codes if CODE.fullmatch(code)}
    known = {p.code: p for p in db.session.execute(select(kind.party_model).where(kind.party_model.code.in_(valid))).scalars()}
    visible = set(db.session.execute(_visible(kind, actor).where(kind.party_model.code.in_(valid))
                                     .with_only_columns(kind.party_model.id)).scalars())
    linked = _linked_ids(kind, theme)
    results, seen, added = [], set(), []
    for row, code in codes:
        party = known.get(code)
        if not CODE.fullmatch(code):
            outcome = "invalid"
        elif code in seen:
            outcome = "repeated"
        elif party is None or party.id not in visible:
            outcome = "unknown"  # a bank the operator may not see is answered as unknown
        elif party.status != "normal":
            outcome = "disabled"
        elif party.id in linked:
            outcome = "already"
        else:
            outcome = "added"
            db.session.add(_new_link(kind, theme, party.id, actor, now))
            linked.add(party.id)
            added.append(code)
        seen.add(code)
        results.append(ImportRow(row, code, outcome, party.name if party is not None and outcome != "unknown" else ""))
    if added:
        audit.record(_IMPORT_ACTIONS[kind.key], "theme_activity", theme.id,
                     after={"added": added, "rows": len(codes)}, org_id=theme.org_id)
    db.session.commit()
    return results
