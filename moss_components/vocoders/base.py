"""The ``Vocoder`` interface: log-mel -> waveform, and the mel settings a vocoder expects."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from moss_components.features import LogMel
from moss_components.tokenizers.pretrained import ConfigCapture

__all__ = ["Vocoder"]


class Vocoder(ConfigCapture, nn.Module, ABC):
    """Natural-log mel ``(B, n_mels, F)`` (``LogMel(causal=False)`` framing) -> ``(B, F * hop_length)`` audio.

    ``self.mel`` is the :class:`~moss_components.features.LogMel` whose output this vocoder inverts; a decoder
    must produce mels with the same settings (``DecoderModule`` checks).
    """

    mel: LogMel

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    @property
    def trainable(self) -> bool:
        """False for vocoders with nothing to learn (Griffin-Lim)."""
        return any(p.requires_grad for p in self.parameters())

    @abstractmethod
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, F)`` log-mel -> ``(B, F * hop_length)`` float audio at ``sample_rate``."""

    def check_mel(self, mel: torch.Tensor) -> None:
        if mel.ndim != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected a (B, {self.n_mels}, frames) log-mel, got shape {tuple(mel.shape)}")
        if not torch.isfinite(mel).all():
            raise ValueError("mel contains NaN or inf values")
