"""Factories for test data, bound to the app's session (committed, so threads see them)."""
from __future__ import annotations

import itertools

from app.auth.models import Operator
from app.core.timeutil import utcnow
from app.extensions import db
from app.members.models import Member, Product
from app.orgs.models import Organisation
from app.orgs.services import path_segment

PASSWORD = "secret-pass-123"
_seq = itertools.count(1)


class Factories:
    def platform(self) -> Organisation:
        existing = db.session.query(Organisation).filter_by(kind="platform").first()
        if existing:
            return existing
        return self.org(kind="platform", parent=None, code="PLATFORM", name="平台")

    def org(self, kind: str = "bank", parent: Organisation | None = None, code: str | None = None,
            name: str | None = None, status: str = "active") -> Organisation:
        n = next(_seq)
        if parent is None and kind != "platform":
            parent = self.platform()
        org = Organisation(kind=kind, code=code or f"{kind.upper()}{n}", name=name or f"{kind}-{n}",
                           parent_id=parent.id if parent else None, status=status, path="/")
        db.session.add(org)
        db.session.flush()
        org.path = (parent.path if parent else "/") + path_segment(org.id)
        db.session.commit()
        return org

    def operator(self, org: Organisation | None = None, roles: tuple[str, ...] = ("org_admin",),
                 username: str | None = None, password: str = PASSWORD, status: str = "active") -> Operator:
        org = org or self.org()
        operator = Operator(username=username or f"user{next(_seq)}", display_name="测试用户", org_id=org.id,
                            org=org, status=status, password_changed_at=utcnow())
        operator.set_password(password)
        operator.set_roles(list(roles))
        db.session.add(operator)
        db.session.commit()
        return operator

    def member(self, org: Organisation, name: str = "张三", phone: str | None = None, **values) -> Member:
        member = Member(org_id=org.id, name=name, **values)
        member.phone = phone or f"139{next(_seq):08d}"
        db.session.add(member)
        db.session.commit()
        return member

    def product(self, org: Organisation, name: str | None = None, kind: str = "goods", price_fen: int = 1000,
                attributes: dict | None = None) -> Product:
        product = Product(org_id=org.id, name=name or f"商品{next(_seq)}", kind=kind, price_fen=price_fen,
                          attributes=attributes or {})
        db.session.add(product)
        db.session.commit()
        return product

    def theme_activity(self, org: Organisation, name: str | None = None, theme_no: str | None = None,
                       start_at=None, end_at=None, **values):
        """A theme activity of a bank, running now (from an hour ago for 30 days) unless told otherwise."""
        from datetime import timedelta

        from app.activities.models import ThemeActivity

        n = next(_seq)
        now = utcnow()
        # 9xxxxxxxxx: clear of the ids the theme service hands out (5000000001 on).
        theme = ThemeActivity(org_id=org.id, theme_no=theme_no or f"{9_000_000_000 + n}", name=name or f"主题活动{n}",
                              start_at=start_at or now - timedelta(hours=1), end_at=end_at or now + timedelta(days=30),
                              **values)
        db.session.add(theme)
        db.session.commit()
        return theme

    def coupon_activity(self, org: Organisation | None = None, theme=None, name: str | None = None,
                        start_at=None, end_at=None, **values):
        """A coupon activity on 云数汇 / WeChat, running now, 1,000 to issue, 1 per customer, ¥10 off ¥100.

        With a theme activity it belongs to the theme's bank (and its code carries the theme's id).
        """
        from datetime import timedelta

        from app.coupons.models import CHANNEL_PREFIX, CouponActivity

        n = next(_seq)
        now = utcnow()
        org_id = theme.org_id if theme is not None else (org or self.org(kind="bank")).id
        channel = values.pop("channel", "wechat")
        key = theme.theme_no if theme is not None else f"{n:08d}"
        defaults = dict(tunnel="yunshuhui", coupon_type="threshold", batch_no=f"{n % 1_000_000_000:09d}",
                        upstream_activity_id=f"{1_000_000_000 + n}", owner_id=f"{n % 100_000_000:08d}",
                        promotion_id=f"P{n}", promo_amount_fen=1000, threshold_fen=10000, valid_type="absolute",
                        issue_total=1000, per_member_limit=1, issued_count=0, enabled=True)
        defaults.update(values)
        activity = CouponActivity(org_id=org_id, theme_activity_id=theme.id if theme is not None else None,
                                  channel=channel, code=defaults.pop("code", f"{CHANNEL_PREFIX[channel]}{key}_{1_700_000_000 + n}"),
                                  name=name or f"优惠券活动{n}", start_at=start_at or now - timedelta(hours=1),
                                  end_at=end_at or now + timedelta(days=30), **defaults)
        db.session.add(activity)
        db.session.commit()
        return activity

    def prize(self, theme, kind: str = "points", stock: int = 10, weight: int = 10, name: str | None = None,
              **values):
        """A prize in a theme activity's pool: 100 points / ¥5.00 cash by default; kind "thanks" is the
        fallback (no stock)."""
        from app.activities.prize_models import Prize

        n = next(_seq)
        amounts = {"points": {"points": 100}, "cash": {"cash_fen": 500}}.get(kind, {})
        stocked = kind != "thanks"
        fields = dict(sort_order=n, colour="#ff6600", **amounts)
        fields.update(values)
        prize = Prize(org_id=theme.org_id, theme_activity_id=theme.id, name=name or f"奖品{n}", kind=kind,
                      stock_total=stock if stocked else None, stock_remaining=stock if stocked else None,
                      weight=weight, **fields)
        db.session.add(prize)
        db.session.commit()
        return prize

    def wheel_theme(self, org: Organisation, thanks_weight: int = 10, thanks_order: int = 50, **values):
        """A running theme activity with its wheel on and a "thanks for taking part" fallback prize."""
        theme = self.theme_activity(org, **{"wheel_enabled": True, **values})
        self.prize(theme, kind="thanks", weight=thanks_weight, name="谢谢参与", sort_order=thanks_order)
        return theme
