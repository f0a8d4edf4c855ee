"""Vocos-style vocoder (Siuzdak, 2023): a ConvNeXt backbone at the mel frame rate and an iSTFT head.

The network predicts, per frame, a log magnitude and a phase for every STFT bin; ``torch.istft`` turns them into
audio. Everything runs at the frame rate (50 Hz here), so it is cheap on a CPU. Trained with multi-resolution STFT
and mel losses (no discriminator at this scale).
"""

from __future__ import annotations

import torch
from torch import nn

from moss_components.features import LogMel
from moss_components.vocoders.base import Vocoder

__all__ = ["VocosVocoder", "ConvNeXtBlock"]


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> pointwise MLP, residual with layer scale; on ``(B, C, F)``."""

    def __init__(self, dim: int, mlp_ratio: float = 3.0, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.act = nn.GELU()
        self.pw2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pw2(self.act(self.pw1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class VocosVocoder(Vocoder):
    """Log-mel ``(B, n_mels, F)`` -> ``(B, F * hop_length)`` audio.

    Args:
        sample_rate: output rate in Hz.
        n_mels, n_fft, hop_length: mel settings of the input (``LogMel(causal=False)``); the iSTFT uses the same
            ``n_fft`` and ``hop_length``.
        dim: backbone width.
        depth: ConvNeXt blocks.
        mel_mean, mel_std: input normalization of the log-mel.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 1024,
        hop_length: int = 320,
        dim: int = 192,
        depth: int = 6,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
    ) -> None:
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft, hop_length, n_mels=n_mels, causal=False)
        self.mel_mean, self.mel_std = mel_mean, mel_std
        self.embed = nn.Conv1d(n_mels, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self.check_mel(mel)
        x = self.embed((mel - self.mel_mean) / self.mel_std)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x)
        x = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).float()  # (B, n_fft + 2, F)
        log_mag, phase = x.chunk(2, dim=1)
        mag = log_mag.clamp(max=7.0).exp()  # clamp: exp overflow early in training
        spec = torch.polar(mag, phase)
        n_frames = mel.shape[-1]
        return torch.istft(
            spec,
            n_fft=self.mel.n_fft,
            hop_length=self.mel.hop_length,
            win_length=self.mel.n_fft,
            window=self.window,
            center=True,
            length=n_frames * self.mel.hop_length,
        )
