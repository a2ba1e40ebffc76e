"""How a wheel is drawn: its segments' geometry, shared by the designer's live preview and the H5 game page.

The wheel shows the prizes that are on it (switched on, and the "thanks for taking part" fallback)
in their order, one equal slice each, clockwise from twelve o'clock; weights decide the chances,
not the size of a slice (as on a real roulette, where a big slice would give the odds away).
A label reads across its slice while the slices are wide (up to 6); on narrower ones it runs along
the radius, where there is room for more characters, turned so that it reads left to right when
the wheel is at rest. Either way it is cut to what fits (the full name is its tooltip).
The SVG itself is the `wheel_svg` macro of `templates/macros/wheel.html`; the H5 page turns it so
that the middle of the slice of the prize the server drew stops under the pointer
(`Segment.middle_deg`). No `request` here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

RADIUS = 100.0  # the SVG's user units: a 220 × 220 view box around (0, 0), with room for the rim
LABEL_CHARS = 6  # a label across a wide slice has at most this many characters
ACROSS_MAX = 6  # up to this many slices the labels read across them; beyond, along the radius
RADIAL_ROOM = 68.0  # the length a label along the radius may take: from the hub to the rim


class WheelPrize(Protocol):
    id: int | None
    name: str
    colour: str
    sort_order: int


@dataclass(frozen=True)
class Segment:
    prize_id: int | None
    label: str  # the name as it fits on the slice
    name: str  # the full name
    colour: str
    text_colour: str  # black or white, whichever reads better on the slice's colour
    path: str  # the SVG path of the slice
    label_x: float
    label_y: float
    label_rotate: float  # degrees: across the slice, as printed on a real wheel, or along the radius
    middle_deg: float  # the slice's middle, in degrees clockwise from twelve o'clock
    font_size: float = 11.0  # the label's, in the SVG's units


def _point(degrees: float, radius: float) -> tuple[float, float]:
    """A point at `degrees` clockwise from twelve o'clock (SVG's y axis points down)."""
    radians = math.radians(degrees - 90)
    return round(radius * math.cos(radians), 3), round(radius * math.sin(radians), 3)


def _slice_path(start: float, end: float) -> str:
    if end - start >= 360:
        return f"M 0 {-RADIUS} A {RADIUS} {RADIUS} 0 1 1 0 {RADIUS} A {RADIUS} {RADIUS} 0 1 1 0 {-RADIUS} Z"
    x1, y1 = _point(start, RADIUS)
    x2, y2 = _point(end, RADIUS)
    large_arc = 1 if end - start > 180 else 0
    return f"M 0 0 L {x1} {y1} A {RADIUS} {RADIUS} 0 {large_arc} 1 {x2} {y2} Z"


def text_colour(background: str) -> str:
    """#000000 or #ffffff for text on `background` (#RRGGBB), by its relative luminance (WCAG)."""
    try:
        channels = [int(background[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    except (ValueError, IndexError, TypeError):
        return "#000000"
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if luminance > 0.179 else "#ffffff"


def _width(text: str) -> float:
    """A text's width in ems: a CJK or full-width character is about one, a Latin one about six tenths."""
    return sum(1.0 if ord(ch) > 0x2e7f else 0.6 for ch in text)


def _label(name: str, room: float, font_size: float, most: int | None = None) -> str:
    """`name` cut (with an ellipsis) to fit `room` units at `font_size`, and to `most` characters."""
    name = name.strip()
    ems = room / font_size
    if _width(name) <= ems and (most is None or len(name) <= most):
        return name
    cut = name
    while cut and (_width(cut) + 1 > ems or (most is not None and len(cut) + 1 > most)):
        cut = cut[:-1]
    return cut.rstrip() + "…"


def _placed(middle: float, step: float, count: int) -> tuple[float, float, float, float, float]:
    """Where a slice's label goes: (x, y, rotation, room along its reading direction, font size)."""
    font_size = 11.0 if count <= 8 else 9.0
    if count == 1:  # the whole disc: upright, above the hub
        return 0.0, round(-RADIUS * 0.5, 3), 0.0, RADIUS * 1.2, font_size
    if count <= ACROSS_MAX:
        radius = RADIUS * 0.62
        room = min(2 * radius * math.sin(math.radians(step / 2)) - 8, RADIUS * 0.9)
        return (*_point(middle, radius), round(middle, 3), room, font_size)
    radius = RADIUS * 0.58
    rotate = middle - 90 if middle <= 180 else middle + 90  # read left to right on both halves
    return (*_point(middle, radius), round(rotate % 360, 3), RADIAL_ROOM, font_size)


def segments(prizes: list[WheelPrize]) -> list[Segment]:
    """The slices of a wheel showing `prizes` (already the ones on the wheel), by order then id."""
    ordered = sorted(prizes, key=lambda p: (p.sort_order, p.id or 0))
    if not ordered:
        return []
    step = 360 / len(ordered)
    drawn = []
    for index, prize in enumerate(ordered):
        start, middle = index * step, index * step + step / 2
        x, y, rotate, room, font_size = _placed(middle, step, len(ordered))
        most = LABEL_CHARS if len(ordered) <= ACROSS_MAX else None
        drawn.append(Segment(prize_id=prize.id, label=_label(prize.name, room, font_size, most), name=prize.name,
                             colour=prize.colour, text_colour=text_colour(prize.colour),
                             path=_slice_path(start, start + step), label_x=x, label_y=y, label_rotate=rotate,
                             middle_deg=round(middle, 3), font_size=font_size))
    return drawn


def stop_angle(wheel: list[Segment], prize_id: int, turns: int = 6) -> float | None:
    """How far (degrees, clockwise) to turn the wheel from rest so `prize_id`'s slice stops under the
    pointer at twelve o'clock after `turns` whole turns; None when the prize is not on this wheel."""
    for segment in wheel:
        if segment.prize_id == prize_id:
            return round(turns * 360 + (360 - segment.middle_deg) % 360, 3)
    return None
