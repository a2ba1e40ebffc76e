"""The wheel's drawing: n equal slices cover the whole disc clockwise from twelve o'clock, `stop_angle`
stops the drawn prize's slice under the pointer, labels fit their slices, text stays readable."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest

from app.activities import wheel_drawing as drawing


@dataclass
class Item:
    id: int | None
    name: str
    colour: str
    sort_order: int


def wheel(n: int, name: str = "奖品") -> list[drawing.Segment]:
    return drawing.segments([Item(i + 1, f"{name}{i + 1}", "#e53935", i + 1) for i in range(n)])


def angle_of(x: float, y: float) -> float:
    """Degrees clockwise from twelve o'clock of the point (x, y) (SVG's y axis points down)."""
    return math.degrees(math.atan2(x, -y)) % 360


def ends(path: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two rim points of a slice path `M 0 0 L x1 y1 A r r 0 f 1 x2 y2 Z`."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
    return (numbers[2], numbers[3]), (numbers[-2], numbers[-1])


@pytest.mark.parametrize("n", range(2, 13))
def test_n_slices_cover_the_whole_disc_clockwise_from_twelve(n):
    slices = wheel(n)

    assert len(slices) == n
    step = 360 / n
    covered = 0.0
    for index, s in enumerate(slices):
        (x1, y1), (x2, y2) = ends(s.path)
        start, end = angle_of(x1, y1), angle_of(x2, y2)
        assert start == pytest.approx(index * step, abs=0.01) or (index == 0 and start == pytest.approx(360, abs=0.01))
        assert (end - start) % 360 == pytest.approx(step, abs=0.01)
        assert math.hypot(x1, y1) == pytest.approx(drawing.RADIUS, abs=0.01)
        assert s.middle_deg == pytest.approx(index * step + step / 2, abs=0.001)
        large_arc = int(s.path.split(" A ")[1].split()[3])
        assert large_arc == (1 if step > 180 else 0)
        covered += step
        next_start = ends(slices[(index + 1) % n].path)[0]
        assert (x2, y2) == pytest.approx(next_start, abs=0.01)  # no gap, no overlap
    assert covered == pytest.approx(360)


def test_one_slice_is_the_whole_disc_with_an_upright_label():
    (only,) = wheel(1)

    assert only.path.count(" A ") == 2 and only.label_rotate == 0 and only.label_y < 0
    assert only.label == "奖品1"


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
def test_stop_angle_turns_the_drawn_prize_under_the_pointer(n):
    slices = wheel(n)
    step = 360 / n

    for index, s in enumerate(slices):
        angle = drawing.stop_angle(slices, s.prize_id, turns=6)
        assert 6 * 360 <= angle < 7 * 360
        assert (s.middle_deg + angle) % 360 == pytest.approx(0, abs=1e-6) or \
            (s.middle_deg + angle) % 360 == pytest.approx(360, abs=1e-6)
        # Turned clockwise by `angle`, the disc shows under the pointer what was at -angle: this slice.
        under_pointer = (-angle) % 360
        assert index * step <= under_pointer < (index + 1) * step
    assert drawing.stop_angle(slices, 999) is None


def test_slices_follow_the_order_then_the_id():
    items = [Item(7, "C", "#000000", 3), Item(9, "A", "#000000", 1), Item(2, "B2", "#000000", 2),
             Item(1, "B1", "#000000", 2), Item(None, "new", "#000000", 4)]

    assert [s.name for s in drawing.segments(items)] == ["A", "B1", "B2", "C", "new"]
    assert drawing.segments([]) == []


def test_labels_fit_their_slices_and_the_full_name_stays():
    long_name = "一等奖苹果手机一台另加耳机"
    across = drawing.segments([Item(1, long_name, "#e53935", 1), Item(2, "谢谢参与", "#c8c8c8", 2),
                               Item(3, "Gift card 100", "#1e88e5", 3)])
    assert across[0].label == "一等奖苹果…" and across[0].name == long_name
    assert across[1].label == "谢谢参与" and across[2].label == "Gift…"  # six characters at most
    assert across[0].label_rotate == across[0].middle_deg  # reads across its slice

    narrow = drawing.segments([Item(i, long_name if i == 1 else f"奖{i}", "#e53935", i) for i in range(1, 13)])
    first = narrow[0]
    assert first.label.endswith("…") and len(first.label) > 5  # along the radius there is room for more
    assert drawing._width(first.label) * first.font_size <= drawing.RADIAL_ROOM
    assert first.font_size == 9
    for s in narrow:  # along the radius, turned to read left to right at rest
        direction = (s.label_rotate + 90) % 360  # where the text runs, clockwise from twelve
        assert direction == pytest.approx(s.middle_deg) or direction == pytest.approx((s.middle_deg + 180) % 360)
        assert 0 <= (s.label_rotate + 90) % 360 < 360 and not 90 < s.label_rotate < 270


@pytest.mark.parametrize("background, text", [("#ffffff", "#000000"), ("#fdd835", "#000000"), ("#c8c8c8", "#000000"),
                                              ("#1e88e5", "#000000"), ("#3949ab", "#ffffff"), ("#000000", "#ffffff"), ("#8e24aa", "#ffffff"),
                                              ("nonsense", "#000000")])
def test_text_is_black_or_white_whichever_reads_better(background, text):
    assert drawing.text_colour(background) == text
