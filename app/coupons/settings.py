"""Coupon tunnel accounts and the banks' API clients: saving them, checking the certificates and
keys people paste, generating our own key pairs, and connecting a bank to the built-in sandboxes.

A tunnel account (`TunnelAccount`) is how one bank reaches one coupon tunnel: 云数汇 or WeChat Pay
direct. Its secrets are kept encrypted in `TunnelAccount.secrets` under these names, which the
clients read (`app.providers.yunshuhui`, `app.providers.wechatpay`):
  "private_key"  our RSA private key (PEM) that signs requests to the tunnel;
  "apiv3_key"    the WeChat Pay APIv3 key (direct tunnel only);
  "certificate"  our certificate (PEM) for that key, when we generated it or it was pasted: public,
                 offered for download so the bank can give it to 云数汇 / WeChat Pay.
A secret is never shown again once saved: screens show that it is set and a fingerprint.

A bank API client (`BankApiClient`) is a bank's back-end calling our `/api/v1/`: we hold the bank's
certificate (its serial read from it), and make a key pair of our own per client whose certificate
the bank downloads to check our answers and notifications. `app.coupons.bank_auth` authenticates
the calls; this module is the console's side of the same rows.

Every change is audited: fields before and after, certificate serials and key fingerprints, and
the names of secrets that changed, never their values.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.core import audit
from app.core.models import public_code
from app.core.timeutil import format_local, utcnow
from app.coupons import bank_auth
from app.coupons.models import BankApiClient, TunnelAccount
from app.extensions import db
from app.orgs.models import Organisation
from app.providers import lklapi

TUNNEL_LABELS = {"yunshuhui": _l("云数汇"), "direct": _l("WeChat Pay direct")}
STATUS_LABELS = {"active": _l("Active"), "disabled": _l("Disabled")}
PRIVATE_KEY, APIV3_KEY, OUR_CERTIFICATE = "private_key", "apiv3_key", "certificate"
RATE_LIMIT_RANGE = (1, 100_000)
URL_MAX = 255
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_SERIAL = re.compile(r"[0-9A-Fa-f]{1,64}")
_MEMBER_ID = {"yunshuhui": re.compile(r"[0-9A-Za-z]{10,20}"), "direct": re.compile(r"\d{1,20}")}
_HOST = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?")

audit.ACTION_LABELS.update({
    "tunnel_account.save": _l("Saved a coupon tunnel account"),
    "tunnel_account.remove_certificate": _l("Removed a tunnel platform certificate"),
    "tunnel_account.disable": _l("Disabled a coupon tunnel account"),
    "tunnel_account.enable": _l("Enabled a coupon tunnel account"),
    "tunnel_account.sandbox": _l("Connected a bank to a tunnel sandbox"),
    "bank_api_client.update": _l("Edited a bank API client"),
    "bank_api_client.rotate_key": _l("Rotated our key for a bank API client"),
    "bank_api_client.disable": _l("Disabled a bank API client"),
    "bank_api_client.enable": _l("Enabled a bank API client"),
})


class SettingsError(ValueError):
    """A setting the rules refuse; `field` names the form field the message belongs beside."""

    def __init__(self, message: str, field: str = "base_url"):
        super().__init__(message)
        self.field = field


# --- certificates and keys --------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateInfo:
    """What a person needs to know of a certificate: its serial, who it names, until when."""

    pem: str
    serial: str
    subject: str
    not_after: datetime

    @property
    def expires(self) -> str:
        return format_local(self.not_after)


def _certificate_info(cert: x509.Certificate) -> CertificateInfo:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    return CertificateInfo(pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                           serial=format(cert.serial_number, "x"), subject=subject,
                           not_after=cert.not_valid_after_utc)


def describe_certificate(pem: str | None) -> CertificateInfo | None:
    """A stored certificate for display (None when there is none or it cannot be read)."""
    try:
        return _certificate_info(x509.load_pem_x509_certificate((pem or "").encode())) if pem else None
    except ValueError:
        return None


def read_certificates(text: str | None, field: str, what: str) -> list[CertificateInfo]:
    """The certificates pasted into a field (one or several PEM blocks), each readable and unexpired."""
    text = (text or "").strip()
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        if "PRIVATE KEY" in text:
            raise SettingsError(_("This is a private key, not a certificate. Paste %(what)s, which starts with "
                                  "-----BEGIN CERTIFICATE-----.", what=what), field)
        raise SettingsError(_("This is not a PEM certificate: paste %(what)s from -----BEGIN CERTIFICATE----- to "
                              "-----END CERTIFICATE-----, both lines included.", what=what), field)
    infos = []
    for block in blocks:
        try:
            info = _certificate_info(x509.load_pem_x509_certificate(block.encode()))
        except ValueError:
            raise SettingsError(_("A certificate could not be read: it may be cut short or altered. Copy it again "
                                  "from the file, both BEGIN and END lines included."), field) from None
        if info.not_after <= utcnow():
            raise SettingsError(_("The certificate with serial %(serial)s expired on %(when)s. Ask for a current one.",
                                  serial=info.serial, when=info.expires), field)
        infos.append(info)
    return infos


def read_certificate(text: str | None, field: str, what: str) -> CertificateInfo:
    infos = read_certificates(text, field, what)
    if len(infos) != 1:
        raise SettingsError(_("Paste exactly one certificate here (%(n)s found).", n=len(infos)), field)
    return infos[0]


def read_private_key(text: str | None, field: str = "private_key") -> str:
    """A pasted RSA private key (PKCS#1 or PKCS#8 PEM, unencrypted, ≥2048 bits), as PKCS#8 PEM."""
    text = (text or "").strip()
    if "ENCRYPTED" in text:
        raise SettingsError(_("This private key is protected by a password. Paste it unencrypted: it is stored "
                              "encrypted here."), field)
    if "PRIVATE KEY-----" not in text:
        what = _("a certificate") if "CERTIFICATE" in text else _("not a PEM private key")
        raise SettingsError(_("This is %(what)s. Paste the private key, which starts with -----BEGIN PRIVATE "
                              "KEY----- (or -----BEGIN RSA PRIVATE KEY-----).", what=what), field)
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise SettingsError(_("The private key could not be read: it may be cut short or altered. Copy it again, "
                              "both BEGIN and END lines included."), field) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SettingsError(_("Only RSA keys can sign SHA256withRSA. Paste an RSA private key."), field)
    if key.key_size < 2048:
        raise SettingsError(_("The key has %(n)s bits; at least 2048 are needed.", n=key.key_size), field)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _public_der(pem: str) -> bytes:
    if "CERTIFICATE" in pem:
        public = x509.load_pem_x509_certificate(pem.encode()).public_key()
    else:
        public = serialization.load_pem_private_key(pem.encode(), password=None).public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(pem: str | None) -> str | None:
    """SHA-256 of the public key, first 8 bytes: the same for a private key and its certificate."""
    if not pem:
        return None
    digest = hashlib.sha256(_public_der(pem)).hexdigest()[:16]
    return ":".join(digest[i:i + 2] for i in range(0, 16, 2))


def key_matches(private_pem: str, cert_pem: str) -> bool:
    return _public_der(private_pem) == _public_der(cert_pem)


def _secret_fingerprint(value: str | None) -> str | None:
    """A short fingerprint of a symmetric secret, enough to tell two apart, useless to recover it."""
    return hashlib.sha256(value.encode()).hexdigest()[:8] if value else None


# --- tunnel accounts --------------------------------------------------------------------------

@dataclass
class TunnelDetails:
    """What an operator enters for a tunnel account. Blank secrets and certificates keep the stored
    ones; `platform_certs_pem` adds certificates to those stored (platforms rotate by overlap)."""

    base_url: str
    app_id: str
    serial_no: str = ""
    member_id: str = ""
    openid_url: str | None = None
    platform_certs_pem: str | None = None
    notify_cert_pem: str | None = None
    private_key_pem: str | None = None
    our_cert_pem: str | None = None
    apiv3_key: str | None = None
    generate_key_pair: bool = False


@dataclass
class SavedTunnel:
    account: TunnelAccount
    generated: bool  # a key pair was made: offer our certificate for download now


AUDITED_TUNNEL_FIELDS = ("tunnel", "base_url", "openid_url", "app_id", "serial_no", "member_id", "status")


def _clean_url(raw: str | None, field: str, required: bool) -> str | None:
    url = (raw or "").strip().rstrip("/")
    if not url:
        if required:
            raise SettingsError(_("Enter the address."), field)
        return None
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url):
        raise SettingsError(_("The address must start with http:// or https:// and contain no spaces."), field)
    if len(url) > URL_MAX:
        raise SettingsError(_("The address may have at most %(n)s characters.", n=URL_MAX), field)
    return url


def _tunnel_snapshot(account: TunnelAccount) -> dict[str, Any]:
    values = audit.snapshot(account, AUDITED_TUNNEL_FIELDS)
    values["platform_cert_serials"] = sorted(account.platform_certs or {})
    notify = describe_certificate(account.notify_cert)
    values["notify_cert_serial"] = notify.serial if notify else None
    return values


def _secrets_snapshot(stored: dict[str, str]) -> dict[str, str | None]:
    return {PRIVATE_KEY: key_fingerprint(stored.get(PRIVATE_KEY)),
            APIV3_KEY: _secret_fingerprint(stored.get(APIV3_KEY)),
            OUR_CERTIFICATE: key_fingerprint(stored.get(OUR_CERTIFICATE))}


def _our_key(tunnel: str, org: Organisation, details: TunnelDetails, stored: dict[str, str]) -> dict[str, str]:
    """Our private key and certificate after this save: generated, pasted, or kept."""
    merged = dict(stored)
    if details.generate_key_pair:
        label = "云数汇" if tunnel == "yunshuhui" else "WeChat Pay"
        private_pem, cert_pem, _serial = lklapi.new_key_pair(f"{org.name} {label}"[:64])
        merged[PRIVATE_KEY], merged[OUR_CERTIFICATE] = private_pem, cert_pem
        return merged
    if (details.private_key_pem or "").strip():
        merged[PRIVATE_KEY] = read_private_key(details.private_key_pem)
        if merged.get(OUR_CERTIFICATE) and not key_matches(merged[PRIVATE_KEY], merged[OUR_CERTIFICATE]):
            merged.pop(OUR_CERTIFICATE)  # the certificate of the replaced key says nothing of the new one
    if (details.our_cert_pem or "").strip():
        cert = read_certificate(details.our_cert_pem, "our_cert", _("our certificate"))
        if not merged.get(PRIVATE_KEY):
            raise SettingsError(_("Paste the private key of this certificate too."), "private_key")
        if not key_matches(merged[PRIVATE_KEY], cert.pem):
            raise SettingsError(_("This certificate is not the one of our private key (fingerprints %(a)s and "
                                  "%(b)s differ).", a=key_fingerprint(cert.pem), b=key_fingerprint(merged[PRIVATE_KEY])),
                                "our_cert")
        merged[OUR_CERTIFICATE] = cert.pem
    if not merged.get(PRIVATE_KEY):
        raise SettingsError(_("Paste our private key, or choose “generate a key pair”."), "private_key")
    return merged


def _serial_for(tunnel: str, details: TunnelDetails, merged: dict[str, str]) -> str:
    """Our certificate serial: read from our certificate when we have it, else as typed.
    WeChat Pay writes serials in capitals, Lakala in small letters; both are the same hex number."""
    if merged.get(OUR_CERTIFICATE):
        serial = lklapi.certificate_serial(merged[OUR_CERTIFICATE])
    else:
        serial = re.sub(r"[\s:]", "", details.serial_no or "")
        if not serial:
            raise SettingsError(_("Enter the serial number of our certificate, or paste the certificate."), "serial_no")
        if not _SERIAL.fullmatch(serial):
            raise SettingsError(_("A certificate serial is hexadecimal: digits 0-9 and letters A-F."), "serial_no")
    return serial.upper() if tunnel == "direct" else serial.lower()


def _platform_certs(tunnel: str, details: TunnelDetails, stored: dict[str, str]) -> dict[str, str]:
    certs = dict(stored)
    if (details.platform_certs_pem or "").strip():
        what = _("the 云数汇 platform certificate") if tunnel == "yunshuhui" else _("the WeChat Pay platform certificate")
        for info in read_certificates(details.platform_certs_pem, "platform_certs", what):
            certs[info.serial.upper() if tunnel == "direct" else info.serial] = info.pem
    if tunnel == "yunshuhui" and not certs:
        raise SettingsError(_("Paste the 云数汇 platform certificate: every answer of 云数汇 is checked with it."),
                            "platform_certs")
    return certs


def _notify_cert(tunnel: str, details: TunnelDetails, stored: str | None) -> str | None:
    if tunnel != "yunshuhui":
        return None
    if (details.notify_cert_pem or "").strip():
        return read_certificate(details.notify_cert_pem, "notify_cert", _("the 云数汇 notification certificate")).pem
    if not stored:
        raise SettingsError(_("Paste the 云数汇 notification certificate: every callback is checked with it."),
                            "notify_cert")
    return stored


def _apiv3_key(tunnel: str, details: TunnelDetails, merged: dict[str, str]) -> None:
    if tunnel != "direct":
        merged.pop(APIV3_KEY, None)
        return
    key = (details.apiv3_key or "").strip()
    if key:
        if len(key.encode()) != 32:
            raise SettingsError(_("The APIv3 key is exactly 32 characters (%(n)s given).", n=len(key.encode())),
                                "apiv3_key")
        merged[APIV3_KEY] = key
    if not merged.get(APIV3_KEY):
        raise SettingsError(_("Enter the APIv3 key set in the WeChat Pay merchant platform."), "apiv3_key")


def _clean_identity(tunnel: str, details: TunnelDetails) -> tuple[str, str]:
    app_id = (details.app_id or "").strip()
    if not app_id:
        raise SettingsError(_("Enter the appid."), "app_id")
    if len(app_id) > 64 or not re.fullmatch(r"[0-9A-Za-z_-]+", app_id):
        raise SettingsError(_("The appid has letters, digits, '_' and '-' only, at most 64."), "app_id")
    member_id = (details.member_id or "").strip()
    if not _MEMBER_ID[tunnel].fullmatch(member_id):
        raise SettingsError(_("The 云数汇 member id is 10 to 20 letters and digits.") if tunnel == "yunshuhui"
                            else _("The WeChat Pay merchant id (mchid) is digits only, at most 20."), "member_id")
    return app_id, member_id


def save_tunnel_account(org: Organisation, tunnel: str, details: TunnelDetails,
                        account: TunnelAccount | None = None) -> SavedTunnel:
    """Create or update a bank's account on a tunnel; certificates and keys are checked before anything is kept."""
    if tunnel not in TUNNEL_LABELS:
        raise SettingsError(_("Choose a tunnel from the list."), "tunnel")
    if org.kind != "bank":
        raise SettingsError(_("Choose a bank organisation."), "org_id")
    if account is None and db.session.execute(select(TunnelAccount.id).where(
            TunnelAccount.org_id == org.id, TunnelAccount.tunnel == tunnel)).first():
        raise SettingsError(_("This bank already has a %(tunnel)s account; edit that one.",
                              tunnel=TUNNEL_LABELS[tunnel]), "tunnel")
    base_url = _clean_url(details.base_url, "base_url", required=True)
    openid_url = _clean_url(details.openid_url, "openid_url", required=False) if tunnel == "yunshuhui" else None
    app_id, member_id = _clean_identity(tunnel, details)
    stored = account.secrets if account else {}
    merged = _our_key(tunnel, org, details, stored)
    serial_no = _serial_for(tunnel, details, merged)
    platform_certs = _platform_certs(tunnel, details, account.platform_certs if account else {})
    notify_cert = _notify_cert(tunnel, details, account.notify_cert if account else None)
    _apiv3_key(tunnel, details, merged)

    before = _tunnel_snapshot(account) if account else {}
    if account is None:
        account = TunnelAccount(org_id=org.id, tunnel=tunnel, status="active")
        db.session.add(account)
    account.base_url, account.openid_url, account.app_id = base_url, openid_url, app_id
    account.serial_no, account.member_id = serial_no, member_id
    account.platform_certs, account.notify_cert = platform_certs, notify_cert
    account.secrets = merged
    db.session.flush()
    old, new = audit.changed(before, _tunnel_snapshot(account))
    _old, new_secrets = audit.changed(_secrets_snapshot(stored), _secrets_snapshot(merged))
    if new_secrets:
        new["secrets_changed"] = sorted(new_secrets)  # which ones, and fingerprints, never the values
        new["private_key_fingerprint"] = key_fingerprint(merged.get(PRIVATE_KEY))
    if new:
        audit.record("tunnel_account.save", "tunnel_account", account.id, before=old or None, after=new, org_id=org.id)
    db.session.commit()
    return SavedTunnel(account, generated=details.generate_key_pair)


def remove_platform_certificate(account: TunnelAccount, serial: str) -> None:
    """Drop one platform certificate (after the platform has rotated away from it)."""
    certs = dict(account.platform_certs or {})
    if serial not in certs:
        raise SettingsError(_("No platform certificate with this serial."), "platform_certs")
    if account.tunnel == "yunshuhui" and len(certs) == 1:
        raise SettingsError(_("This is the only 云数汇 platform certificate; add the new one before removing it."),
                            "platform_certs")
    certs.pop(serial)
    account.platform_certs = certs
    audit.record("tunnel_account.remove_certificate", "tunnel_account", account.id,
                 before={"platform_cert_serials": sorted([*certs, serial])},
                 after={"platform_cert_serials": sorted(certs)}, org_id=account.org_id)
    db.session.commit()


def set_status(row: TunnelAccount | BankApiClient, status: str) -> None:
    """Disable or enable a tunnel account or a bank API client (audited; nothing when unchanged)."""
    if status not in STATUS_LABELS:
        raise SettingsError(_("Unknown status."), "status")
    object_type = "tunnel_account" if isinstance(row, TunnelAccount) else "bank_api_client"
    action = f"{object_type}.{'disable' if status == 'disabled' else 'enable'}"
    if audit.change_status(row, object_type, status, action, row.org_id):
        db.session.commit()


def our_certificate(account: TunnelAccount) -> str | None:
    """Our certificate of the account's key, when we have it (to give to 云数汇 / WeChat Pay)."""
    return account.secrets.get(OUR_CERTIFICATE)


@dataclass(frozen=True)
class SecretsSummary:
    """What the screens may show of an account's secrets: that they are set, and fingerprints."""

    private_key: str | None
    apiv3_key: str | None
    certificate: CertificateInfo | None


def secrets_summary(account: TunnelAccount) -> SecretsSummary:
    stored = account.secrets
    return SecretsSummary(private_key=key_fingerprint(stored.get(PRIVATE_KEY)),
                          apiv3_key=_secret_fingerprint(stored.get(APIV3_KEY)),
                          certificate=describe_certificate(stored.get(OUR_CERTIFICATE)))


@dataclass
class ConnectionCheck:
    ok: bool
    message: str


def check_connection(account: TunnelAccount, transport=None) -> ConnectionCheck:
    """One harmless signed call: both sides' signatures are checked, so an answer of any kind
    (even "no such order") proves the keys, serials and certificates fit."""
    if account.tunnel == "yunshuhui":
        from app.providers.yunshuhui import YunshuhuiClient, YunshuhuiError, YunshuhuiUnavailable

        try:
            with YunshuhuiClient.for_account(account, transport=transport) as client:
                client.query(owner_id="00000000", mer_order_id="CONNECTIONCHECK" + secrets.token_hex(4).upper(),
                             activity_id="0000000000")
        except YunshuhuiUnavailable as exc:
            return ConnectionCheck(False, _("云数汇 could not be reached or its answer did not verify: %(e)s", e=exc))
        except YunshuhuiError as exc:
            return ConnectionCheck(False, _("云数汇 refused the call: %(e)s", e=exc))
        return ConnectionCheck(True, _("Connected: 云数汇 accepted our signature and its answer verified."))
    from app.providers.wechatpay import WechatCouponClient, WechatPayError

    try:
        WechatCouponClient.for_account(account).platform_certificates()
    except WechatPayError as exc:
        return ConnectionCheck(False, _("WeChat Pay refused the call or could not be reached: %(e)s", e=exc))
    return ConnectionCheck(True, _("Connected: WeChat Pay accepted our signature and its answer verified."))


# --- the sandboxes ----------------------------------------------------------------------------

def sandbox_provisioner(tunnel: str) -> Callable | None:
    """The sandbox's `provision_merchant`, when that sandbox exists in this build."""
    module = {"yunshuhui": "app.sandbox.yunshuhui", "direct": "app.sandbox.wechatpay"}.get(tunnel)
    try:
        imported = __import__(module, fromlist=["provision_merchant"]) if module else None
    except ImportError:
        return None
    return getattr(imported, "provision_merchant", None)


def _digits(n: int) -> str:
    return str(secrets.randbelow(9) + 1) + "".join(secrets.choice(string.digits) for _i in range(n - 1))


WECHAT_SANDBOX_PATH = "/sandbox/wechatpay"


def connect_to_sandbox(org: Organisation, tunnel: str, site: str) -> SavedTunnel:
    """Make our key pair for the bank, register it with the tunnel's sandbox (served under `site`,
    e.g. "http://127.0.0.1:5000") and fill the account with what the sandbox answers: its
    certificates and addresses. An existing account keeps its appid and member id."""
    provision = sandbox_provisioner(tunnel)
    if provision is None:
        raise SettingsError(_("This sandbox is not available."), "tunnel")
    site = site.rstrip("/")
    account = db.session.execute(select(TunnelAccount).where(TunnelAccount.org_id == org.id,
                                                             TunnelAccount.tunnel == tunnel)).scalar_one_or_none()
    private_pem, cert_pem, serial = lklapi.new_key_pair(f"{org.name} sandbox"[:64])
    try:
        if tunnel == "yunshuhui":
            app_id = account.app_id if account else "OP" + _digits(8)
            member_id = account.member_id if account else _digits(15)
            answer = provision(app_id, serial, cert_pem, member_id)
            details = TunnelDetails(base_url=site + answer["base_url_path"], app_id=app_id, member_id=member_id,
                                    openid_url=site + answer["openid_url_path"],
                                    platform_certs_pem=answer["platform_cert"], notify_cert_pem=answer["notify_cert"],
                                    private_key_pem=private_pem, our_cert_pem=cert_pem)
        else:
            app_id = account.app_id if account else "wx" + secrets.token_hex(8)
            member_id = account.member_id if account else _digits(10)
            apiv3_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _i in range(32))
            answer = provision(member_id, serial.upper(), cert_pem, apiv3_key)
            details = TunnelDetails(base_url=site + WECHAT_SANDBOX_PATH, app_id=app_id, member_id=member_id,
                                    platform_certs_pem=answer["platform_cert"], private_key_pem=private_pem,
                                    our_cert_pem=cert_pem, apiv3_key=apiv3_key)
    except Exception as exc:  # the sandbox refused (its own error types): say why, change nothing of ours
        db.session.rollback()
        raise SettingsError(_("The sandbox refused: %(reason)s", reason=exc), "tunnel") from exc
    saved = save_tunnel_account(org, tunnel, details, account)
    audit.record("tunnel_account.sandbox", "tunnel_account", saved.account.id,
                 after={"tunnel": tunnel, "base_url": saved.account.base_url, "serial_no": saved.account.serial_no},
                 org_id=org.id)
    db.session.commit()
    return saved


# --- bank API clients -------------------------------------------------------------------------

@dataclass
class ApiClientDetails:
    name: str
    rate_limit_per_minute: int | None
    client_cert_pem: str | None = None  # blank on edit: keep the certificate we hold
    allowed_hosts: list[str] = field(default_factory=list)


AUDITED_CLIENT_FIELDS = ("name", "client_serial_no", "our_serial_no", "rate_limit_per_minute", "allowed_hosts",
                         "status")


def clean_allowed_hosts(lines: list[str] | str | None) -> list[str]:
    """Hosts a bank may name in redirect and notification URLs: 'h5.bank.com', 'h5.bank.com:8443', '*.bank.com'."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    hosts: list[str] = []
    for raw in lines or []:
        host = raw.strip().lower()
        if not host:
            continue
        if not _HOST.fullmatch(host) or "." not in host.split(":")[0] and host.split(":")[0] != "localhost":
            raise SettingsError(_("“%(host)s” is not a host name. Write one per line: h5.bank.com, "
                                  "h5.bank.com:8443 or *.bank.com (no http:// and no path).", host=raw.strip()),
                                "allowed_hosts")
        if host not in hosts:
            hosts.append(host)
    return hosts


def _clean_client(details: ApiClientDetails, required_cert: bool) -> tuple[str, int, CertificateInfo | None, list[str]]:
    name = (details.name or "").strip()
    if not name:
        raise SettingsError(_("Enter a name, e.g. the bank's system that will call us."), "name")
    if len(name) > 100:
        raise SettingsError(_("The name may have at most 100 characters."), "name")
    low, high = RATE_LIMIT_RANGE
    rate = details.rate_limit_per_minute
    if rate is None or not low <= rate <= high:
        raise SettingsError(_("The rate limit is %(low)s to %(high)s requests a minute.", low=low, high=high),
                            "rate_limit_per_minute")
    cert = None
    if required_cert or (details.client_cert_pem or "").strip():
        cert = read_certificate(details.client_cert_pem, "client_cert", _("the bank's certificate"))
    return name, rate, cert, clean_allowed_hosts(details.allowed_hosts)


def new_client_app_id() -> str:
    """A public appid for a new client: 'BK' and 14 characters from the CSPRNG, unique."""
    while True:
        app_id = public_code("BK", 14)
        if not db.session.execute(select(BankApiClient.id).where(BankApiClient.app_id == app_id)).first():
            return app_id


def create_api_client(org: Organisation, details: ApiClientDetails) -> BankApiClient:
    """Register a bank's back-end: its certificate is checked, its appid generated, our key pair made."""
    if org.kind != "bank":
        raise SettingsError(_("Choose a bank organisation."), "org_id")
    name, rate, cert, hosts = _clean_client(details, required_cert=True)
    client = bank_auth.register_client(org, name=name, app_id=new_client_app_id(), client_cert=cert.pem,
                                       allowed_hosts=hosts, rate_limit_per_minute=rate)
    db.session.commit()
    return client


def update_api_client(client: BankApiClient, details: ApiClientDetails) -> BankApiClient:
    name, rate, cert, hosts = _clean_client(details, required_cert=False)
    before = audit.snapshot(client, AUDITED_CLIENT_FIELDS)
    client.name, client.rate_limit_per_minute, client.allowed_hosts = name, rate, hosts
    if cert is not None:
        client.client_cert, client.client_serial_no = cert.pem, cert.serial
    old, new = audit.changed(before, audit.snapshot(client, AUDITED_CLIENT_FIELDS))
    if new:
        audit.record("bank_api_client.update", "bank_api_client", client.id, before=old, after=new,
                     org_id=client.org_id)
    db.session.commit()
    return client


def rotate_our_key(client: BankApiClient) -> BankApiClient:
    """A new key pair of ours for this client. From now on our answers and notifications are signed
    with it: the bank must load our new certificate."""
    private_pem, cert_pem, serial = lklapi.new_key_pair(f"marketing-hub {client.app_id}")
    old_serial = client.our_serial_no
    client.our_private_key, client.our_cert, client.our_serial_no = private_pem, cert_pem, serial
    audit.record("bank_api_client.rotate_key", "bank_api_client", client.id, before={"our_serial_no": old_serial},
                 after={"our_serial_no": serial, "our_key_fingerprint": key_fingerprint(cert_pem)},
                 org_id=client.org_id)
    db.session.commit()
    return client


def signing_example(client: BankApiClient) -> dict[str, str]:
    """The five lines a bank signs for a request to us, filled with this client's ids, and the header
    that carries the signature (the same LKLAPI-SHA256withRSA scheme as Lakala's open platform)."""
    timestamp, nonce = "1700000000", "Ab3dE5gH7jK9mN1p"
    body = '{"callTradeNo":"B20240101000001",...}'
    lines = [client.app_id, client.client_serial_no, timestamp, nonce, body]
    return {
        "signed_text": "".join(f"{line}\\n\n" for line in lines),
        "header": (f'Authorization: {lklapi.SCHEME} appid="{client.app_id}",serial_no="{client.client_serial_no}",'
                   f'timestamp="{timestamp}",nonce_str="{nonce}",signature="<Base64 SHA256withRSA of the five lines>"'),
        "answer_headers": ", ".join(lklapi.RESPONSE_HEADERS),
    }


def certificate_file(pem: str) -> tuple[bytes, str]:
    """A certificate as a download, with the file name by its serial."""
    return pem.encode(), f"{lklapi.certificate_serial(pem)}.pem"
