"""The draw records of a theme activity and the shipping of its gifts (抽奖记录 / 礼品发货); no `request`.

- the draws, filtered (draw no., one customer's exact openid found by its keyed hash, the prize
  awarded, the result, channel, fulfilment status, Asia/Shanghai days drawn), sorted and paged;
  a search by openid is a query of personal data and writes an audit event (the openid masked);
- the gifts to ship, in three tabs by the draw's fulfilment status: waiting for the winner's
  address, to ship (address given), shipped. The recipient, phone and address are shown masked;
  `reveal` gives one delivery's in full and writes an audit event;
- `ship` marks gifts shipped with a tracking number (1–64 letters, digits or '-', starting with a
  letter or digit): the draw is locked, must have its address given, and both the delivery and the
  draw become `shipped` — a second ship of the same gift is refused, never applied twice.
  `ship_lines` does the same for the rows of an uploaded workbook (draw no., tracking no.), one
  outcome per row;
- `retry_fulfilment` hands a failed fulfilment over again through `fulfilment.requeue` (after the
  operator fixed its cause, e.g. enabled the coupon activity);
- the audit events of the exports (the openid masked in what they record).

The reads (a search by openid, an export) are recorded against the draws, not the theme activity
(whose history lists its changes): object type `theme_draw` / `prize_delivery`, the theme's
10-digit id in `after`. Every query goes through `app.core.tenancy.scoped` on top of the theme
activity (fetched by the caller with the tenancy helper), so a draw of another bank is never found.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from openpyxl import load_workbook
from sqlalchemy import ColumnElement, Select, func, select

from app.core import audit, crypto
from app.core.listing import ListParams, Page, apply_sort, paginate
from app.core.tenancy import scoped
from app.core.timeutil import format_local, local_day_range, parse_day, utcnow
from app.coupons.models import CouponIssue, mask_openid
from app.extensions import db

from . import fulfilment
from .draw import OPEN_ID
from .models import ThemeActivity
from .prize_models import DRAW_CHANNELS, FULFILMENT_STATUSES, Prize, PrizeDelivery, ThemeDraw, ThemeParticipant
from .services import operator_names

if TYPE_CHECKING:
    from app.auth.models import Operator

DRAW_FILTERS = ("draw_no", "openid", "prize_id", "result", "channel", "status", "from", "to")
DELIVERY_FILTERS = ("draw_no", "tracking_no", "prize_id", "from", "to")
RESULTS = ("won", "thanks", "fell_back")
TRACKING_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
IMPORT_MAX_BYTES = 2 * 1024 * 1024
IMPORT_MAX_ROWS = 2000

FULFILMENT_LABELS = {"none": _l("Nothing to hand over"), "pending": _l("Being handed over"),
                     "fulfilled": _l("Fulfilled"), "awaiting_address": _l("Waiting for the address"),
                     "address_given": _l("To ship"), "shipped": _l("Shipped"), "failed": _l("Failed")}
FULFILMENT_COLOURS = {"none": "light", "pending": "warning", "fulfilled": "success", "awaiting_address": "info",
                      "address_given": "primary", "shipped": "success", "failed": "danger"}
CHANNEL_LABELS = {"h5": _l("H5 page"), "api": _l("Bank API")}
RESULT_LABELS = {"won": _l("Won a prize"), "thanks": _l("Thanks for taking part"),
                 "fell_back": _l("Fell back (the prize drawn had run out)")}
# The gift tabs: which fulfilment status each shows.
DELIVERY_TABS = {"awaiting": "awaiting_address", "to_ship": "address_given", "shipped": "shipped"}
DELIVERY_TAB_LABELS = {"awaiting": _l("Waiting for the address"), "to_ship": _l("To ship"), "shipped": _l("Shipped")}

audit.ACTION_LABELS.update({
    "theme_draw.search": _l("Searched a customer's draws"),
    "theme_draw.export": _l("Exported draw records"),
    "theme_draw.retry_fulfilment": _l("Retried a prize's fulfilment"),
    "prize_delivery.reveal": _l("Viewed a gift's delivery details"),
    "prize_delivery.ship": _l("Shipped a gift"),
    "prize_delivery.export": _l("Exported the gift shipping list"),
})


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _drawn_between(stmt: Select, filters: dict[str, str]) -> Select:
    start, end = local_day_range(parse_day(filters.get("from")), parse_day(filters.get("to")))
    if start:
        stmt = stmt.where(ThemeDraw.drawn_at >= start)
    if end:
        stmt = stmt.where(ThemeDraw.drawn_at < end)
    return stmt


def _draws_of(actor: "Operator", theme: ThemeActivity, stmt: Select | None = None) -> Select:
    return scoped(ThemeDraw, actor, stmt).where(ThemeDraw.theme_activity_id == theme.id)


def _of_customer(theme: ThemeActivity, open_id: str) -> ColumnElement[bool]:
    """The draws of one customer, by the keyed hash of the whole openid (no partial search: it is encrypted)."""
    participant = select(ThemeParticipant.id).where(ThemeParticipant.theme_activity_id == theme.id,
                                                    ThemeParticipant.openid_hash == crypto.lookup_hash(open_id))
    return ThemeDraw.participant_id.in_(participant)


# --- the draw records ----------------------------------------------------------------------------

DRAW_SORTS = {"drawn_at": ThemeDraw.drawn_at, "draw_no": ThemeDraw.draw_no, "status": ThemeDraw.fulfilment_status}


def draws_matching(actor: "Operator", theme: ThemeActivity, filters: dict[str, str]) -> Select:
    """The theme activity's draws that match the records' filters (unordered)."""
    stmt = _draws_of(actor, theme)
    if filters.get("draw_no"):
        stmt = stmt.where(ThemeDraw.draw_no == filters["draw_no"].strip().upper())
    if filters.get("openid"):
        stmt = stmt.where(_of_customer(theme, filters["openid"].strip()))
    if "prize_id" in filters:
        stmt = stmt.where(ThemeDraw.prize_id == (_int(filters["prize_id"]) or 0))
    result = filters.get("result")
    if result == "won":
        stmt = stmt.where(ThemeDraw.won.is_(True))
    elif result == "thanks":
        stmt = stmt.where(ThemeDraw.won.is_(False))
    elif result == "fell_back":
        stmt = stmt.where(ThemeDraw.picked_prize_id != ThemeDraw.prize_id)
    if filters.get("channel") in DRAW_CHANNELS:
        stmt = stmt.where(ThemeDraw.channel == filters["channel"])
    if filters.get("status") in FULFILMENT_STATUSES:
        stmt = stmt.where(ThemeDraw.fulfilment_status == filters["status"])
    return _drawn_between(stmt, filters)


def sorted_draws(actor: "Operator", theme: ThemeActivity, params: ListParams) -> Select:
    return apply_sort(draws_matching(actor, theme, params.filters), params, DRAW_SORTS, ThemeDraw.id)


def audited_filters(filters: dict[str, str]) -> dict[str, str]:
    """The filters as the audit trail keeps them: an openid only masked."""
    kept = dict(filters)
    if kept.get("openid"):
        kept["openid"] = mask_openid(kept["openid"].strip())
    return kept


def list_draws(actor: "Operator", theme: ThemeActivity, params: ListParams) -> Page:
    """One page of the draws; a search for one customer's draws is written to the audit trail."""
    page = paginate(sorted_draws(actor, theme, params), params)
    if params.filters.get("openid"):
        audit.record("theme_draw.search", "theme_draw", None, after={
            "theme_no": theme.theme_no, "filters": audited_filters(params.filters), "rows": page.total},
            org_id=theme.org_id)
        db.session.commit()
    return page


def invalid_openid(filters: dict[str, str]) -> bool:
    """The openid typed is not one (only a whole openid is found); the page says so."""
    value = filters.get("openid", "").strip()
    return bool(value) and not OPEN_ID.match(value)


@dataclass
class DrawRow:
    draw: ThemeDraw
    picked: Prize | None
    prize: Prize | None
    openid_masked: str
    coupon_issue_no: str | None

    @property
    def fell_back(self) -> bool:
        return self.draw.fell_back


def prizes_of(theme: ThemeActivity) -> dict[int, Prize]:
    """Every prize of the theme activity (the filter's choices and the rows' names), in wheel order."""
    rows = db.session.execute(select(Prize).where(Prize.theme_activity_id == theme.id)
                              .order_by(Prize.sort_order, Prize.id)).scalars()
    return {prize.id: prize for prize in rows}


def _masked_openids(draws: Iterable[ThemeDraw]) -> dict[int, str]:
    ids = {d.participant_id for d in draws}
    if not ids:
        return {}
    return dict(db.session.execute(select(ThemeParticipant.id, ThemeParticipant.openid_masked)
                                   .where(ThemeParticipant.id.in_(ids))).all())


def draw_rows(theme: ThemeActivity, draws: list[ThemeDraw]) -> list[DrawRow]:
    """The draws with what a row shows: the prizes' names, the masked openid, the coupon issue's number."""
    prizes = prizes_of(theme)
    openids = _masked_openids(draws)
    issue_ids = {d.coupon_issue_id for d in draws if d.coupon_issue_id}
    issues = dict(db.session.execute(select(CouponIssue.id, CouponIssue.order_no)
                                     .where(CouponIssue.id.in_(issue_ids))).all()) if issue_ids else {}
    return [DrawRow(d, prizes.get(d.picked_prize_id), prizes.get(d.prize_id), openids.get(d.participant_id, ""),
                    issues.get(d.coupon_issue_id)) for d in draws]


def record_export(what: str, theme: ThemeActivity, filters: dict[str, str], rows: int, **extra: Any) -> None:
    """The audit event of an export (`theme_draw.export` / `prize_delivery.export`), committed."""
    audit.record(what, what.partition(".")[0], None, after={
        "theme_no": theme.theme_no, "filters": audited_filters(filters), "rows": rows, "format": "xlsx", **extra},
        org_id=theme.org_id)
    db.session.commit()


def count(stmt: Select) -> int:
    return db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()


# --- retrying a failed fulfilment ----------------------------------------------------------------

@dataclass
class Outcome:
    """What became of one draw in a ship or retry (or one row of an uploaded workbook)."""

    draw_no: str
    done: bool
    message: str
    row: int | None = None  # the workbook's row number
    tracking_no: str = ""


def retry_fulfilment(actor: "Operator", theme: ThemeActivity, draw_ids: list[int]) -> list[Outcome]:
    """Hand the failed fulfilments of these draws over again (audited, committed); one outcome each."""
    found = dict(db.session.execute(_draws_of(actor, theme, select(ThemeDraw.id, ThemeDraw.draw_no))
                                    .where(ThemeDraw.id.in_(draw_ids)).order_by(ThemeDraw.id)).all())
    outcomes = []
    for draw_id, draw_no in found.items():  # in id order: the row locks are always taken in one order
        try:
            draw, note = fulfilment.requeue(draw_id)
        except fulfilment.NothingToRetry as exc:
            outcomes.append(Outcome(draw_no, False, _("Draw %(no)s has not failed (%(status)s): nothing to retry.",
                                                      no=draw_no, status=FULFILMENT_LABELS.get(exc.status, exc.status))))
            continue
        audit.record("theme_draw.retry_fulfilment", "theme_draw", draw.id,
                     before={"fulfilment_status": "failed", "fulfilment_note": note},
                     after={"fulfilment_status": "pending", "draw_no": draw.draw_no}, org_id=draw.org_id)
        outcomes.append(Outcome(draw_no, True, _("Draw %(no)s is being handed over again.", no=draw_no)))
    db.session.commit()
    return outcomes


# --- the gifts to ship ----------------------------------------------------------------------------

DELIVERY_SORTS = {"drawn_at": ThemeDraw.drawn_at, "draw_no": ThemeDraw.draw_no,
                  "address_at": PrizeDelivery.created_at, "shipped_at": PrizeDelivery.shipped_at}
# The oldest first while waiting (ship in the order addresses came in); the latest shipped first.
DELIVERY_DEFAULT_SORT = {"awaiting": ("drawn_at", "asc"), "to_ship": ("address_at", "asc"),
                         "shipped": ("shipped_at", "desc")}


def deliveries_matching(actor: "Operator", theme: ThemeActivity, tab: str, filters: dict[str, str]) -> Select:
    """The gifts of one tab (its fulfilment status) matching the filters, with their delivery joined."""
    stmt = _draws_of(actor, theme).outerjoin(PrizeDelivery, PrizeDelivery.draw_id == ThemeDraw.id).where(
        ThemeDraw.fulfilment_status == DELIVERY_TABS[tab])
    if filters.get("draw_no"):
        stmt = stmt.where(ThemeDraw.draw_no == filters["draw_no"].strip().upper())
    if filters.get("tracking_no"):
        stmt = stmt.where(PrizeDelivery.tracking_no == filters["tracking_no"].strip())
    if "prize_id" in filters:
        stmt = stmt.where(ThemeDraw.prize_id == (_int(filters["prize_id"]) or 0))
    return _drawn_between(stmt, filters)


def sorted_deliveries(actor: "Operator", theme: ThemeActivity, tab: str, params: ListParams) -> Select:
    return apply_sort(deliveries_matching(actor, theme, tab, params.filters), params, DELIVERY_SORTS, ThemeDraw.id)


def tab_counts(actor: "Operator", theme: ThemeActivity) -> dict[str, int]:
    """How many gifts each tab holds (whatever the filters)."""
    counted = dict(db.session.execute(
        _draws_of(actor, theme, select(ThemeDraw.fulfilment_status, func.count()))
        .where(ThemeDraw.fulfilment_status.in_(DELIVERY_TABS.values())).group_by(ThemeDraw.fulfilment_status)).all())
    return {tab: counted.get(status, 0) for tab, status in DELIVERY_TABS.items()}


def mask_name(name: str) -> str:
    """张三 -> 张*: the family name only."""
    return name[:1] + "*" * min(max(len(name) - 1, 1), 3) if name else ""


def mask_address(address: str) -> str:
    """The first six characters (province and city, as a rule), the rest hidden."""
    return f"{address[:6]}****" if address else ""


@dataclass
class Contact:
    recipient: str
    phone: str
    address: str


@dataclass
class DeliveryRow:
    draw: ThemeDraw
    prize: Prize | None
    delivery: PrizeDelivery | None
    openid_masked: str
    shipped_by: str = ""
    masked: Contact | None = None  # what the list shows (None while no address is given)


def _contact(delivery: PrizeDelivery) -> Contact:
    return Contact(crypto.decrypt(delivery.recipient_enc) or "", crypto.decrypt(delivery.phone_enc) or "",
                   crypto.decrypt(delivery.address_enc) or "")


def mask_contact(contact: Contact) -> Contact:
    return Contact(mask_name(contact.recipient), crypto.mask_phone(contact.phone), mask_address(contact.address))


def delivery_rows(theme: ThemeActivity, draws: list[ThemeDraw], full: bool = False) -> list[DeliveryRow]:
    """The gifts with their delivery, the prize, who shipped them and the contact masked (in full
    with `full`: only for an audited export)."""
    prizes = prizes_of(theme)
    openids = _masked_openids(draws)
    ids = [d.id for d in draws]
    deliveries = {d.draw_id: d for d in db.session.execute(
        select(PrizeDelivery).where(PrizeDelivery.draw_id.in_(ids))).scalars()} if ids else {}
    names = operator_names(d.shipped_by for d in deliveries.values())
    rows = []
    for draw in draws:
        delivery = deliveries.get(draw.id)
        contact = _contact(delivery) if delivery else None
        rows.append(DeliveryRow(draw, prizes.get(draw.prize_id), delivery, openids.get(draw.participant_id, ""),
                                names.get(delivery.shipped_by, "") if delivery else "",
                                (contact if full else mask_contact(contact)) if contact else None))
    return rows


def draw_in(actor: "Operator", theme: ThemeActivity, draw_id: int) -> ThemeDraw | None:
    """One draw of the theme activity (None when it is not one of its draws, or another bank's)."""
    return db.session.execute(_draws_of(actor, theme).where(ThemeDraw.id == draw_id)).scalar_one_or_none()


class DeliveryNotFound(LookupError):
    """No delivery address for this draw in this theme activity (or the draw is another bank's)."""


def reveal(actor: "Operator", theme: ThemeActivity, draw_id: int) -> Contact:
    """One gift's recipient, phone and address in full; the viewing is written to the audit trail."""
    row = db.session.execute(
        _draws_of(actor, theme, select(ThemeDraw.draw_no, PrizeDelivery))
        .join(PrizeDelivery, PrizeDelivery.draw_id == ThemeDraw.id).where(ThemeDraw.id == draw_id)).one_or_none()
    if row is None:
        raise DeliveryNotFound(draw_id)
    draw_no, delivery = row
    audit.record("prize_delivery.reveal", "prize_delivery", delivery.id,
                 after={"draw_no": draw_no, "fields": ["recipient", "phone", "address"]}, org_id=delivery.org_id)
    db.session.commit()
    return _contact(delivery)


# --- shipping -------------------------------------------------------------------------------------

class InvalidTrackingNo(ValueError):
    """The tracking number is not one; the message is for the operator."""


def clean_tracking_no(value: Any) -> str:
    """The tracking number as stored, or InvalidTrackingNo. A number typed into Excel comes back as one."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = "" if value is None else str(value).strip()
    if not text:
        raise InvalidTrackingNo(_("Enter the tracking number."))
    if not TRACKING_NO.match(text):
        raise InvalidTrackingNo(_("A tracking number is 1 to 64 letters, digits or '-', starting with a letter "
                                  "or digit."))
    return text


def _ship_refusal(draw: ThemeDraw | None, label: str, delivery: PrizeDelivery | None) -> str | None:
    if draw is None:
        return _("There is no draw %(no)s in this theme activity.", no=label)
    if draw.fulfilment_status == "shipped" and delivery is not None:
        return _("Draw %(no)s was already shipped on %(when)s with tracking number %(tracking)s.", no=draw.draw_no,
                 when=format_local(delivery.shipped_at), tracking=delivery.tracking_no)
    if draw.fulfilment_status == "awaiting_address":
        return _("Draw %(no)s cannot be shipped yet: the winner has not left a delivery address.", no=draw.draw_no)
    if draw.fulfilment_status != "address_given" or delivery is None:
        return _("Draw %(no)s is not a gift waiting to be shipped.", no=draw.draw_no)
    return None


def _ship(actor: "Operator", theme: ThemeActivity, wanted: list[tuple[int | None, Outcome]],
          now: datetime | None) -> None:
    """Ship each (draw id, its outcome so far) under the draws' row locks, taken in id order; the
    outcomes are filled in; one audit event per gift shipped; committed."""
    now = now or utcnow()
    ids = sorted({draw_id for draw_id, _outcome in wanted if draw_id is not None})
    draws = {d.id: d for d in db.session.execute(
        _draws_of(actor, theme).where(ThemeDraw.id.in_(ids)).order_by(ThemeDraw.id)
        .with_for_update(of=ThemeDraw).execution_options(populate_existing=True)).scalars()} if ids else {}
    deliveries = {d.draw_id: d for d in db.session.execute(
        select(PrizeDelivery).where(PrizeDelivery.draw_id.in_(ids))
        .execution_options(populate_existing=True)).scalars()} if ids else {}
    for draw_id, outcome in wanted:
        draw = draws.get(draw_id)
        delivery = deliveries.get(draw_id)
        refusal = _ship_refusal(draw, outcome.draw_no, delivery)
        if refusal:
            outcome.message = refusal
            continue
        delivery.status, delivery.tracking_no, delivery.shipped_at, delivery.shipped_by = (
            "shipped", outcome.tracking_no, now, actor.id)
        draw.fulfilment_status, draw.fulfilled_at = "shipped", now
        audit.record("prize_delivery.ship", "theme_draw", draw.id, before={"fulfilment_status": "address_given"},
                     after={"fulfilment_status": "shipped", "tracking_no": outcome.tracking_no,
                            "draw_no": draw.draw_no}, org_id=draw.org_id)
        outcome.draw_no, outcome.done = draw.draw_no, True
        outcome.message = _("Draw %(no)s shipped with tracking number %(tracking)s.", no=draw.draw_no,
                            tracking=outcome.tracking_no)
    db.session.commit()


def ship(actor: "Operator", theme: ThemeActivity, draw_ids: list[int], tracking_no: Any,
         now: datetime | None = None) -> list[Outcome]:
    """Mark these gifts shipped in one parcel with `tracking_no` (InvalidTrackingNo when it is not
    one); one outcome per draw: shipped, or refused and why."""
    tracking = clean_tracking_no(tracking_no)
    wanted = [(draw_id, Outcome(str(draw_id), False, "", tracking_no=tracking)) for draw_id in dict.fromkeys(draw_ids)]
    _ship(actor, theme, wanted, now)
    return [outcome for _id, outcome in wanted]


@dataclass(frozen=True)
class ShippingLine:
    row: int
    draw_no: str
    tracking_no: Any


def ship_lines(actor: "Operator", theme: ThemeActivity, lines: list[ShippingLine],
               now: datetime | None = None) -> list[Outcome]:
    """Ship the rows of an uploaded workbook; one outcome per row, in the file's order. A row with no
    tracking number is skipped, so the exported shipping list can be filled in part and uploaded."""
    numbers = {line.draw_no.upper() for line in lines}
    ids = dict(db.session.execute(_draws_of(actor, theme, select(ThemeDraw.draw_no, ThemeDraw.id))
                                  .where(ThemeDraw.draw_no.in_(numbers))).all()) if numbers else {}
    outcomes, wanted, seen = [], [], set()
    for line in lines:
        draw_no = line.draw_no.upper()
        outcome = Outcome(draw_no, False, "", row=line.row)
        outcomes.append(outcome)
        if not draw_no:
            outcome.message = _("Fill in the draw number.")
            continue
        if line.tracking_no in (None, ""):
            outcome.message = _("Skipped: no tracking number.")
            continue
        try:
            outcome.tracking_no = clean_tracking_no(line.tracking_no)
        except InvalidTrackingNo as exc:
            outcome.tracking_no, outcome.message = str(line.tracking_no), str(exc)
            continue
        if draw_no in seen:
            outcome.message = _("Draw %(no)s appears more than once in the file; only its first row counts.",
                                no=draw_no)
            continue
        seen.add(draw_no)
        wanted.append((ids.get(draw_no), outcome))
    _ship(actor, theme, wanted, now)
    return outcomes


class ShippingFileError(ValueError):
    """The uploaded file cannot be read as a shipping list; the message is for the operator."""


def _cell_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_shipping_file(stream: BinaryIO) -> list[ShippingLine]:
    """The (draw no., tracking no.) of the first two columns of the first sheet, below its header row;
    blank rows skipped. The exported shipping list has these two columns first."""
    data = stream.read(IMPORT_MAX_BYTES + 1)
    if not data:
        raise ShippingFileError(_("Choose the filled-in shipping list (.xlsx)."))
    if len(data) > IMPORT_MAX_BYTES:
        raise ShippingFileError(_("The file may be at most 2 MB."))
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise ShippingFileError(_("The file is not an Excel workbook (.xlsx). Export the shipping list, fill in "
                                  "the tracking numbers and upload it.")) from exc
    lines = []
    for number, row in enumerate(workbook.worksheets[0].iter_rows(min_row=2, max_col=2, values_only=True), start=2):
        cells = tuple(row) + (None, None)
        draw_no = _cell_text(cells[0])
        if not draw_no and cells[1] in (None, ""):
            continue
        lines.append(ShippingLine(number, draw_no, cells[1]))
        if len(lines) > IMPORT_MAX_ROWS:
            workbook.close()
            raise ShippingFileError(_("The file has more than %(n)s rows. Split it and upload each part.",
                                      n=IMPORT_MAX_ROWS))
    workbook.close()
    if not lines:
        raise ShippingFileError(_("The file has no rows below the header row."))
    return lines
