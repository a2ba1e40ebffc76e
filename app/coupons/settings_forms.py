"""Forms of the coupon tunnel accounts and the banks' API clients. Secrets (our private key, the
APIv3 key) are never written back into a form, not even after a failed save."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from app.core.choices import options
from app.coupons.settings import RATE_LIMIT_RANGE, TUNNEL_LABELS, ApiClientDetails, TunnelDetails

PEM_ROWS = {"rows": 4, "spellcheck": "false", "autocomplete": "off", "style": "font-family: monospace; font-size: .8rem"}

# Field labels that differ by tunnel: what 云数汇 and WeChat Pay call the same thing.
TUNNEL_WORDS = {
    "yunshuhui": {
        "app_id": (_l("Lakala appid"), _l("The appid Lakala assigned to this bank.")),
        "member_id": (_l("云数汇 member id"), _l("10 to 20 letters and digits (member_id).")),
        "serial_no": (_l("Our certificate serial"), _l("Read from our certificate when we have it; else type the serial 云数汇 registered.")),
        "base_url": (_l("云数汇 API address"), _l("e.g. https://s2.lakala.com")),
        "platform_certs": (_l("云数汇 platform certificates"), _l("Answers are checked with the certificate their serial names. Paste one or more PEM certificates to add them.")),
    },
    "direct": {
        "app_id": (_l("WeChat appid"), _l("The official account or mini-program appid coupons are sent under.")),
        "member_id": (_l("WeChat Pay merchant id (mchid)"), _l("Digits only.")),
        "serial_no": (_l("Merchant certificate serial"), _l("Read from our certificate when we have it; else type the serial shown in the merchant platform.")),
        "base_url": (_l("WeChat Pay API address"), _l("https://api.mch.weixin.qq.com")),
        "platform_certs": (_l("WeChat Pay platform certificates"), _l("Optional: without one, the certificates are downloaded on first use. Paste PEM certificates to add them.")),
    },
}


class SecretTextAreaField(TextAreaField):
    """A text area whose value is never rendered back (pasted private keys)."""

    def _value(self) -> str:
        return ""


class TunnelAccountForm(FlaskForm):
    org_id = SelectField(_l("Bank"), coerce=int, validators=[InputRequired(_l("Choose the bank."))])
    tunnel = SelectField(_l("Tunnel"), choices=options(TUNNEL_LABELS.items()), default="yunshuhui",
                         validators=[InputRequired()])
    base_url = StringField(_l("API address"), validators=[InputRequired(_l("Enter the address.")), Length(max=255)])
    openid_url = StringField(_l("OpenID page"), validators=[Optional(), Length(max=255)],
                             description=_l("The 云数汇 page that hands a visitor's openid back (?wmcb=...)."))
    app_id = StringField(_l("appid"), validators=[InputRequired(_l("Enter the appid.")), Length(max=64)])
    member_id = StringField(_l("Member id"), validators=[InputRequired(_l("Enter the member id.")), Length(max=20)])
    serial_no = StringField(_l("Our certificate serial"), validators=[Optional(), Length(max=64)])
    platform_certs = TextAreaField(_l("Platform certificates"), validators=[Optional()], render_kw=PEM_ROWS)
    notify_cert = TextAreaField(_l("云数汇 notification certificate"), validators=[Optional()], render_kw=PEM_ROWS,
                                description=_l("Callbacks from 云数汇 are checked with it."))
    generate_key_pair = BooleanField(_l("Generate a new key pair for us (then give our certificate to the tunnel)"))
    private_key = SecretTextAreaField(_l("Our private key"), validators=[Optional()], render_kw=PEM_ROWS,
                                      description=_l("PEM, unencrypted, RSA 2048 bits or more. Stored encrypted, never shown again."))
    our_cert = TextAreaField(_l("Our certificate (optional)"), validators=[Optional()], render_kw=PEM_ROWS,
                             description=_l("The certificate of that key: its serial is then read from it."))
    apiv3_key = PasswordField(_l("APIv3 key"), validators=[Optional(), Length(max=64)],
                              description=_l("32 characters, set in the WeChat Pay merchant platform. Stored encrypted, never shown again."))

    def use_words_of(self, tunnel: str) -> None:
        """Label the fields the way the chosen tunnel names them."""
        for name, (label, help_text) in TUNNEL_WORDS.get(tunnel, {}).items():
            self[name].label.text, self[name].description = label, help_text

    def details(self) -> TunnelDetails:
        return TunnelDetails(base_url=self.base_url.data, app_id=self.app_id.data, serial_no=self.serial_no.data or "",
                             member_id=self.member_id.data, openid_url=self.openid_url.data,
                             platform_certs_pem=self.platform_certs.data, notify_cert_pem=self.notify_cert.data,
                             private_key_pem=self.private_key.data, our_cert_pem=self.our_cert.data,
                             apiv3_key=self.apiv3_key.data, generate_key_pair=self.generate_key_pair.data)


class TunnelAccountEditForm(TunnelAccountForm):
    org_id = None  # an account stays with its bank and its tunnel
    tunnel = None
    platform_certs = TextAreaField(_l("Add platform certificates"), validators=[Optional()], render_kw=PEM_ROWS)
    notify_cert = TextAreaField(_l("Replace the notification certificate"), validators=[Optional()], render_kw=PEM_ROWS,
                                description=_l("Leave blank to keep the stored one."))
    generate_key_pair = BooleanField(_l("Replace our key with a newly generated key pair"))
    private_key = SecretTextAreaField(_l("Replace our private key"), validators=[Optional()], render_kw=PEM_ROWS,
                                      description=_l("Leave blank to keep the stored key."))
    apiv3_key = PasswordField(_l("Replace the APIv3 key"), validators=[Optional(), Length(max=64)],
                              description=_l("Leave blank to keep the stored key."))


class SandboxConnectForm(FlaskForm):
    org_id = SelectField(_l("Bank"), coerce=int, validators=[InputRequired(_l("Choose the bank."))])
    tunnel = SelectField(_l("Sandbox"), validators=[InputRequired()])


class ApiClientForm(FlaskForm):
    org_id = SelectField(_l("Bank"), coerce=int, validators=[InputRequired(_l("Choose the bank."))])
    name = StringField(_l("Name"), validators=[InputRequired(_l("Enter a name.")), Length(max=100)],
                       description=_l("e.g. the bank's H5 coupon system."))
    client_cert = TextAreaField(_l("The bank's certificate"), validators=[InputRequired(_l("Paste the bank's certificate."))],
                                render_kw=PEM_ROWS,
                                description=_l("PEM. The bank signs its requests with the key of this certificate; its serial is read from it."))
    rate_limit_per_minute = IntegerField(_l("Rate limit (requests a minute)"), default=6000, validators=[
        InputRequired(_l("Enter the rate limit.")), NumberRange(*RATE_LIMIT_RANGE)])
    allowed_hosts = TextAreaField(_l("Allowed hosts"), validators=[Optional()], render_kw={"rows": 3, "spellcheck": "false"},
                                  description=_l("One per line: the hosts of the bank's H5 pages and notification URLs "
                                                 "(h5.bank.com, h5.bank.com:8443, *.bank.com). Other URLs are refused."))

    def details(self) -> ApiClientDetails:
        return ApiClientDetails(name=self.name.data, rate_limit_per_minute=self.rate_limit_per_minute.data,
                                client_cert_pem=self.client_cert.data, allowed_hosts=(self.allowed_hosts.data or "").splitlines())


class ApiClientEditForm(ApiClientForm):
    org_id = None
    client_cert = TextAreaField(_l("Replace the bank's certificate"), validators=[Optional()], render_kw=PEM_ROWS,
                                description=_l("Leave blank to keep the certificate we hold."))
