"""Losses of the two heads: shifted, per-channel, token-weighted.

Labels are unshifted like Hugging Face's: the label at t is the token at t, and position t predicts t + 1.
Channel 0 labels train the text head, channel 1 labels train the speech head; ``-100`` is ignored. The speech loss
is normalized over the speech vocabulary (the released MOSS-Speech code passes the text vocabulary size there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "ChannelLoss", "head_loss", "combine_losses", "shift_labels"]

IGNORE_INDEX = -100


class ChannelLoss(tuple):
    """``(sum, count)`` of one head's cross-entropy: ``sum`` a 0-dim float tensor, ``count`` a 0-dim long tensor."""

    __slots__ = ()

    def __new__(cls, total: torch.Tensor, count: torch.Tensor):
        return super().__new__(cls, (total, count))

    @property
    def total(self) -> torch.Tensor:
        return self[0]

    @property
    def count(self) -> torch.Tensor:
        return self[1]

    @property
    def mean(self) -> torch.Tensor:
        # clamp: a channel without labels gives 0, not NaN
        return self.total / self.count.clamp(min=1)


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` unshifted labels -> ``(B, L)`` targets for each position (last position ignored)."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def head_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    logits: torch.Tensor | None = None,
    fused: bool = False,
) -> ChannelLoss:
    """Sum and count of the cross-entropy of one head.

    Args:
        hidden: ``(B, L, D)`` head input (used when ``logits`` is None or ``fused``).
        weight: ``(V, D)`` head weight; ``bias``: ``(V,)`` or None.
        targets: ``(B, L)`` shifted targets in ``[0, V)`` or ``-100``.
        logits: ``(B, L, V)`` precomputed logits (the usual path).
        fused: compute through ``kernels.fused_linear_cross_entropy`` without materializing logits.
    """
    flat_targets = targets.reshape(-1)
    count = (flat_targets != IGNORE_INDEX).sum()
    if fused:
        from kernels import fused_linear_cross_entropy  # lazy: components must import without kernels

        total = fused_linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]), weight, flat_targets, ignore_index=IGNORE_INDEX, bias=bias,
            reduction="sum",
        )  # fmt: skip
        return ChannelLoss(total, count)
    if logits is None:
        logits = F.linear(hidden, weight, bias)
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat_targets, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return ChannelLoss(total, count)


def combine_losses(text: ChannelLoss, speech: ChannelLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, text_loss, speech_loss)``: the token-weighted mean over both channels and each channel's mean."""
    count = (text.count + speech.count).clamp(min=1)
    return (text.total + speech.total) / count, text.mean, speech.mean
