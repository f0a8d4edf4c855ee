"""The ``SpeechDecoder`` interface: speech ids (+ an optional speaker prompt) -> log-mel, chunked for streaming."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from moss_components.features import LogMel
from moss_components.tokenizers.pretrained import ConfigCapture

__all__ = ["SpeechDecoder"]


class SpeechDecoder(ConfigCapture, nn.Module, ABC):
    """Ids ``(B, N)`` at the tokenizer's frame rate -> natural-log mel ``(B, n_mels, N * frames_per_token)``.

    ``self.mel`` is the :class:`~moss_components.features.LogMel` (``causal=False``) whose frames it predicts, so
    that a :class:`~moss_components.vocoders.Vocoder` with the same settings turns them into audio.
    """

    mel: LogMel
    frames_per_token: int

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Speech ids accepted: ``0 .. codebook_size - 1``."""

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @abstractmethod
    def loss(
        self, ids: torch.Tensor, ids_lengths: torch.Tensor, mel: torch.Tensor, prompt_mel: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Training loss: ids ``(B, N)`` + target log-mel ``(B, n_mels, N * frames_per_token)`` -> ``{"loss": ...}``."""

    @abstractmethod
    def decode(
        self,
        ids: torch.Tensor,
        ids_lengths: torch.Tensor | None = None,
        prompt_mel: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Ids ``(B, N)`` -> log-mel ``(B, n_mels, N * frames_per_token)``."""

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the first id outside ``[0, codebook_size)``."""
        if ids.dtype not in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"speech ids must be an integer tensor, got {ids.dtype}")
        bad = (ids < 0) | (ids >= self.codebook_size)
        if bad.any():
            raise ValueError(
                f"speech id {int(ids[bad][0])} is outside the codebook: expected 0..{self.codebook_size - 1} "
                f"(codebook size {self.codebook_size})"
            )

    def forward(self, ids: torch.Tensor, ids_lengths: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return self.decode(ids, ids_lengths, **kwargs)
