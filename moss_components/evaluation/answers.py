"""Scoring spoken and written answers: normalize, then look for the expected answer as whole words."""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")

_NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
]  # fmt: skip


def normalize_answer(text: str) -> str:
    """Lowercase, spell out the numbers 0-20, drop punctuation, squeeze spaces: ``"It's 7."`` -> ``"it's seven"``."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d+", lambda m: _spell(int(m.group())), text)
    text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _spell(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def answer_is_correct(hypothesis: str, expected: str) -> bool:
    """True when the normalized expected answer occurs in the normalized hypothesis as whole words.

    ``answer_is_correct("the answer is paris", "Paris")`` is True; ``"parisian"`` does not contain ``"paris"``.
    An empty expected answer is an error, not a free point.
    """
    want = normalize_answer(expected)
    if not want:
        raise ValueError(f"expected answer {expected!r} is empty after normalization")
    return f" {want} " in f" {normalize_answer(hypothesis)} "


def accuracy(hypotheses: list[str], expected: list[str]) -> float:
    """Fraction of ``hypotheses`` that contain their expected answer; NaN-free: 0 items is an error."""
    if len(hypotheses) != len(expected):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(expected)} expected answers")
    if not expected:
        raise ValueError("accuracy over zero items is undefined")
    return sum(answer_is_correct(h, e) for h, e in zip(hypotheses, expected)) / len(expected)
