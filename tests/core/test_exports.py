"""The refusal of an export above its row limit, shared by the list pages and the coupon reports."""
from __future__ import annotations

from flask import get_flashed_messages
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from app.core.exports import refuse_oversized_export


def test_an_export_within_the_limit_goes_ahead(app):
    with app.test_request_context("/things/export"):
        assert refuse_oversized_export(10_000, 10_000, "/things?q=a") is None
        assert refuse_oversized_export(0, 10_000, "/things?q=a") is None
        assert get_flashed_messages() == []


def test_an_export_above_the_limit_goes_back_to_the_list_with_a_warning(app):
    with app.test_request_context("/things/export"), force_locale("en"):
        refused = refuse_oversized_export(12_345, 10_000, "/things?q=a")
        assert refused.status_code == 302 and refused.headers["Location"] == "/things?q=a"
        assert get_flashed_messages(with_categories=True) == [
            ("warning", "12,345 rows match, more than the 10,000 an export may hold. Narrow the filters and export "
                        "again.")]


def test_a_screen_may_word_the_warning_its_own_way(app):
    wording = _l("%(total)s things match; %(limit)s at most.")
    with app.test_request_context("/things/export"), force_locale("en"):
        refuse_oversized_export(3, 2, "/things", wording)
        assert get_flashed_messages() == ["3 things match; 2 at most."]
