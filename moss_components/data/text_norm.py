"""Transcript normalization: lowercase words over ``a-z``, space and apostrophe, numbers spelled out.

Every manifest transcript goes through :func:`normalize_transcript`, so a character CTC head over
:data:`CTC_ALPHABET` covers every transcript of the built-in corpus and of imported corpora.
"""

from __future__ import annotations

import re

CTC_ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words: ``21 -> "twenty one"`` (no hyphens, no "and")."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    for value, word in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return number_to_words(head) + " " + word + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError("unreachable")


def normalize_transcript(text: str) -> str:
    """Lowercase, spell digits as words, map hyphens to spaces, drop other punctuation, collapse spaces.

    >>> normalize_transcript("Paris, in 2024 -- isn't it?")
    "paris in two thousand twenty four isn't it"
    """
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    text = re.sub(r"\d+", lambda m: " " + number_to_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    # Apostrophes only inside words (quotes around words are dropped).
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


def is_normalized(text: str) -> bool:
    """True when ``text`` is non-empty and uses only :data:`CTC_ALPHABET` with single spaces between words."""
    return bool(text) and text == " ".join(text.split()) and all(c in CTC_ALPHABET for c in text)
