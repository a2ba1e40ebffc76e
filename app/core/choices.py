"""The options of the console's select fields, as WTForms wants them."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wtforms import SelectChoice


def options(pairs: Iterable[tuple[Any, Any]]) -> list[SelectChoice]:
    """(value, label) pairs, as the forms and the organisation pickers write their options, as
    WTForms' `SelectChoice` (WTForms 3.3 deprecates plain tuples, and 3.4 drops them)."""
    return [SelectChoice(value, label) for value, label in pairs]
