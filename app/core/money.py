"""Money is integer fen (分) everywhere; yuan appear only at the edges (forms and screens)."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation


class MoneyError(ValueError):
    pass


def format_fen(fen: int | None, symbol: str = "¥") -> str:
    """1234567 -> '¥12,345.67'."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{symbol}{yuan:,}.{cents:02d}"


def fen_to_yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else (Decimal(int(fen)) / 100).quantize(Decimal("0.01"))


def yuan_to_fen(value: str | Decimal | int | float | None) -> int | None:
    """'12.34' -> 1234; more than two decimals or a non-number is an error, never a float."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation as exc:
        raise MoneyError("金额格式不正确") from exc
    if not amount.is_finite():
        raise MoneyError("金额格式不正确")
    if amount != amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP):
        raise MoneyError("金额最多两位小数")
    return int((amount * 100).to_integral_value())
