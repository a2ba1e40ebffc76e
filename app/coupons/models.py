"""Coupon issuance through 云数汇 (and the direct WeChat tunnel): master data, coupon activities,
the banks' API clients, issued coupons, callbacks, notifications to banks and reconciliation.

Tenancy: every bank-owned row carries `org_id`, the bank's organisation. Master data
(institutions, partner banks, position numbers) is the platform's reference data; a partner bank
names the organisation its operators sign in to (`org_id`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from app.core import crypto
from app.core.models import EncryptedSecrets, TenantOwned, Timestamped
from app.core.timeutil import as_utc, utcnow
from app.extensions import db

MASTER_STATUSES = ("normal", "disabled")
INSTITUTION_KINDS = ("state_owned", "joint_stock", "commercial", "local")
TUNNELS = ("yunshuhui", "internal", "direct", "other")
CHANNELS = ("wechat", "alipay", "unionpay")
CHANNEL_PREFIX = {"wechat": "WX", "alipay": "ALI", "unionpay": "UNI"}
COUPON_TYPES = ("threshold", "discount", "cash")  # 满减 / 折扣 / 代金
VALID_TYPES = ("absolute", "relative")
SETTLE_TYPES = ("bank", "merchant", "proportional")
ISSUE_STATUSES = ("queued", "processing", "succeeded", "failed")
REDEMPTION_STATUSES = ("used", "expired")


class MasterDataParty(Timestamped):
    """What the master data keeps alike for an enrolling institution and a partner bank: an
    8-digit code, a name, its kind (INSTITUTION_KINDS), a contact and a status (MASTER_STATUSES).
    The master-data screens treat the two alike."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple:  # noqa: N805
        # A function, so that each of the two tables gets constraints of its own.
        return (CheckConstraint("status IN ('normal','disabled')", name="status"),
                CheckConstraint("kind IN ('state_owned','joint_stock','commercial','local')", name="kind"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    contact_name: Mapped[str | None] = mapped_column(String(50))
    contact_phone: Mapped[str | None] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")


class Institution(MasterDataParty, db.Model):
    """An enrolling institution (报名机构), identified by an 8-digit code."""

    __tablename__ = "institutions"


class PartnerBank(MasterDataParty, db.Model):
    """A bank in the master data (8-digit code, standard code such as ICBC), tied to the
    organisation whose operators work for it."""

    __tablename__ = "partner_banks"

    standard_code: Mapped[str | None] = mapped_column(String(20))
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), unique=True, nullable=False)


class PositionNumber(Timestamped, db.Model):
    """A 23-digit position number (头寸编号) a theme activity draws its funds from."""

    __tablename__ = "position_numbers"
    __table_args__ = (CheckConstraint("status IN ('available','unavailable')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(23), unique=True, nullable=False)
    note: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="available")


class TunnelAccount(EncryptedSecrets, TenantOwned, Timestamped, db.Model):
    """How one bank reaches one coupon tunnel: 云数汇 (Lakala appid, our certificate serial, the
    云数汇 member id, the platform and notification certificates) or WeChat Pay direct (mchid,
    appid, serial). Private keys and API keys live encrypted in `secrets_enc`."""

    __tablename__ = "tunnel_accounts"
    __table_args__ = (
        UniqueConstraint("org_id", "tunnel", name="uq_tunnel_accounts_org_tunnel"),
        CheckConstraint("tunnel IN ('yunshuhui','direct')", name="tunnel"),
        CheckConstraint("status IN ('active','disabled')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tunnel: Mapped[str] = mapped_column(String(16), nullable=False)
    base_url: Mapped[str] = mapped_column(String(255), nullable=False)
    # 云数汇 OpenID hand-off page for this bank (the visitor is sent there with ?wmcb=...).
    openid_url: Mapped[str | None] = mapped_column(String(255))
    app_id: Mapped[str] = mapped_column(String(64), nullable=False)
    serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    member_id: Mapped[str | None] = mapped_column(String(20))  # 云数汇 member_id; WeChat mchid
    # Public certificates (PEM) of the platform, by serial: {"<serial>": "-----BEGIN CERTIFICATE..."}.
    platform_certs: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    notify_cert: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")


class BankApiClient(TenantOwned, Timestamped, db.Model):
    """A bank's back-end calling our `/api/v1/`: it signs with its key (we keep its certificate),
    we sign answers and notifications with a key pair of our own made for this client."""

    __tablename__ = "bank_api_clients"
    __table_args__ = (CheckConstraint("status IN ('active','disabled')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    client_serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    client_cert: Mapped[str] = mapped_column(Text, nullable=False)
    our_serial_no: Mapped[str] = mapped_column(String(64), nullable=False)
    our_cert: Mapped[str] = mapped_column(Text, nullable=False)
    our_private_key_enc: Mapped[str] = mapped_column(Text, nullable=False)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, nullable=False, default=6000)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    # Hosts the bank may name as its H5 redirect and notification URLs ("h5.bank.com", "h5.bank.com:8443",
    # "*.bank.com"); an empty list refuses every redirect and notification URL (migration 0013).
    allowed_hosts: Mapped[list] = mapped_column(JSON, nullable=False, default=list, server_default="[]")

    @property
    def our_private_key(self) -> str:
        return crypto.decrypt(self.our_private_key_enc) or ""

    @our_private_key.setter
    def our_private_key(self, pem: str) -> None:
        self.our_private_key_enc = crypto.encrypt(pem)


class CouponActivity(TenantOwned, Timestamped, db.Model):
    """A coupon activity (活动优惠券): one coupon batch on one tunnel and channel.

    Its status is derived from time and `terminated_at` (not started → running → ended, or
    terminated by hand); `enabled` is the separate 生效 / 失效 switch. `issued_count` is the
    counter the issue API moves atomically against `issue_total`.
    """

    __tablename__ = "coupon_activities"
    __table_args__ = (
        CheckConstraint("tunnel IN ('yunshuhui','internal','direct','other')", name="tunnel"),
        CheckConstraint("channel IN ('wechat','alipay','unionpay')", name="channel"),
        CheckConstraint("coupon_type IN ('threshold','discount','cash')", name="coupon_type"),
        CheckConstraint("valid_type IN ('absolute','relative')", name="valid_type"),
        CheckConstraint("settle_type IS NULL OR settle_type IN ('bank','merchant','proportional')", name="settle_type"),
        CheckConstraint("end_at > start_at", name="window"),
        CheckConstraint("promo_amount_fen >= 0", name="promo_amount"),
        CheckConstraint("threshold_fen >= 0", name="threshold"),
        CheckConstraint("issue_total > 0", name="issue_total"),
        CheckConstraint("per_member_limit > 0", name="per_member_limit"),
        CheckConstraint("issued_count >= 0 AND issued_count <= issue_total", name="issued_within_total"),
        CheckConstraint("settle_rate_bp IS NULL OR (settle_rate_bp >= 0 AND settle_rate_bp <= 10000)", name="settle_rate"),
        Index("ix_coupon_activities_org_created", "org_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)  # WX5000000074_1642492800
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    theme_activity_id: Mapped[int | None] = mapped_column(ForeignKey("theme_activities.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    tunnel: Mapped[str] = mapped_column(String(16), nullable=False, default="yunshuhui")
    channel: Mapped[str] = mapped_column(String(16), nullable=False, default="wechat")
    coupon_type: Mapped[str] = mapped_column(String(16), nullable=False, default="threshold")
    batch_no: Mapped[str] = mapped_column(String(9), nullable=False, index=True)  # 云数汇 batchCode
    # 云数汇's own identifiers of the batch (issue call fields activity_id, owner_id, promotion_id).
    upstream_activity_id: Mapped[str | None] = mapped_column(String(10))
    owner_id: Mapped[str | None] = mapped_column(String(8))
    promotion_id: Mapped[str | None] = mapped_column(String(32))
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    promo_amount_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # face value
    discount_bp: Mapped[int | None] = mapped_column(Integer)  # 折扣: 9000 = 9折
    threshold_fen: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # 满 X 元可用; 0 none
    valid_type: Mapped[str] = mapped_column(String(16), nullable=False, default="absolute")
    valid_days: Mapped[int | None] = mapped_column(Integer)
    issue_total: Mapped[int] = mapped_column(Integer, nullable=False)
    per_member_limit: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    issued_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    show_in_miniprogram: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    settled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    settle_type: Mapped[str | None] = mapped_column(String(16))
    settle_rate_bp: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(String(256))  # usage notes
    usage_rules: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    terminated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))

    def status_at(self, now: datetime) -> str:
        """not_started / running / ended / terminated (naive times, as SQLite returns them, are UTC)."""
        if self.terminated_at is not None:
            return "terminated"
        now = as_utc(now)
        if now < as_utc(self.start_at):
            return "not_started"
        if now >= as_utc(self.end_at):
            return "ended"
        return "running"

    @property
    def status(self) -> str:
        return self.status_at(utcnow())


class CouponMemberCount(db.Model):
    """How many coupons of one activity one customer (by keyed hash of the openid) has been given;
    the per-member limit is enforced by an atomic upsert on this row."""

    __tablename__ = "coupon_member_counts"
    __table_args__ = (CheckConstraint("issued >= 0", name="issued"),)

    coupon_activity_id: Mapped[int] = mapped_column(ForeignKey("coupon_activities.id"), primary_key=True)
    openid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class CouponIssue(TenantOwned, Timestamped, db.Model):
    """One coupon issued (or being issued) to one customer, updated by answers, callbacks and queries.

    `call_trade_no` is the bank's serial (its idempotency key); `order_no` is ours, sent upstream as
    `mer_order_id`. The openid is personal data: encrypted, with a keyed hash and a masked form.
    """

    __tablename__ = "coupon_issues"
    __table_args__ = (
        UniqueConstraint("org_id", "call_trade_no", name="uq_coupon_issues_org_call_trade_no"),
        CheckConstraint("status IN ('queued','processing','succeeded','failed')", name="status"),
        CheckConstraint("redemption_status IS NULL OR redemption_status IN ('used','expired')", name="redemption_status"),
        Index("ix_coupon_issues_activity_status", "coupon_activity_id", "status"),
        Index("ix_coupon_issues_org_created", "org_id", "created_at"),
        Index("ix_coupon_issues_org_used", "org_id", "used_at"),
        Index("ix_coupon_issues_openid_hash", "openid_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    call_trade_no: Mapped[str] = mapped_column(String(64), nullable=False)
    coupon_activity_id: Mapped[int] = mapped_column(ForeignKey("coupon_activities.id"), nullable=False)
    api_client_id: Mapped[int | None] = mapped_column(ForeignKey("bank_api_clients.id"))
    openid_enc: Mapped[str] = mapped_column(Text, nullable=False)
    openid_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    openid_masked: Mapped[str] = mapped_column(String(40), nullable=False)
    bank_member_id: Mapped[str | None] = mapped_column(String(64))  # the bank's own id of its customer
    write_off_notify: Mapped[str | None] = mapped_column(String(500))
    post_notify: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # What 云数汇 said: resCode / failMsg / trade_status and its identifiers of the coupon.
    res_code: Mapped[str | None] = mapped_column(String(16))
    fail_msg: Mapped[str | None] = mapped_column(String(500))
    trade_status: Mapped[str | None] = mapped_column(String(16))
    third_coupon_id: Mapped[str | None] = mapped_column(String(64), index=True)
    trade_no: Mapped[str | None] = mapped_column(String(64))
    batch_code: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settled_by: Mapped[str | None] = mapped_column(String(16))  # answer | callback | query
    # Redemption (核销), from the redemption callback or a query.
    redemption_status: Mapped[str | None] = mapped_column(String(16))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    promo_amount_fen: Mapped[int | None] = mapped_column(Integer)
    total_amount_fen: Mapped[int | None] = mapped_column(Integer)
    org_amount_fen: Mapped[int | None] = mapped_column(Integer)
    redemption_trade_no: Mapped[str | None] = mapped_column(String(64))
    merchant_no: Mapped[str | None] = mapped_column(String(64))
    merchant_name: Mapped[str | None] = mapped_column(String(100))
    last_queried_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    activity: Mapped[CouponActivity] = relationship(lazy="joined")

    @property
    def openid(self) -> str | None:
        return crypto.decrypt(self.openid_enc)


def mask_openid(openid: str) -> str:
    """Keep the first 4 and last 4 characters: oUpF****Y3Jw."""
    if len(openid) <= 8:
        return openid[:1] + "****"
    return f"{openid[:4]}****{openid[-4:]}"


class CouponCallback(Timestamped, db.Model):
    """Every callback 云数汇 (or WeChat) sent us, verified or not, and what we did with it.

    `event_key` makes a notification apply once: a duplicate finds the key taken and changes
    nothing. `issue_org_id` is set once the callback is matched to an issue.
    """

    __tablename__ = "coupon_callbacks"
    __table_args__ = (
        CheckConstraint("kind IN ('issuance','redemption','wechat_use')", name="kind"),
        CheckConstraint("outcome IN ('applied','duplicate','rejected','unknown','stale')", name="outcome"),
        Index("ix_coupon_callbacks_issue", "issue_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    headers: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(500))
    event_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("coupon_issues.id"))
    issue_org_id: Mapped[int | None] = mapped_column(Integer, index=True)
    tunnel_account_id: Mapped[int | None] = mapped_column(Integer)  # the account whose URL it came to (0013)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class BankNotification(TenantOwned, Timestamped, db.Model):
    """One notification we owe a bank (issuance result to postNotify, redemption to
    writeOffNotify), delivered through the outbox; `event_key` keeps it from being sent twice."""

    __tablename__ = "bank_notifications"
    __table_args__ = (
        CheckConstraint("kind IN ('issuance','redemption')", name="kind"),
        CheckConstraint("status IN ('pending','delivered','failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("coupon_issues.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    event_key: Mapped[str] = mapped_column(String(160), unique=True, nullable=False)
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    payload: Mapped[dict] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outbox_message_id: Mapped[int | None] = mapped_column(Integer)


class BankNotificationAttempt(db.Model):
    """One try at delivering a bank notification: when, what the bank answered, how long it took."""

    __tablename__ = "bank_notification_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("bank_notifications.id"), nullable=False, index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    http_status: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class CouponReconciliationItem(TenantOwned, Timestamped, db.Model):
    """A difference between our issue row and what 云数汇 says when queried."""

    __tablename__ = "coupon_reconciliation_items"
    __table_args__ = (
        CheckConstraint("status IN ('open','resolved')", name="status"),
        UniqueConstraint("issue_id", "field", "theirs", name="uq_coupon_reconciliation_items_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("coupon_issues.id"), nullable=False, index=True)
    field: Mapped[str] = mapped_column(String(32), nullable=False)  # trade_status | redemption_status | amount
    ours: Mapped[str | None] = mapped_column(String(100))
    theirs: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
