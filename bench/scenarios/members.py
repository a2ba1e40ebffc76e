"""Members list and search with 100,000 members in one bank, as that bank's admin.

Seeds one bank (BENCH-BANK) under the platform, its org admin, and 100,000 members with
encrypted phones and keyed phone hashes (app.core.crypto), inserted in bulk with SQLAlchemy
Core. Cases: the list page, a search by exact 11-digit phone (the keyed-hash look-up) and a
search by name prefix, each with `q`, `page`, `per_page` as the members page takes them.
"""
from __future__ import annotations

import random
import time
from datetime import timedelta

from bench.scenarios import Case, bench_bank

NAME = "members"
DESCRIPTION = "members list and search, 100,000 members in one bank, as its org admin"

MEMBERS = 100_000
BANK_CODE = "BENCH-BANK"
ADMIN = ("bench_admin", "bench-pass-2026")
BATCH = 10_000
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"
LEVELS = ("normal", "normal", "normal", "silver", "gold", "platinum")
REGIONS = ("上海", "杭州", "南京", "苏州", "广州", "深圳", "佛山")
CHANNELS = ("网点", "手机银行", "微信", "抖音", "美团", "地推")
SAMPLES = 200


def phone_of(i: int) -> str:
    return f"139{i:08d}"


def name_of(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def setup(app) -> dict:
    from sqlalchemy import func, insert, select, text

    from app.auth.models import Operator
    from app.core import audit, crypto
    from app.core.models import public_code
    from app.core.timeutil import utcnow
    from app.extensions import db
    from app.members.models import Member

    with app.app_context(), audit.acting_as(audit.Actor(None, "bench", None, None)):
        bank = bench_bank(BANK_CODE, "压测银行")
        if db.session.execute(select(Operator.id).where(Operator.username == ADMIN[0])).first() is None:
            admin = Operator(username=ADMIN[0], display_name="压测银行管理员", org_id=bank.id, org=bank,
                             password_changed_at=utcnow())
            admin.set_password(ADMIN[1])
            admin.set_roles(["org_admin"])
            db.session.add(admin)
            db.session.commit()

        have = db.session.execute(select(func.count()).select_from(Member).where(Member.org_id == bank.id)).scalar_one()
        if have < MEMBERS:
            started = time.perf_counter()
            rng = random.Random(20261122 + have)
            now = utcnow()
            for first in range(have, MEMBERS, BATCH):
                rows = []
                for i in range(first, min(first + BATCH, MEMBERS)):
                    phone = phone_of(i)
                    rows.append({
                        "org_id": bank.id, "member_no": public_code("M", 11), "name": name_of(rng),
                        "phone_enc": crypto.encrypt(phone), "phone_hash": crypto.lookup_hash(phone),
                        "level": rng.choice(LEVELS), "group_name": rng.choice(("VIP", "新客", "老客", None)),
                        "region": rng.choice(REGIONS), "source_channel": rng.choice(CHANNELS),
                        "registered_at": now - timedelta(minutes=rng.randint(0, 365 * 24 * 60)),
                        "status": "active", "created_at": now, "updated_at": now,
                    })
                db.session.execute(insert(Member), rows)
                db.session.commit()
            db.session.execute(text("ANALYZE members"))
            db.session.commit()
            print(f"  seeded {MEMBERS - have:,} members in {time.perf_counter() - started:.1f} s", flush=True)

        # Search targets: existing phones spread over the table, and the most common name prefixes.
        rng = random.Random(7)
        picks = sorted(rng.sample(range(MEMBERS), SAMPLES))
        phones = [phone_of(i) for i in picks]
        hashes = {crypto.lookup_hash(p): p for p in phones}
        member_nos = dict(db.session.execute(
            select(Member.phone_hash, Member.member_no).where(Member.org_id == bank.id, Member.phone_hash.in_(hashes))
        ).all())
        prefixes = [row[0] for row in db.session.execute(
            select(func.left(Member.name, 2).label("prefix"), func.count().label("n"))
            .where(Member.org_id == bank.id, func.length(Member.name) >= 2)
            .group_by("prefix").order_by(text("n DESC")).limit(20)
        ).all()]
        prefix_rows = db.session.execute(
            select(func.count()).select_from(Member).where(Member.org_id == bank.id, Member.name.startswith(prefixes[0]))
        ).scalar_one()
        return {
            "bank_id": bank.id,
            "phones": phones,
            "member_nos": [member_nos[crypto.lookup_hash(p)] for p in phones],
            "prefixes": prefixes,
            "prefix_rows": prefix_rows,
        }


# What the search box sends while the operator types: htmx asks for the rows fragment only.
ROWS_FRAGMENT = {"HX-Request": "true", "HX-Target": "member-rows"}


def cases(state: dict) -> list[Case]:
    phone_paths = [f"/members?q={p}" for p in state["phones"]]
    prefix_paths = [f"/members?q={p}" for p in state["prefixes"]]
    prefix_label = f"name prefix (~{state['prefix_rows']} hits)"
    return [
        Case("members list page", ["/members", "/members?page=2", "/members?page=5&per_page=50"], login=ADMIN),
        Case("members search: exact phone", phone_paths, login=ADMIN, expect=state["member_nos"]),
        Case(f"members search: {prefix_label}", prefix_paths, login=ADMIN),
        Case("members rows fragment: exact phone", phone_paths, login=ADMIN, expect=state["member_nos"],
             headers=ROWS_FRAGMENT),
        Case(f"members rows fragment: {prefix_label}", prefix_paths, login=ADMIN, headers=ROWS_FRAGMENT),
    ]


def explain(app, state: dict) -> list[str]:
    from bench.sqlplan import explain_request, logged_in_client

    client = logged_in_client(app, *ADMIN)
    lines: list[str] = []
    for path in ("/members", f"/members?q={state['phones'][0]}", f"/members?q={state['prefixes'][0]}"):
        lines.extend(explain_request(app, client, path, "members"))
    return lines
