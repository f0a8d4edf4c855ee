"""The interface every single-codebook quantizer implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from moss_components.tokenizers.pretrained import ConfigCapture

__all__ = ["Quantizer", "QuantizerOutput"]


@dataclass
class QuantizerOutput:
    """What a quantizer returns.

    Attributes:
        quantized: ``(B, N, D)`` vectors passed on (straight-through gradients in training).
        ids: ``(B, N)`` long codes in ``[0, codebook_size)``.
        loss: scalar auxiliary loss (commitment), 0 where there is none.
        bypassed: True while a warm-up passes the continuous vectors through.
    """

    quantized: torch.Tensor
    ids: torch.Tensor
    loss: torch.Tensor
    bypassed: bool = False


class Quantizer(ConfigCapture, nn.Module, ABC):
    """Maps ``(B, N, dim)`` vectors to one codebook of ``codebook_size`` codes and back."""

    dim: int

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Number of codes."""

    @abstractmethod
    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize ``z`` ``(B, N, dim)``; ``mask`` ``(B, N)`` bool marks valid frames (for codebook updates)."""

    @abstractmethod
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` codes -> ``(B, N, dim)`` vectors."""

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise naming the first id outside ``[0, codebook_size)``."""
        bad = (ids < 0) | (ids >= self.codebook_size)
        if bad.any():
            raise ValueError(
                f"speech id {int(ids[bad][0])} is outside the codebook: expected 0..{self.codebook_size - 1} "
                f"(codebook size {self.codebook_size})"
            )
