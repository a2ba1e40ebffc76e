"""The list-page pattern: query in the URL, whitelisted sorting, pagination with total count."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil
from typing import Any, Mapping, Sequence

from sqlalchemy import ColumnElement, Select, func, select

from app.extensions import db

PAGE_SIZES = (10, 20, 50, 100)


@dataclass
class ListParams:
    q: str = ""
    page: int = 1
    per_page: int = 20
    sort: str = ""
    direction: str = "desc"
    filters: dict[str, str] = field(default_factory=dict)

    def args(self, **changes: Any) -> dict[str, Any]:
        """The query-string arguments for a link to this list with some of them changed."""
        values: dict[str, Any] = {"q": self.q, "page": self.page, "per_page": self.per_page,
                                  "sort": self.sort, "dir": self.direction, **self.filters}
        values.update(changes)
        return {k: v for k, v in values.items() if v not in ("", None)}

    def sort_args(self, column: str) -> dict[str, Any]:
        """Arguments for a column header link: toggle direction on the current column, else ascending."""
        direction = "desc" if self.sort == column and self.direction == "asc" else "asc"
        return self.args(sort=column, dir=direction, page=1)


def parse_list_params(args: Mapping[str, str], filter_names: Sequence[str] = (), default_sort: str = "",
                      default_direction: str = "desc") -> ListParams:
    def to_int(value: str | None, fallback: int) -> int:
        try:
            return int(value) if value is not None else fallback
        except ValueError:
            return fallback

    per_page = to_int(args.get("per_page"), 20)
    return ListParams(
        q=(args.get("q") or "").strip()[:100],
        page=max(1, to_int(args.get("page"), 1)),
        per_page=per_page if per_page in PAGE_SIZES else 20,
        sort=args.get("sort") or default_sort,
        direction="asc" if args.get("dir", default_direction) == "asc" else "desc",
        filters={name: (args.get(name) or "").strip() for name in filter_names if (args.get(name) or "").strip()},
    )


def apply_sort(stmt: Select, params: ListParams, sortable: Mapping[str, ColumnElement], tiebreak: ColumnElement) -> Select:
    """Order by the requested column if it is sortable (else the default), with a stable tiebreak."""
    column = sortable.get(params.sort)
    if column is None:
        return stmt.order_by(tiebreak.desc())
    ordered = column.asc() if params.direction == "asc" else column.desc()
    return stmt.order_by(ordered, tiebreak.desc())


@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.per_page))

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1

    def window(self, size: int = 7) -> list[int]:
        """Page numbers to show around the current one."""
        start = max(1, min(self.page - size // 2, self.pages - size + 1))
        return list(range(start, min(self.pages, start + size - 1) + 1))


def paginate(stmt: Select, params: ListParams, *, whole_rows: bool = False) -> Page:
    """Run a count and one page of the (already filtered and ordered) statement: its first column's
    values, or whole rows (`whole_rows`, for a statement of an entity and figures beside it)."""
    total = db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    pages = max(1, ceil(total / params.per_page))
    page = min(params.page, pages)
    result = db.session.execute(stmt.limit(params.per_page).offset((page - 1) * params.per_page))
    items = list(result.all() if whole_rows else result.scalars())
    return Page(items=items, total=total, page=page, per_page=params.per_page)
