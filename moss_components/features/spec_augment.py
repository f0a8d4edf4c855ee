"""Training-time augmentation of log-mel features: SpecAugment masks and vocal-tract-length warping.

Speaker generalization is the tokenizer's weak point (CER on voices never heard in training is about three times
the CER on training voices), and these are the standard ASR remedies:

- **frequency warping** (VTLP, Jaitly & Hinton 2013): each utterance's frequency axis is stretched by a factor
  ``alpha``, as a longer or shorter vocal tract would. It is done in Hz, not in mel bands: band ``k`` takes the
  (interpolated) value found at ``alpha * f_k``, the band's centre frequency scaled;
- **frequency and time masks** (SpecAugment, Park et al. 2019): a few bands and a few frames are set to the
  features' mean, so that no single cue is relied on.

Every draw uses torch's global RNG, so runs are reproducible under ``seed_everything``. In eval mode the module is
the identity.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers.audio_utils import hertz_to_mel, mel_to_hertz

from moss_components.tokenizers.pretrained import ConfigCapture

__all__ = ["SpecAugment", "mel_band_centers", "slaney_mel"]


def mel_band_centers(n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """Centre frequencies in Hz ``(n_mels,)`` of the slaney-scale triangular filters :class:`LogMel` uses."""
    f_max = sample_rate / 2 if f_max is None else f_max
    edges = np.linspace(hertz_to_mel(f_min, "slaney"), hertz_to_mel(f_max, "slaney"), n_mels + 2)
    return mel_to_hertz(edges[1:-1], "slaney")


def slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    """Hz -> slaney mel in torch (linear below 1 kHz, logarithmic above), as transformers' ``hertz_to_mel``; kept
    on the features' device, so the per-batch warp needs no round trip through numpy."""
    log_part = 15.0 + torch.log(hz.clamp_min(1000.0) / 1000.0) * (27.0 / math.log(6.4))
    return torch.where(hz < 1000.0, 3.0 * hz / 200.0, log_part)


class SpecAugment(ConfigCapture, nn.Module):
    """``(B, n_mels, frames)`` normalized log-mel -> the same, warped and masked per utterance (training only).

    Args:
        n_mels: bands of the features.
        sample_rate: audio rate in Hz the mel bank was built for (band centres come from it).
        warp: ``(low, high)`` range of the frequency-warping factor ``alpha``, drawn uniformly per utterance;
            ``None`` for no warping. ``(0.9, 1.1)`` is the usual VTLP range.
        freq_masks: frequency masks per utterance.
        freq_width: widest frequency mask, in bands (each width is uniform in ``0..freq_width``).
        time_masks: time masks per utterance.
        time_width: widest time mask, in frames (at 100 frames/s, 8 frames is about one character of speech).
        fill: the value masked cells take (0 is the mean of features normalized to zero mean).
    """

    def __init__(
        self,
        n_mels: int,
        sample_rate: int = 16000,
        warp: tuple[float, float] | None = (0.9, 1.1),
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 8,
        fill: float = 0.0,
    ) -> None:
        super().__init__()
        if warp is not None and not 0 < warp[0] <= warp[1]:
            raise ValueError(f"warp {warp} is not a factor range (low, high) with 0 < low <= high")
        for name, value in (("freq_masks", freq_masks), ("freq_width", freq_width), ("time_masks", time_masks),
                            ("time_width", time_width)):  # fmt: skip
            if value < 0:
                raise ValueError(f"{name} {value} must be >= 0")
        if freq_width >= n_mels:
            raise ValueError(f"freq_width {freq_width} must be smaller than n_mels {n_mels}")
        self.n_mels = n_mels
        self.warp = tuple(warp) if warp is not None else None
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.fill = fill
        centers = mel_band_centers(n_mels, sample_rate)
        self.register_buffer("centers", torch.tensor(centers, dtype=torch.float32), persistent=False)
        self.mel_lo = float(hertz_to_mel(0.0, "slaney"))
        self.mel_step = float(hertz_to_mel(sample_rate / 2, "slaney") - self.mel_lo) / (n_mels + 1)

    def warp_bands(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Stretch the frequency axis: ``x`` ``(B, n_mels, T)``, ``alpha`` ``(B,)`` -> ``(B, n_mels, T)``.

        Band ``k`` of the output is ``x`` read at the band position of frequency ``alpha * f_k`` (linear
        interpolation between bands; positions past the last band read the last band).
        """
        hz = self.centers[None] * alpha[:, None].float()  # (B, n_mels)
        pos = (slaney_mel(hz) - self.mel_lo) / self.mel_step - 1.0
        pos = pos.to(x.dtype).clamp(0, self.n_mels - 1)
        lo = pos.floor().long().clamp(max=self.n_mels - 2)
        frac = (pos - lo).unsqueeze(-1)  # (B, n_mels, 1)
        below = torch.gather(x, 1, lo.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        above = torch.gather(x, 1, (lo + 1).unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return below + frac * (above - below)

    @staticmethod
    def _mask(n_masks: int, width: int, size: int, batch: int, device) -> torch.Tensor:
        """``(B, size)`` bool: ``n_masks`` spans of uniform width in ``0..width`` at uniform starts."""
        if n_masks == 0 or width == 0 or size == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=device)
        widths = torch.randint(0, width + 1, (batch, n_masks, 1), device=device)
        starts = (torch.rand(batch, n_masks, 1, device=device) * (size - widths + 1).clamp(min=1)).long()
        pos = torch.arange(size, device=device)[None, None]
        return ((pos >= starts) & (pos < starts + widths)).any(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if x.ndim != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"expected features (B, {self.n_mels}, frames), got {tuple(x.shape)}")
        batch, _, frames = x.shape
        if self.warp is not None and self.warp != (1.0, 1.0):
            low, high = self.warp
            x = self.warp_bands(x, low + (high - low) * torch.rand(batch, device=x.device))
        freq = self._mask(self.freq_masks, self.freq_width, self.n_mels, batch, x.device)
        time = self._mask(self.time_masks, self.time_width, frames, batch, x.device)
        return x.masked_fill(freq[:, :, None] | time[:, None, :], self.fill)
