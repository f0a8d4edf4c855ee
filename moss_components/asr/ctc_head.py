"""CTC-over-characters head: optional upsampling in time, a few transformer layers, a linear classifier."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from moss_components.asr.ctc_vocab import VOCAB_SIZE
from moss_components.tokenizers.transformer import Transformer

__all__ = ["CTCHead", "CTCOutput"]


@dataclass
class CTCOutput:
    """What a CTC-trained model returns for a batch.

    Attributes:
        log_probs: ``(B, M, V)`` log-softmax over the character vocabulary.
        lengths: ``(B,)`` valid CTC frames.
        aux_loss: scalar extra loss (quantizer commitment), 0 if none.
        ids: ``(B, N)`` speech ids, or ``None`` for a model without a quantizer.
        ids_lengths: ``(B,)`` valid ids, or ``None``.
        bypassed: True while the quantizer warm-up bypasses quantization.
        intermediate: further CTC outputs on the same transcripts, each ``(log_probs (B, M', V), lengths (B,),
            weight)``, added to the training loss at that weight (intermediate CTC); empty if none.
    """

    log_probs: torch.Tensor
    lengths: torch.Tensor
    aux_loss: torch.Tensor
    ids: torch.Tensor | None = None
    ids_lengths: torch.Tensor | None = None
    bypassed: bool = False
    intermediate: list[tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=list)


class CTCHead(nn.Module):
    """``(B, N, D)`` at some rate -> ``(B, N * upsample, VOCAB_SIZE)`` log-probs.

    Upsampling maps each frame to ``upsample`` frames with a separate linear map per sub-frame (a stride-``upsample``
    transposed convolution), so that 12.5 Hz ids can emit up to ~37 characters per second (speech runs at ~16, up
    to 25). Plain repetition + a sub-frame embedding learned much more slowly.

    Args:
        dim: input width ``D``.
        upsample: time upsampling factor (1 = none).
        depth, heads: transformer layers over the upsampled frames (bidirectional: this head only trains).
    """

    def __init__(self, dim: int, upsample: int = 3, depth: int = 2, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.upsample = upsample
        self.up = nn.Linear(dim, dim * upsample) if upsample > 1 else None
        self.transformer = Transformer(dim, depth, heads, dropout=dropout) if depth > 0 else None
        self.out = nn.Linear(dim, VOCAB_SIZE)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, N, D)``, ``lengths`` ``(B,)`` -> log-probs ``(B, N * upsample, V)`` and their lengths."""
        if self.upsample > 1:
            b, n, d = x.shape
            x = self.up(x).reshape(b, n * self.upsample, d)
            lengths = lengths * self.upsample
        if self.transformer is not None:
            valid = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
            x, _ = self.transformer(x, key_padding=valid)
        return self.out(x).float().log_softmax(-1), lengths
