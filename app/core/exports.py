"""CSV and XLSX exports of list pages, streamed, with personal data masked by the caller's columns;
workbooks of several sheets (`Sheet`, `workbook_response`) for statistics; and the refusal of an
export that would hold more rows than allowed."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from flask import Response, flash, redirect, stream_with_context
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from openpyxl import Workbook
from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.core.timeutil import BUSINESS_TZ, utcnow
from app.extensions import db

FORMATS = ("csv", "xlsx")
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_ROW_LIMIT = 10_000  # §3: one export of the coupon and activity screens holds at most 10,000 rows
TOO_MANY_ROWS = _l("%(total)s rows match, more than the %(limit)s an export may hold. Narrow the filters and "
                   "export again.")


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], Any]


@dataclass(frozen=True)
class Sheet:
    """One sheet of a workbook: its title (at most 31 characters are kept), columns and rows."""

    title: str
    columns: list[Column]
    rows: Iterable[Any]


def rows_for_export(stmt: Select, batch: int = 1000) -> Iterator[Any]:
    """The rows of an export, read in batches on a session of their own.

    A CSV export is streamed after the view has returned, when the request's own session has
    already been closed by the app-context teardown; rows read through it would fail mid-file.
    """
    with Session(db.engine) as session:
        yield from session.execute(stmt.execution_options(yield_per=batch)).scalars()


def export_filename(base: str, fmt: str) -> str:
    """'会员列表_20261122_203000.xlsx' (Shanghai time)."""
    return f"{base}_{utcnow().astimezone(BUSINESS_TZ):%Y%m%d_%H%M%S}.{fmt}"


def _csv_chunks(columns: list[Column], rows: Iterable[Any]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")  # so Excel opens UTF-8 Chinese correctly
    writer.writerow([c.header for c in columns])
    for count, row in enumerate(rows, 1):
        writer.writerow([_cell(c.value(row)) for c in columns])
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _xlsx_bytes(sheets: Iterable[Sheet]) -> bytes:
    workbook = Workbook(write_only=True)
    for sheet in sheets:
        worksheet = workbook.create_sheet(title=sheet.title[:31])
        worksheet.append([c.header for c in sheet.columns])
        for row in sheet.rows:
            worksheet.append([_cell(c.value(row)) for c in sheet.columns])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # no formula injection into the operator's spreadsheet
    return value


def _disposition(base_name: str, fmt: str) -> dict[str, str]:
    filename = export_filename(base_name, fmt)
    return {"Content-Disposition": f"attachment; filename=\"export.{fmt}\"; filename*=UTF-8''{quote(filename)}"}


def export_response(base_name: str, fmt: str, columns: list[Column], rows: Iterable[Any]) -> Response:
    if fmt == "xlsx":
        return workbook_response(base_name, [Sheet(base_name, columns, rows)])
    return Response(stream_with_context(_csv_chunks(columns, rows)), mimetype="text/csv; charset=utf-8",
                    headers=_disposition(base_name, fmt))


def workbook_response(base_name: str, sheets: list[Sheet]) -> Response:
    """An xlsx of the given sheets, in their order, named like every export (base name and Shanghai time)."""
    return Response(_xlsx_bytes(sheets), mimetype=XLSX_MIMETYPE, headers=_disposition(base_name, "xlsx"))


def refuse_oversized_export(total: int, limit: int, back: str, wording: LazyString = TOO_MANY_ROWS) -> Response | None:
    """None when `total` matching rows fit in one export of at most `limit` rows. Else the operator
    is sent back to `back` (the list or report with its filters kept) with a warning that says how
    many rows match and asks to narrow the filters: `wording`, a text with %(total)s and %(limit)s."""
    if total <= limit:
        return None
    flash(str(wording) % {"total": f"{total:,}", "limit": f"{limit:,}"}, "warning")
    return redirect(back)
