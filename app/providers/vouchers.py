"""What the front desk needs from a voucher platform (Meituan, Douyin), whatever the platform.

Each platform client maps its own answers to `VoucherPreview` / `VerifiedVoucher` and its own
error codes to the `VoucherError` family below, so the desk code never branches on a platform's
protocol. Messages are for the person at the desk (translatable msgids).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask_babel import lazy_gettext as _l

PLATFORMS = ("meituan", "douyin")


class VoucherError(Exception):
    """A platform refused or could not answer; `message` says why, for the desk."""

    message = _l("The platform refused the voucher.")
    retryable = False  # True only when trying the same call again may succeed

    def __init__(self, detail: str = "", platform_code: str | int | None = None):
        super().__init__(detail or str(self.message))
        self.detail = detail
        self.platform_code = platform_code


class VoucherNotFound(VoucherError):
    message = _l("No such voucher code.")


class VoucherAlreadyUsed(VoucherError):
    message = _l("This voucher has already been verified.")


class VoucherExpired(VoucherError):
    message = _l("This voucher has expired.")


class VoucherRefunded(VoucherError):
    message = _l("This voucher has been refunded, or a refund is in progress.")


class VoucherNotValidHere(VoucherError):
    message = _l("This voucher cannot be used in this store.")


class VoucherNotYetValid(VoucherError):
    message = _l("This voucher is not valid yet.")


class VoucherWrongCount(VoucherError):
    message = _l("The number of uses asked for is more than the voucher has left.")


class VoucherCancelNotAllowed(VoucherError):
    message = _l("This verification can no longer be undone on the platform.")


class PlatformAuthError(VoucherError):
    message = _l("The platform rejected our credentials. Check the platform settings.")


class PlatformUnavailable(VoucherError):
    message = _l("The platform is not answering. Try again in a moment.")
    retryable = True


class PlatformProtocolError(VoucherError):
    message = _l("The platform's answer could not be understood or verified.")


@dataclass
class VoucherPreview:
    """A voucher as the platform describes it before verification."""

    platform: str
    code: str  # as typed or scanned
    deal_id: str  # the platform's product id; maps to one of our products
    title: str
    original_price_fen: int | None
    paid_price_fen: int | None
    uses_left: int
    expires_at: datetime | None
    buyer_phone_masked: str | None = None
    order_id: str | None = None
    voucher_kind: str = "single"  # single | multi_use
    verify_token: str | None = None  # Douyin: the token its verify call needs
    encrypted_code: str | None = None  # Douyin: the code form its verify call takes
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifiedVoucher:
    """The platform's record of one verification, kept to undo it."""

    platform: str
    code: str
    deal_id: str
    verify_id: str  # Meituan: the receipt code's consume flow; Douyin: verify_id
    certificate_id: str | None = None  # Douyin
    order_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
