"""Benchmark scenarios: one module per scenario in this package, found by `bench/run.py`.

A scenario module defines:

    NAME: str                      short name, used on the command line (--scenario NAME)
    DESCRIPTION: str               one line for the report

    def setup(app) -> dict:        seed what the scenario needs, inside an app context on the
                                   bench database. Must be idempotent: a second run reuses the
                                   data (run.py --fresh wipes the database first). Returns a
                                   JSON-able state passed to the functions below.

    def cases(state) -> list[Case]:
                                   the request mixes to measure; each Case is measured and
                                   reported on its own.

    def prepare(app, state, base_url) -> None   (optional)
                                   called once the server is up (before the cases), with its
                                   base URL, e.g. to start a platform sandbox in a server of its
                                   own and point a platform account at it.

    def measure(app, state, base_url, args, baseline, results) -> list[dict]   (optional)
                                   measurements the request-mix driver cannot express (flows of
                                   several requests, invariants checked in the database, jobs
                                   run in-process). Each dict is a result row like the driver's
                                   ("name", "requests", "errors", "rps", "p50_ms", ...), plus
                                   optional "notes" (lines printed under the table); a row
                                   without "requests" only carries notes. `baseline` is the
                                   /healthz result and `results` the driver's results of
                                   `cases(state)`, for goal checks against them.

    def finish(app, state) -> None   (optional)
                                   called after the cases (also when they failed), e.g. to stop
                                   a server the scenario started in `prepare`.

    def explain(app, state) -> list[str]   (optional)
                                   lines to print after the figures, e.g. the query plans of the
                                   SQL the scenario's requests run (see bench.sqlplan).

The driver (bench/load.py) runs in a separate process: N client threads send the requests
of a case for a bounded time and count, cycling through `Case.paths`; a response counts as an
error unless its status is `Case.status` and, when `Case.expect` is given, its body contains
the string expected for that path. A case may send form bodies (`forms`, one per path, with
`method="POST"`), take the CSRF token of a page after logging in (`csrf_from`: the path of a
page carrying `name="csrf_token"`; sent as the X-CSRFToken header), run with its own number of
clients (`clients`) and warmup requests (`warmup`), and send each path/body only once
(`unique`, e.g. one voucher code per request; `warmup_forms` are then spent on the warmup).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass, field
from types import ModuleType


@dataclass
class Case:
    name: str
    paths: list[str]                              # cycled through by the clients
    login: tuple[str, str] | None = None          # (username, password) to log in with first
    method: str = "GET"
    status: int = 200
    expect: list[str] | None = None               # per path: a string the body must contain
    headers: dict[str, str] = field(default_factory=dict)
    forms: list[dict[str, str]] | None = None     # per path: the form body to send
    csrf_from: str | None = None                  # page to take the CSRF token from after login
    clients: int | None = None                    # overrides --clients for this case
    warmup: int | None = None                     # overrides --warmup for this case
    unique: bool = False                          # each path/body at most once
    warmup_forms: list[dict[str, str]] | None = None

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError(f"case {self.name!r} has no paths")
        if self.forms is not None and len(self.forms) != len(self.paths):
            raise ValueError(f"case {self.name!r}: forms must give one body per path")
        if self.expect is not None and len(self.expect) != len(self.paths):
            raise ValueError(f"case {self.name!r}: expect must give one string per path")

    def to_json(self) -> dict:
        return asdict(self)


def discover() -> dict[str, ModuleType]:
    """Every scenario module in this package, by NAME."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "setup") and hasattr(module, "cases"):
            found[module.NAME] = module
    return found


def bench_bank(code: str, name: str):
    """The bank organisation of that code under the platform (both made when missing, committed);
    for a scenario's `setup`, inside an app context."""
    from sqlalchemy import select

    from app.extensions import db
    from app.orgs import services as org_services
    from app.orgs.models import Organisation

    bank = db.session.execute(select(Organisation).where(Organisation.code == code)).scalar_one_or_none()
    if bank is None:
        platform = db.session.execute(select(Organisation).where(Organisation.kind == "platform")).scalars().first()
        if platform is None:
            platform = org_services.create_platform("PLATFORM", "营销枢纽平台")
            db.session.commit()
        bank = org_services.create_organisation(platform, "bank", code, name)
        db.session.commit()
    return bank
