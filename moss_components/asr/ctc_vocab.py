"""The character vocabulary of every CTC head here (blank, space, apostrophe, a-z), greedy decoding and CER."""

from __future__ import annotations

import re

import torch

__all__ = ["BLANK", "CHARS", "VOCAB_SIZE", "normalize_text", "text_to_ids", "ctc_greedy_decode", "cer"]

BLANK = 0
CHARS = " '" + "abcdefghijklmnopqrstuvwxyz"
VOCAB_SIZE = len(CHARS) + 1  # + blank
_INDEX = {c: i + 1 for i, c in enumerate(CHARS)}


def normalize_text(text: str) -> str:
    """Lowercase, map anything outside a-z/apostrophe to a space, collapse spaces."""
    text = re.sub(r"[^a-z' ]+", " ", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def text_to_ids(text: str) -> list[int]:
    """Normalized characters -> CTC label ids (1..28; 0 is blank)."""
    return [_INDEX[c] for c in normalize_text(text)]


def ctc_greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
    """Best-path decoding: ``(B, N, V)`` scores + ``(B,)`` valid frames -> one string per item."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for i in range(best.shape[0]):
        seq = best[i, : int(lengths[i])] if lengths is not None else best[i]
        seq = torch.unique_consecutive(seq)
        out.append("".join(CHARS[j - 1] for j in seq.tolist() if j != BLANK).strip())
    return out


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(hypotheses: list[str], references: list[str]) -> float:
    """Character error rate over a corpus: total edits / total reference characters (after normalization)."""
    edits = chars = 0
    for h, r in zip(hypotheses, references):
        h, r = normalize_text(h), normalize_text(r)
        edits += _edit_distance(h, r)
        chars += len(r)
    return edits / max(chars, 1)
