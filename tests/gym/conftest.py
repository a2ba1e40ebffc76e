"""Fixtures of the gym tests: one organisation with an operator, a member and one product of each gym kind."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from app.core.timeutil import utcnow
from app.gym import services
from app.gym.models import ClassSession


@dataclass
class Gym:
    make: object
    org: object
    operator: object
    member: object
    month_card: object
    year_card: object
    day_card: object
    visits_card: object
    coaching: object
    yoga: object

    def product(self, kind: str, attributes: dict, org=None, name: str | None = None):
        return self.make.product(org or self.org, name=name, kind=kind, price_fen=19900, attributes=attributes)

    def session(self, capacity: int = 5, product=None, hours_ahead: int = 24) -> ClassSession:
        return services.create_class_session(product or self.yoga, utcnow() + timedelta(hours=hours_ahead),
                                             self.operator.id, capacity=capacity)


@pytest.fixture
def gym(make) -> Gym:
    org = make.org(kind="merchant")
    return Gym(
        make=make, org=org, operator=make.operator(org), member=make.member(org),
        month_card=make.product(org, "月卡", "membership_card", 29900, {"duration_value": 1, "duration_unit": "month"}),
        year_card=make.product(org, "年卡", "membership_card", 199900, {"duration_value": 1, "duration_unit": "year"}),
        day_card=make.product(org, "30天卡", "membership_card", 19900, {"duration_value": 30, "duration_unit": "day"}),
        visits_card=make.product(org, "10次卡", "membership_card", 49900, {"visits": 10}),
        coaching=make.product(org, "私教10节", "coaching_package", 299900, {"lessons": 10, "course_name": "私教"}),
        yoga=make.product(org, "瑜伽团课", "group_class", 5900,
                          {"course_name": "瑜伽", "capacity": 20, "duration_minutes": 60}),
    )
