"""The character vocabulary of every CTC head here (blank, space, apostrophe, a-z), greedy and closed-set decoding,
and CER."""

from __future__ import annotations

import re

import torch

__all__ = ["BLANK", "CHARS", "VOCAB_SIZE", "normalize_text", "text_to_ids", "ctc_greedy_decode",
           "ctc_closed_set_decode", "cer"]  # fmt: skip

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


def ctc_closed_set_decode(log_probs: torch.Tensor, lengths: torch.Tensor, candidates: list[str]) -> list[str]:
    """Per item, the candidate transcript with the highest CTC likelihood under ``log_probs`` ``(B, N, V)`` with
    ``(B,)`` valid frames: recognition with a closed vocabulary of sentences (a lexicon, in effect). A character CTC
    model spells rare words by ear ("delhi" comes out "delly"); choosing among the sentences that can be said
    scores what was said rather than its spelling. An item no candidate fits (more labels than frames) gets "".
    """
    targets = [torch.tensor(text_to_ids(c), dtype=torch.long) for c in candidates]
    if not targets or any(len(t) == 0 for t in targets):
        raise ValueError(f"closed-set decoding needs non-empty candidate transcripts, got {candidates[:5]!r}...")
    flat = torch.cat(targets)
    target_lengths = torch.tensor([len(t) for t in targets])
    out = []
    for i in range(log_probs.shape[0]):
        n = int(lengths[i])
        lp = log_probs[i, :n].float()[:, None].expand(n, len(targets), -1)
        nll = torch.nn.functional.ctc_loss(lp, flat, torch.full((len(targets),), n), target_lengths,
                                           blank=BLANK, reduction="none", zero_infinity=False)  # fmt: skip
        best = int(nll.argmin())
        out.append(normalize_text(candidates[best]) if torch.isfinite(nll[best]) else "")
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
