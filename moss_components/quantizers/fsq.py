"""Finite scalar quantization (Mentzer et al., 2023): round each of a few bounded dimensions to a fixed grid.

No codebook to learn or restart; the code is the mixed-radix number of the rounded dimensions. Note: at tiny
scale with a CTC-only objective, FSQ(8,8,8) collapsed to one code during CTC's all-blank phase; CosineVQ is the
default for that reason.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from moss_components.quantizers.base import Quantizer, QuantizerOutput

__all__ = ["FSQ"]


class FSQ(Quantizer):
    """FSQ with ``levels`` (e.g. ``[8, 8, 8]`` = 512 codes).

    Args:
        dim: input/output width ``D`` (projected to ``len(levels)`` and back).
        levels: grid size per dimension (default ``[8, 8, 8]``).
    """

    def __init__(self, dim: int = 256, levels: list[int] | None = None) -> None:
        super().__init__()
        levels = list(levels) if levels is not None else [8, 8, 8]
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be >= 2 each, got {levels}")
        self.dim = dim
        self.levels = levels
        self.proj_in = nn.Linear(dim, len(levels))
        self.proj_out = nn.Linear(len(levels), dim)
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.long), persistent=False)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), dim=0)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        # Maps to [0, L-1] per dimension (even levels included, via the half-offset trick).
        half = (self._levels.to(z.dtype) - 1) / 2
        return (torch.tanh(z) + 1) * half

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """``z`` ``(B, N, D)`` -> quantized ``(B, N, D)`` and ids ``(B, N)``."""
        b = self._bound(self.proj_in(z).float())
        r = b + (b.round() - b).detach()
        ids = (r.round().long() * self._basis).sum(-1)
        half = (self._levels.to(r.dtype) - 1) / 2
        out = self.proj_out(((r - half) / half).to(z.dtype))
        return QuantizerOutput(out, ids, z.new_zeros(()))

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        digits = (ids[..., None] // self._basis) % self._levels
        half = (self._levels.float() - 1) / 2
        return self.proj_out((digits.float() - half) / half)
