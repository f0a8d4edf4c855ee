"""Griffin-Lim vocoder: the no-training baseline. Mel -> linear magnitude by non-negative least squares
(pseudo-inverse, clamped), then fast Griffin-Lim (momentum 0.99) with ``torch.stft`` / ``torch.istft``."""

from __future__ import annotations

import torch

from moss_components.features import LogMel
from moss_components.vocoders.base import Vocoder

__all__ = ["GriffinLimVocoder"]


class GriffinLimVocoder(Vocoder):
    """Log-mel ``(B, n_mels, F)`` -> ``(B, F * hop_length)`` audio with no learned parameters.

    Args:
        sample_rate, n_mels, n_fft, hop_length: mel settings of the input (``LogMel(causal=False)``).
        n_iter: Griffin-Lim iterations.
        momentum: fast Griffin-Lim momentum (Perraudin et al., 2013); 0 is the classic algorithm.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 1024,
        hop_length: int = 320,
        n_iter: int = 32,
        momentum: float = 0.99,
    ) -> None:
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft, hop_length, n_mels=n_mels, causal=False)
        self.n_iter = n_iter
        self.momentum = momentum
        self.register_buffer("inv_fb", torch.linalg.pinv(self.mel.mel_fb), persistent=False)  # (F_bins, n_mels)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self.check_mel(mel)
        mag = (self.inv_fb @ mel.float().exp()).clamp_min(0)
        if self.mel.power != 1.0:
            mag = mag.pow(1.0 / self.mel.power)
        n_fft, hop = self.mel.n_fft, self.mel.hop_length
        window = self.mel.window
        length = mel.shape[-1] * hop
        gen = torch.Generator(device="cpu").manual_seed(0)  # fixed phase init: same mel, same audio
        angles = torch.polar(torch.ones_like(mag), 2 * torch.pi * torch.rand(mag.shape, generator=gen).to(mag.device))
        prev = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            wav = torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=length)
            rebuilt = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)[..., : mag.shape[-1]]
            angles = rebuilt - (self.momentum / (1 + self.momentum)) * prev
            prev = rebuilt
            angles = angles / angles.abs().clamp_min(1e-8)
        return torch.istft(mag * angles, n_fft, hop, window=window, center=True, length=length)
