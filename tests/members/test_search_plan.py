"""The member search box is served by indexes, so the list stays fast with 100,000 members.

PostgreSQL picks a sequential scan for small tables whatever the indexes, so the plans are read
with sequential scans priced out (`enable_seqscan = off`): an index that can serve the query is
then used, and a query no index can serve (a leading-wildcard LIKE) still falls back to a scan.
"""
from __future__ import annotations

import pytest
from flask_login import login_user
from sqlalchemy import insert, text

from app.core import crypto
from app.core.listing import parse_list_params
from app.core.tenancy import scoped
from app.core.timeutil import utcnow
from app.extensions import db
from app.members import routes
from app.members.models import Member


def explain(stmt) -> str:
    """The plan of a statement exactly as the app sends it (same bound parameters), with seq scans priced out."""
    compiled = stmt.compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    connection = db.session.connection()
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    lines = [row[0] for row in connection.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params)]
    db.session.rollback()
    return "\n".join(lines)


def search_plan(app, operator, q: str) -> str:
    with app.test_request_context("/members"):
        login_user(operator)
        stmt = routes._members_matching(parse_list_params({"q": q}))
    return explain(stmt)


def index_conditions(plan: str) -> str:
    return "\n".join(line for line in plan.splitlines() if "Index Cond" in line)


@pytest.fixture
def crowd(make):
    bank = make.org()
    operator = make.operator(bank)
    now = utcnow()
    rows = []
    for i in range(2000):
        phone = f"139{i:08d}"
        rows.append({"org_id": bank.id, "member_no": f"M{i:011d}", "name": f"客户{i}", "level": "normal",
                     "status": "active", "phone_enc": crypto.encrypt(phone), "phone_hash": crypto.lookup_hash(phone),
                     "registered_at": now, "created_at": now, "updated_at": now})
    db.session.execute(insert(Member), rows)
    db.session.commit()
    db.session.execute(text("ANALYZE members"))
    db.session.commit()
    return operator


def test_name_prefix_search_is_an_index_range(app, crowd):
    plan = search_plan(app, crowd, "客户12")
    assert "ix_members_org_name" in plan, plan
    assert "(name)::text ~>=~ '客户12'" in index_conditions(plan), plan


def test_full_phone_search_uses_the_keyed_hash_index(app, crowd):
    plan = search_plan(app, crowd, "139-0000-1234")
    assert "ix_members_phone_hash" in plan, plan
    assert crypto.lookup_hash("13900001234") in index_conditions(plan), plan


def test_member_number_search_uses_its_unique_index(app, crowd):
    plan = search_plan(app, crowd, "m00000001234")
    assert "uq_members_member_no" in plan and "'M00000001234'" in index_conditions(plan), plan


def test_a_substring_search_could_not_use_the_name_index(app, crowd):
    """The control: no index serves '%x%', which is why the search box never searches so."""
    with app.test_request_context("/members"):
        login_user(crowd)
        stmt = scoped(Member, crowd).where(Member.name.contains("12", autoescape=True))
    plan = explain(stmt)
    assert "(name)" not in index_conditions(plan), plan
    assert "'%12%'" in plan, plan  # the name is only filtered, row by row
