"""Demo data of the joint-marketing line, seeded by `flask demo seed` (idempotent: a second run
changes nothing): master data, the demo bank's tunnel accounts on the built-in sandboxes, its bank
API client, a theme activity with its coupon activities, and issues over the last 60 days.

What is made, for the demo bank BANK-EAST (BANK-SOUTH gets its master-data row too):
- partner-bank rows for both demo banks, two institutions and three position numbers (through
  `app.coupons.masterdata`, audited);
- a 云数汇 and a WeChat Pay direct tunnel account, connected to the sandboxes served at
  PUBLIC_BASE_URL (`settings.connect_to_sandbox`, as the console's "connect to the sandbox"
  does), the direct account's COUPON.USE notifications pointed at us and a 代金券 stock made;
- a bank API client whose key pair is made here: the bank's private key is written to
  `key_file` (by default instance/demo-bank-client.pem) so a person can sign requests
  (`flask coupons demo-issue`); if the file is lost, a new pair replaces the client's certificate;
- a theme activity (rows; its wheel, prizes and draws are app/activities/demo.py's) and four coupon activities
  (`activities.create_activity`, each "created" on its start day): WeChat and Alipay through
  云数汇, running; UnionPay through 云数汇, ended ten days ago; WeChat through the direct tunnel;
- about 50 issues: 47 settled ones spread over the last 60 days (succeeded, used, expired,
  failed), written as rows with the activity's issued count and the customers' counts made
  to match them; and 3 accepted just now through the real `issuance.accept_issue`, queued for
  the workers (the pipeline issues them through the sandbox once the app runs).
The settled history lives in our tables only: the sandbox knows the coupons issued from now on.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from app.activities.models import ThemeActivity, ThemeActivityBank, ThemeActivityInstitution
from app.core import crypto
from app.core.timeutil import BUSINESS_TZ, utcnow
from app.coupons import activities as coupon_activities
from app.coupons import masterdata, settings
from app.coupons.models import (BankApiClient, CouponActivity, CouponIssue, CouponMemberCount, Institution, PartnerBank,
                                PositionNumber, TunnelAccount, mask_openid)
from app.extensions import db
from app.providers import lklapi

DEMO_BANK = "BANK-EAST"
CLIENT_NAME = "华东银行营销系统（演示）"
KEY_FILE_NAME = "demo-bank-client.pem"
# org code, 8-digit code, standard code, contact
PARTNER_BANKS = [("BANK-EAST", "31000001", "HDSF", "赵敏", "021-68881234"),
                 ("BANK-SOUTH", "31000002", "HNSF", "钱进", "020-38881234")]
INSTITUTIONS = [("21000001", "华东示范银行上海分行", "commercial", "孙立", "13800000001"),
                ("21000002", "华东示范银行杭州分行", "commercial", "李想", "13800000002")]
POSITIONS = [("31000001000000000000001", "华东银行营销费用头寸"), ("31000001000000000000002", "华东银行信用卡中心头寸"),
             ("31000002000000000000001", "华南银行营销费用头寸")]
THEME_NAME = "华东银行2026用卡节"
SANDBOX_STOCK_NAME = "华东银行直连代金券8元"
HISTORY_SEED = 20260601


@dataclass(frozen=True)
class DemoActivity:
    key: str
    name: str
    channel: str
    tunnel: str
    coupon_type: str
    batch_no: str
    face_fen: int
    threshold_fen: int
    issue_total: int
    per_member_limit: int
    start_days_ago: int
    end_days_ahead: int  # negative: ended that many days ago
    history: int  # settled issues to write over its window
    upstream_activity_id: str | None = None
    owner_id: str | None = None
    promotion_id: str | None = None


ACTIVITIES = [
    DemoActivity("wechat", "华东银行微信满100减10", "wechat", "yunshuhui", "threshold", "310000101", 1000, 10000, 500, 2,
                 62, 60, 24, "3100000101", "31000001", "HDWX2026"),
    DemoActivity("alipay", "华东银行支付宝满50减5", "alipay", "yunshuhui", "threshold", "310000102", 500, 5000, 300, 1,
                 45, 45, 13, "3100000102", "31000001", "HDZFB2026"),
    DemoActivity("unionpay", "华东银行云闪付满200减20（已结束）", "unionpay", "yunshuhui", "threshold", "310000103", 2000,
                 20000, 200, 1, 70, -10, 10, "3100000103", "31000001", "HDYSF2026"),
    DemoActivity("direct", "华东银行微信代金券8元（直连）", "wechat", "direct", "cash", "310000104", 800, 0, 1000, 1,
                 20, 40, 0),
]
LIVE_ISSUES = 3  # accepted now through the bank API's service, for the pipeline to issue
MERCHANTS = [("822290059430001", "云数汇沙箱商户"), ("822290059430002", "全家便利店（徐汇店）"),
             ("822290059430003", "星巴克（陆家嘴店）"), ("822290059430004", "盒马鲜生（静安店）")]
FAIL_REASONS = [("999999", "库存不足"), ("999999", "用户领取超限"), ("100002", "用户未绑定支付账户")]


def seed_coupon_demo(orgs: dict, key_file: Path | None = None) -> dict:
    """Seed (or complete) the coupon demo; returns what a person needs to try the API."""
    bank_org = orgs[DEMO_BANK]
    partner_banks = _seed_master_data(orgs)
    institutions = list(db.session.execute(select(Institution).where(
        Institution.code.in_([row[0] for row in INSTITUTIONS])).order_by(Institution.code)).scalars())
    site = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    accounts = _seed_tunnel_accounts(bank_org, site)
    key_file = key_file or default_key_file()
    client = _seed_api_client(bank_org, key_file, site)
    theme = _seed_theme(bank_org, partner_banks[DEMO_BANK], institutions)
    activities = _seed_activities(bank_org, theme, institutions[0], accounts)
    _seed_history(bank_org, client, activities, site)
    _seed_live_issues(client, activities["wechat"], site)
    return {"client": client, "theme": theme, "activities": activities, "accounts": accounts, "key_file": key_file}


def default_key_file() -> Path:
    return Path(current_app.instance_path) / KEY_FILE_NAME


# --- master data ---------------------------------------------------------------------------------

def _seed_master_data(orgs: dict) -> dict[str, PartnerBank]:
    banks = {}
    for org_code, code, standard, contact, phone in PARTNER_BANKS:
        org = orgs[org_code]
        bank = db.session.execute(select(PartnerBank).where(PartnerBank.org_id == org.id)).scalar_one_or_none()
        if bank is None:
            bank = masterdata.create_party(PartnerBank, masterdata.PartyDetails(
                code=code, name=org.name, kind="commercial", contact_name=contact, contact_phone=phone,
                standard_code=standard), org)
        banks[org_code] = bank
    for code, name, kind, contact, phone in INSTITUTIONS:
        if not db.session.execute(select(Institution.id).where(Institution.code == code)).first():
            masterdata.create_party(Institution, masterdata.PartyDetails(code=code, name=name, kind=kind,
                                                                         contact_name=contact, contact_phone=phone))
    for number, note in POSITIONS:
        if not db.session.execute(select(PositionNumber.id).where(PositionNumber.number == number)).first():
            masterdata.add_position_number(number, note)
    return banks


# --- tunnels and the API client ------------------------------------------------------------------

def _seed_tunnel_accounts(bank_org, site: str) -> dict[str, TunnelAccount]:
    from app.sandbox import wechatpay as wx_sandbox
    from app.sandbox import yunshuhui as ysh_sandbox

    accounts = {}
    for tunnel in ("yunshuhui", "direct"):
        account = db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == bank_org.id,
                                                                 TunnelAccount.tunnel == tunnel)).scalar_one_or_none()
        if account is None:
            account = settings.connect_to_sandbox(bank_org, tunnel, site).account
            if tunnel == "direct":
                wx_sandbox.set_notify_url(account.member_id, f"{site}/callbacks/wechatpay/{account.id}/coupon-use")
        accounts[tunnel] = account
    for spec in ACTIVITIES:
        if spec.tunnel == "yunshuhui":
            ysh_sandbox.define_activity(spec.upstream_activity_id, spec.name[:40], face_value_fen=spec.face_fen,
                                        threshold_fen=spec.threshold_fen, valid_days=30)
    return accounts


def _sandbox_stock(mchid: str, spec: DemoActivity) -> str:
    """The direct activity's 代金券 stock in the WeChat Pay sandbox (made once)."""
    from app.sandbox import wechatpay as wx_sandbox
    from app.sandbox.wechatpay_models import SandboxWxpayStock

    merchant = wx_sandbox.merchant_by_mchid(mchid)
    stock = db.session.execute(select(SandboxWxpayStock).where(SandboxWxpayStock.merchant_id == merchant.id,
                                                               SandboxWxpayStock.name == SANDBOX_STOCK_NAME)
                               ).scalar_one_or_none()
    if stock is None:
        stock = wx_sandbox.create_stock(mchid, coupon_amount_fen=spec.face_fen, max_coupons=spec.issue_total,
                                        max_coupons_per_user=spec.per_member_limit, name=SANDBOX_STOCK_NAME,
                                        available_days=spec.end_days_ahead + spec.start_days_ago + 30)
    return stock.stock_id


def _seed_api_client(bank_org, key_file: Path, site: str) -> BankApiClient:
    """The demo bank's API client, and the bank's private key in `key_file` (written again, with a
    new key pair, when missing or not the client's)."""
    client = db.session.execute(select(BankApiClient).where(BankApiClient.org_id == bank_org.id,
                                                            BankApiClient.name == CLIENT_NAME)).scalar_one_or_none()
    if client is not None and key_file.exists() and settings.key_matches(key_file.read_text(), client.client_cert):
        return client
    private_pem, cert_pem, _serial = lklapi.new_key_pair("华东示范银行营销系统")
    hosts = sorted({"127.0.0.1", "localhost", urlsplit(site).hostname or "localhost"})
    details = settings.ApiClientDetails(name=CLIENT_NAME, rate_limit_per_minute=600, client_cert_pem=cert_pem,
                                        allowed_hosts=hosts)
    if client is None:
        client = settings.create_api_client(bank_org, details)
    else:
        client = settings.update_api_client(client, details)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600, exist_ok=True)
    key_file.chmod(0o600)
    key_file.write_text(private_pem)
    return client


# --- the theme and its coupon activities ---------------------------------------------------------

def _seed_theme(bank_org, partner_bank: PartnerBank, institutions: list[Institution]) -> ThemeActivity:
    from app.activities.services import next_theme_no

    theme = db.session.execute(select(ThemeActivity).where(ThemeActivity.org_id == bank_org.id,
                                                           ThemeActivity.name == THEME_NAME)).scalar_one_or_none()
    if theme is not None:
        return theme
    now = utcnow()
    theme = ThemeActivity(theme_no=next_theme_no(), name=THEME_NAME, org_id=bank_org.id,
                          institution_id=institutions[0].id, partner_bank_id=partner_bank.id,
                          position_no=POSITIONS[0][0], start_at=_day_start(now - timedelta(days=90)),
                          end_at=_day_start(now + timedelta(days=120)), status="active", wheel_enabled=False,
                          rules="活动期间，华东示范银行信用卡持卡人每人每天可抽奖一次，整个活动期间最多十次；奖品有微信立减券、"
                                "积分、现金红包和联名保温杯，先到先得，抽完即止。实物奖品请在“我的奖品”中填写收货地址。",
                          participation_limit=10, daily_limit=1)
    db.session.add(theme)
    db.session.flush()
    db.session.add_all([ThemeActivityInstitution(theme_activity_id=theme.id, institution_id=i.id) for i in institutions]
                       + [ThemeActivityBank(theme_activity_id=theme.id, partner_bank_id=partner_bank.id)])
    db.session.commit()
    return theme


def _day_start(moment: datetime) -> datetime:
    """Midnight in Beijing of the day `moment` falls on (activities start on a whole day)."""
    local = moment.astimezone(BUSINESS_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _seed_activities(bank_org, theme: ThemeActivity, institution: Institution,
                     accounts: dict[str, TunnelAccount]) -> dict[str, CouponActivity]:
    from app.auth.models import Operator

    admin = db.session.execute(select(Operator).where(Operator.username == "admin")).scalar_one()
    now = utcnow()
    seeded = {}
    for spec in ACTIVITIES:
        activity = db.session.execute(select(CouponActivity).where(CouponActivity.name == spec.name)
                                      ).scalar_one_or_none()
        if activity is None:
            start = _day_start(now - timedelta(days=spec.start_days_ago))
            end = _day_start(now + timedelta(days=spec.end_days_ahead))
            promotion_id = spec.promotion_id or _sandbox_stock(accounts["direct"].member_id, spec)
            details = coupon_activities.ActivityDetails(
                name=spec.name, theme_no=theme.theme_no, institution_id=institution.id, tunnel=spec.tunnel,
                channel=spec.channel, coupon_type=spec.coupon_type, batch_no=spec.batch_no,
                upstream_activity_id=spec.upstream_activity_id, owner_id=spec.owner_id, promotion_id=promotion_id,
                start_at=start, end_at=end, promo_amount_fen=spec.face_fen, threshold_fen=spec.threshold_fen,
                valid_type="relative", valid_days=30, issue_total=spec.issue_total,
                per_member_limit=spec.per_member_limit, settled=True, settle_type="bank",
                description=f"满{spec.threshold_fen // 100}元可用" if spec.threshold_fen else "无门槛",
                usage_rules="仅限华东示范银行信用卡支付时使用，每笔订单限用一张，不找零、不兑现。")
            activity = coupon_activities.create_activity(admin, details, now=start)  # "created" on its first day
            if spec.tunnel == "direct" and activity.promotion_id != promotion_id:
                # The activity rules drop promotion_id outside 云数汇, but the direct tunnel sends
                # coupons of the WeChat Pay stock it names: set it on the row.
                activity.promotion_id = promotion_id
                db.session.commit()
        seeded[spec.key] = activity
    return seeded


# --- issues ----------------------------------------------------------------------------------------

def _openid(activity_key: str, n: int) -> str:
    return f"oDemo{activity_key[:3]}{n:04d}" + "x" * 16


def _notify_urls(site: str) -> tuple[str, str]:
    return f"{site}/sandbox/bank/notify/redeemed", f"{site}/sandbox/bank/notify/issued"


def _seed_history(bank_org, client: BankApiClient, activities: dict[str, CouponActivity], site: str) -> None:
    """Settled issues over each activity's window so far (rows), then counts made to match them."""
    rng = random.Random(HISTORY_SEED)
    have = set(db.session.execute(select(CouponIssue.call_trade_no).where(
        CouponIssue.org_id == bank_org.id, CouponIssue.call_trade_no.like("DEMOH%"))).scalars())
    now = utcnow()
    write_off, post = _notify_urls(site)
    for spec in ACTIVITIES:
        activity = activities[spec.key]
        first = max(activity.start_at, now - timedelta(days=60))
        last = min(activity.end_at, now) - timedelta(hours=6)
        for n in range(spec.history):
            at = first + (last - first) * rng.random()  # drawn for every row, so a rerun draws the same
            at = min(at.astimezone(BUSINESS_TZ).replace(hour=rng.randint(9, 21), minute=rng.randint(0, 59)), last)
            outcome = rng.choices(("used", "unused", "expired", "failed"), weights=(55, 25, 8, 12))[0]
            call_trade_no = f"DEMOH{spec.batch_no}{n:03d}"
            if call_trade_no not in have:
                db.session.add(_history_issue(rng, bank_org, client, activity, spec, n, at, outcome, now,
                                              call_trade_no, write_off, post))
    db.session.flush()
    for spec in ACTIVITIES:
        recount(activities[spec.key])
    db.session.commit()


def _history_issue(rng: random.Random, bank_org, client: BankApiClient, activity: CouponActivity,
                   spec: DemoActivity, n: int, at: datetime, outcome: str, now: datetime, call_trade_no: str,
                   write_off: str, post: str) -> CouponIssue:
    from app.coupons.issuance import new_order_no

    openid = _openid(spec.key, n)
    issue = CouponIssue(org_id=bank_org.id, order_no=new_order_no(), call_trade_no=call_trade_no,
                        coupon_activity_id=activity.id, api_client_id=client.id, openid_enc=crypto.encrypt(openid),
                        openid_hash=crypto.lookup_hash(openid), openid_masked=mask_openid(openid),
                        bank_member_id=f"EAST{n:06d}", write_off_notify=write_off, post_notify=post, attempts=1,
                        settled_by="answer", created_at=at, updated_at=at + timedelta(seconds=2))
    day = at.astimezone(BUSINESS_TZ).strftime("%Y%m%d")
    if outcome == "failed":
        issue.status, issue.trade_status = "failed", "FAIL"
        issue.res_code, issue.fail_msg = rng.choice(FAIL_REASONS)
        return issue
    issue.status, issue.trade_status, issue.res_code = "succeeded", "SUCCESS", "000000"
    issue.issued_at = at + timedelta(seconds=2)
    issue.third_coupon_id = f"CP{day}{rng.randrange(10 ** 12):012d}"
    issue.trade_no = f"YT{day}{rng.randrange(10 ** 12):012d}"
    issue.batch_code = f"B{spec.upstream_activity_id}"
    if outcome == "used":
        used = min(at + timedelta(hours=rng.uniform(0.5, 24 * 6)), activity.end_at - timedelta(minutes=5),
                   now - timedelta(hours=1))
        order = max(spec.threshold_fen, spec.face_fen) + rng.randrange(100, 30000)
        merchant_no, merchant_name = rng.choice(MERCHANTS)
        issue.redemption_status, issue.used_at = "used", used
        issue.promo_amount_fen, issue.total_amount_fen, issue.org_amount_fen = spec.face_fen, order, spec.face_fen
        issue.merchant_no, issue.merchant_name = merchant_no, merchant_name
        issue.redemption_trade_no = f"PT{used.astimezone(BUSINESS_TZ):%Y%m%d}{rng.randrange(10 ** 12):012d}"
        issue.updated_at = used
    elif outcome == "expired" and at + timedelta(days=30) < now:
        issue.redemption_status, issue.used_at = "expired", at + timedelta(days=30)
        issue.updated_at = issue.used_at
    return issue


def recount(activity: CouponActivity) -> None:
    """Make the activity's issued count and its customers' counts what its issues say: every issue
    not failed holds one coupon of the stock and one of its customer's limit."""
    holding = CouponIssue.status != "failed"
    per_customer = dict(db.session.execute(
        select(CouponIssue.openid_hash, func.count()).where(CouponIssue.coupon_activity_id == activity.id, holding)
        .group_by(CouponIssue.openid_hash)).all())
    stored = {row.openid_hash: row for row in db.session.execute(select(CouponMemberCount).where(
        CouponMemberCount.coupon_activity_id == activity.id)).scalars()}
    for openid_hash, row in stored.items():
        row.issued = per_customer.get(openid_hash, 0)
    for openid_hash, issued in per_customer.items():
        if openid_hash not in stored:
            db.session.add(CouponMemberCount(coupon_activity_id=activity.id, openid_hash=openid_hash, issued=issued))
    activity.issued_count = sum(per_customer.values())


def _seed_live_issues(client: BankApiClient, activity: CouponActivity, site: str) -> None:
    """A few issues accepted now as the bank API accepts them (counted, queued in the outbox)."""
    from app.coupons import issuance

    if activity.status != "running":
        return
    write_off, post = _notify_urls(site)
    for n in range(LIVE_ISSUES):
        call_trade_no = f"DEMOL{n:03d}"
        known = db.session.execute(select(CouponIssue.id).where(CouponIssue.org_id == client.org_id,
                                                                CouponIssue.call_trade_no == call_trade_no)).first()
        if known is None:
            issuance.accept_issue(client, {"openId": _openid("live", n), "activityCode": activity.code,
                                           "callTradeNo": call_trade_no, "memberId": f"EASTL{n:05d}",
                                           "writeOffNotify": write_off, "postNotify": post})


def counters_match(activity: CouponActivity) -> bool:
    """The invariant the seed keeps (and the issue API keeps under load): the issued count and the
    customers' counts equal the issues not failed."""
    holding = db.session.execute(select(func.count()).where(CouponIssue.coupon_activity_id == activity.id,
                                                            CouponIssue.status != "failed")).scalar_one()
    mismatched = db.session.execute(
        select(func.count()).select_from(CouponMemberCount).where(
            CouponMemberCount.coupon_activity_id == activity.id,
            CouponMemberCount.issued != select(func.count()).where(
                CouponIssue.coupon_activity_id == activity.id, CouponIssue.openid_hash == CouponMemberCount.openid_hash,
                CouponIssue.status != "failed").scalar_subquery())).scalar_one()
    total = db.session.execute(select(func.coalesce(func.sum(CouponMemberCount.issued), 0)).where(
        CouponMemberCount.coupon_activity_id == activity.id)).scalar_one()
    return activity.issued_count == holding == total and mismatched == 0
