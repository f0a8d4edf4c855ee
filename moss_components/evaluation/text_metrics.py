"""Text ability of a model, before and after speech training: perplexity and whether the text path changed."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def _text_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids, attention_mask=mask)
    return out.text_logits if hasattr(out, "text_logits") else out.logits


def _batches(tokenizer, lines: list[str], batch_size: int):
    for i in range(0, len(lines), batch_size):
        enc = [tokenizer(line)["input_ids"] for line in lines[i : i + batch_size]]
        width = max(len(e) for e in enc)
        ids = torch.full((len(enc), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros(len(enc), width, dtype=torch.long)
        for b, e in enumerate(enc):  # right padding: the positions of real tokens stay 0..n-1
            ids[b, : len(e)] = torch.tensor(e)
            mask[b, : len(e)] = 1
        yield ids, mask


@torch.no_grad()
def text_perplexity(model, tokenizer, lines: list[str], batch_size: int = 32) -> float:
    """Token-weighted perplexity of ``lines`` under the text head (a split model) or ``.logits`` (an HF LM)."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError("text_perplexity needs at least one non-empty line")
    total, count = 0.0, 0
    for ids, mask in _batches(tokenizer, lines, batch_size):
        logits = _text_logits(model, ids, mask)[:, :-1].float()
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        total += F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="sum").item()
        count += int((target != -100).sum())
    return math.exp(total / max(count, 1))


@torch.no_grad()
def text_logits_equal(model, base, tokenizer, lines: list[str], batch_size: int = 32) -> bool:
    """True when the split model's text logits equal the base LM's, bit for bit, on every real token of ``lines``."""
    for ids, mask in _batches(tokenizer, [line for line in lines if line.strip()], batch_size):
        a, b = _text_logits(model, ids, mask), _text_logits(base, ids, mask)
        real = mask.bool()
        if not torch.equal(a[real], b[real]):
            return False
    return True
