"""The naive linear head + cross-entropy: the spec of ``fused_linear_cross_entropy`` (it materializes (N, V) logits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    bias: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T + bias, labels)`` with float32 logits.

    Args:
        hidden: ``(N, D)`` token states; weight: ``(V, D)``; labels: ``(N,)`` with ``ignore_index`` where no loss.
        bias: optional ``(V,)``.
        reduction: ``"mean"`` over non-ignored tokens, or ``"sum"``.

    Returns:
        The scalar float32 loss.
    """
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction=reduction)
