"""Reading the member and product screens in tests: rows, shown phones, field errors."""
from __future__ import annotations

import re


def marked_ids(response, prefix: str) -> list[str]:
    """The suffixes of `data-testid="<prefix>..."` in a page, in order (e.g. the member numbers of the rows)."""
    return re.findall(rf'data-testid="{re.escape(prefix)}([^"]+)"', response.get_data(as_text=True))


def shown_phones(response) -> list[str]:
    return re.findall(r'data-testid="phone">([^<]*)<', response.get_data(as_text=True))


def field_has_error(response, name: str) -> bool:
    """True when the form field `name` is rendered as invalid with a non-empty message beside it."""
    html = response.get_data(as_text=True)
    block = re.search(rf'<div class="mb-3 field-{re.escape(name)}">(.*?)data-field-error>([^<]*)<', html, re.S)
    return bool(block and "is-invalid" in block.group(1) and block.group(2).strip())
