"""Random text: every character of the alphabet equally likely at every position, from one CSPRNG number."""
from __future__ import annotations

import string
from collections import Counter

from app.core import randomtext
from app.core.models import public_code
from app.core.randomtext import random_text
from app.providers.lklapi import NONCE_PATTERN, new_nonce


def test_the_characters_are_the_base_n_digits_of_one_number(monkeypatch):
    asked = []

    def randbelow(bound: int) -> int:
        asked.append(bound)
        return 2 * 10 ** 0 + 7 * 10 ** 1 + 1 * 10 ** 3  # digits, least significant first: 2, 7, 0, 1

    monkeypatch.setattr(randomtext.secrets, "randbelow", randbelow)
    assert random_text(4, string.digits) == "2701"
    assert asked == [10 ** 4]  # one call, over every string of that length


def test_the_largest_number_gives_the_last_character_everywhere(monkeypatch):
    monkeypatch.setattr(randomtext.secrets, "randbelow", lambda bound: bound - 1)
    assert random_text(6, "abc") == "cccccc"
    monkeypatch.setattr(randomtext.secrets, "randbelow", lambda bound: 0)
    assert random_text(6, "abc") == "aaaaaa"


def test_each_position_is_uniform_over_the_alphabet():
    """A chi-square check of every position over 36 characters: with 35 degrees of freedom the
    statistic exceeds 80 with a probability below 1e-5 for a uniform source; a character favoured
    by a tenth (say a modulo bias) would push it far above."""
    alphabet, length, samples = string.digits + string.ascii_uppercase, 8, 36_000
    counts = [Counter() for _ in range(length)]
    for _ in range(samples):
        for position, character in enumerate(random_text(length, alphabet)):
            counts[position][character] += 1
    expected = samples / len(alphabet)
    for position in counts:
        assert set(position) == set(alphabet)
        assert sum((position[c] - expected) ** 2 / expected for c in alphabet) < 80


def test_public_codes_and_nonces_use_it():
    code = public_code("D", 16)
    assert len(code) == 17 and code[0] == "D" and set(code[1:]) <= set(string.digits + string.ascii_uppercase)
    nonce = new_nonce()
    assert len(nonce) == 32 and NONCE_PATTERN.match(nonce)
    assert len({new_nonce() for _ in range(1000)}) == 1000
