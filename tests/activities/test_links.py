"""The enrolled institutions and linked banks of a theme activity (app.activities.links): adding from
the master data, deleting one or many (never a row with linked data), the Excel template and import,
and the audit trail."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import select

from app.activities import links
from app.activities.models import ThemeActivityBank, ThemeActivityInstitution
from app.core.audit import AuditEvent
from app.core.timeutil import utcnow
from app.coupons.models import Institution, PartnerBank
from app.extensions import db
from tests.activities.conftest import create

INSTITUTIONS, BANKS = links.KINDS["institutions"], links.KINDS["banks"]


def institution(code: str, name: str | None = None, status: str = "normal") -> Institution:
    row = Institution(code=code, name=name or f"机构{code}", kind="commercial", status=status)
    db.session.add(row)
    db.session.commit()
    return row


def codes_in(kind, theme) -> list[str]:
    return sorted(row.party.code for row in links.list_links(kind, theme))


def events(action: str) -> list[AuditEvent]:
    return list(db.session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)).scalars())


def workbook(*cells) -> io.BytesIO:
    book = Workbook()
    sheet = book.active
    sheet.append(["code", "name"])
    for value in cells:
        sheet.append([value])
    out = io.BytesIO()
    book.save(out)
    out.seek(0)
    return out


@pytest.fixture
def theme(world):
    return create(world)


def test_a_new_theme_lists_its_own_institution_and_bank_which_cannot_be_deleted(world, theme):
    rows = links.list_links(INSTITUTIONS, theme)
    assert [(r.party.code, r.operator) for r in rows] == [("10000001", "测试用户")]
    assert "enrolling institution" in rows[0].locked_reason
    bank_rows = links.list_links(BANKS, theme)
    assert [r.party.code for r in bank_rows] == ["31290000"] and "theme activity's bank" in bank_rows[0].locked_reason
    result = links.remove_links(world.admin, INSTITUTIONS, theme, [rows[0].link.id])
    assert result.removed == [] and result.kept[0][0] == "10000001"
    assert codes_in(INSTITUTIONS, theme) == ["10000001"]


def test_add_delete_and_batch_delete_institutions_with_audit(world, theme):
    a, b = institution("20000001"), institution("20000002")
    links.add_link(world.admin, INSTITUTIONS, theme, a.id)
    links.add_link(world.admin, INSTITUTIONS, theme, b.id)
    links.add_link(world.admin, INSTITUTIONS, theme, world.other_institution.id)
    assert codes_in(INSTITUTIONS, theme) == ["10000001", "10000002", "20000001", "20000002"]
    added = events("theme_activity.link_institution")
    assert [e.after["code"] for e in added] == ["20000001", "20000002", "10000002"]
    assert all(e.object_id == str(theme.id) and e.org_id == theme.org_id for e in added)

    ids = {r.party.code: r.link.id for r in links.list_links(INSTITUTIONS, theme)}
    result = links.remove_links(world.admin, INSTITUTIONS, theme, [ids["20000001"], ids["20000002"], ids["10000001"]])
    assert sorted(result.removed) == ["20000001", "20000002"] and [c for c, _ in result.kept] == ["10000001"]
    assert codes_in(INSTITUTIONS, theme) == ["10000001", "10000002"]
    assert sorted(e.before["code"] for e in events("theme_activity.unlink_institution")) == ["20000001", "20000002"]


def test_an_institution_used_by_a_coupon_activity_of_the_theme_cannot_be_deleted(world, theme, make):
    links.add_link(world.admin, INSTITUTIONS, theme, world.other_institution.id)
    coupon = make.coupon_activity(theme=theme, institution_id=world.other_institution.id)
    row = next(r for r in links.list_links(INSTITUTIONS, theme) if r.party.code == "10000002")
    assert coupon.code in row.locked_reason
    assert links.remove_links(world.admin, INSTITUTIONS, theme, [row.link.id]).removed == []
    assert "10000002" in codes_in(INSTITUTIONS, theme)


def test_adding_refuses_duplicates_disabled_rows_and_banks_the_operator_cannot_see(world, theme):
    with pytest.raises(links.LinkError, match="already in the list"):
        links.add_link(world.admin, INSTITUTIONS, theme, world.institution.id)
    disabled = institution("20000009", status="disabled")
    with pytest.raises(links.LinkError, match="normal use"):
        links.add_link(world.admin, INSTITUTIONS, theme, disabled.id)
    with pytest.raises(links.LinkError, match="normal use"):
        links.add_link(world.admin, BANKS, theme, world.other_partner.id)  # another bank's organisation
    # The platform sees every bank and may link it.
    links.add_link(world.platform_admin, BANKS, theme, world.other_partner.id)
    assert codes_in(BANKS, theme) == ["31290000", "31300000"]
    assert events("theme_activity.link_bank")[0].after == {"code": "31300000", "name": "华南银行"}


def test_a_bank_whose_organisation_owns_a_coupon_activity_of_the_theme_cannot_be_deleted(world, theme, make):
    links.add_link(world.platform_admin, BANKS, theme, world.other_partner.id)
    rows = {r.party.code: r for r in links.list_links(BANKS, theme)}
    assert rows["31300000"].locked_reason is None
    make.coupon_activity(theme=theme)  # belongs to the theme's own bank
    rows = {r.party.code: r for r in links.list_links(BANKS, theme)}
    assert "belongs to it" in rows["31290000"].locked_reason or "theme activity's bank" in rows["31290000"].locked_reason
    result = links.remove_links(world.platform_admin, BANKS, theme, [r.link.id for r in rows.values()])
    assert result.removed == ["31300000"] and [c for c, _ in result.kept] == ["31290000"]


def test_rows_of_another_theme_are_not_deleted_through_this_one(world, theme):
    other = create(world, name="另一个主题")
    links.add_link(world.admin, INSTITUTIONS, other, world.other_institution.id)
    foreign_link = db.session.execute(select(ThemeActivityInstitution.id).where(
        ThemeActivityInstitution.theme_activity_id == other.id,
        ThemeActivityInstitution.institution_id == world.other_institution.id)).scalar_one()
    assert links.remove_links(world.admin, INSTITUTIONS, theme, [foreign_link]).removed == []
    assert "10000002" in codes_in(INSTITUTIONS, other)


def test_an_expired_theme_has_view_only_lists(world, make):
    theme = make.theme_activity(world.bank, start_at=utcnow() - timedelta(days=2), end_at=utcnow() - timedelta(days=1))
    with pytest.raises(links.LinkError, match="expired"):
        links.add_link(world.admin, INSTITUTIONS, theme, world.institution.id)
    with pytest.raises(links.LinkError, match="expired"):
        links.remove_links(world.admin, INSTITUTIONS, theme, [1])
    with pytest.raises(links.LinkError, match="expired"):
        links.import_links(world.admin, INSTITUTIONS, theme, [(2, "10000001")])


def test_the_template_has_a_header_and_a_text_code_column():
    sheet = load_workbook(io.BytesIO(links.template_workbook(INSTITUTIONS))).active
    assert sheet["A1"].value == "Institution code (8 digits)" and sheet.column_dimensions["A"].number_format == "@"
    assert sheet.max_row == 1


def test_import_answers_every_row(world, theme):
    institution("20000001", "新机构")
    institution("20000003", "停用机构", status="disabled")
    codes = links.read_codes(workbook("20000001", "10000001", 20000001, "1234", None, "99999999", "20000003",
                                      12345))
    assert codes == [(2, "20000001"), (3, "10000001"), (4, "20000001"), (5, "1234"), (7, "99999999"),
                     (8, "20000003"), (9, "00012345")]
    results = links.import_links(world.admin, INSTITUTIONS, theme, codes)
    assert [(r.row, r.outcome) for r in results] == [(2, "added"), (3, "already"), (4, "repeated"), (5, "invalid"),
                                                     (7, "unknown"), (8, "disabled"), (9, "unknown")]
    assert results[0].name == "新机构"
    assert codes_in(INSTITUTIONS, theme) == ["10000001", "20000001"]
    event, = events("theme_activity.import_institutions")
    assert event.after == {"added": ["20000001"], "rows": 7}


def test_import_of_banks_answers_an_invisible_bank_as_unknown(world, theme, make):
    hidden = PartnerBank(code="31400000", name="别家停用银行", kind="local", org_id=make.org(kind="bank").id,
                         status="disabled")
    db.session.add(hidden)
    db.session.commit()
    results = links.import_links(world.admin, BANKS, theme, [(2, "31300000"), (3, "31290000"), (4, "31400000")])
    assert [r.outcome for r in results] == ["unknown", "already", "unknown"]
    assert [r.name for r in results] == ["", "华东银行", ""]
    assert db.session.execute(select(ThemeActivityBank)).scalars().all().__len__() == 1


@pytest.mark.parametrize("data, message", [
    (b"", "Choose the filled-in template"), (b"not a workbook", "not an Excel workbook"),
    (None, "no codes below the header"), (b"x" * (2 * 1024 * 1024 + 1), "at most 2 MB"),
])
def test_unreadable_import_files_are_refused(data, message):
    stream = workbook() if data is None else io.BytesIO(data)
    with pytest.raises(links.ImportFileError, match=message):
        links.read_codes(stream)


def test_an_import_of_more_than_1000_codes_is_refused():
    with pytest.raises(links.ImportFileError, match="more than 1000"):
        links.read_codes(workbook(*[f"{20000000 + n}" for n in range(1001)]))
