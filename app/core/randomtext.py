"""Random text from the system's CSPRNG: identifiers shown to people and nonces sent to partners."""
from __future__ import annotations

import secrets


def random_text(length: int, alphabet: str) -> str:
    """`length` characters of `alphabet`, each uniformly random: the digits, in base len(alphabet), of
    one CSPRNG number below len(alphabet) ** length (one call to the system's generator, not one per
    character: a draw number or a nonce is made on every request of the hot paths)."""
    number, characters = secrets.randbelow(len(alphabet) ** length), []
    for _ in range(length):
        number, digit = divmod(number, len(alphabet))
        characters.append(alphabet[digit])
    return "".join(characters)
