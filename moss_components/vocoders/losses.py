"""Spectral losses for vocoder training: multi-resolution STFT (spectral convergence + log magnitude) and mel L1."""

from __future__ import annotations

import torch
from torch import nn

from moss_components.features import LogMel

__all__ = ["MultiResolutionSTFTLoss", "MelL1Loss"]


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Yamamoto et al., Parallel WaveGAN).

    Args:
        resolutions: ``(n_fft, hop_length)`` pairs in samples (window = n_fft).
    """

    def __init__(self, resolutions: list[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.resolutions = [tuple(r) for r in (resolutions or [(512, 128), (1024, 256), (2048, 512)])]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred``, ``target`` ``(B, T)`` audio -> scalar loss."""
        total = pred.new_zeros(())
        for n_fft, hop in self.resolutions:
            win = torch.hann_window(n_fft, device=pred.device)
            p = torch.stft(pred.float(), n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-7)
            t = torch.stft(target.float(), n_fft, hop, window=win, return_complex=True).abs().clamp_min(1e-7)
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-7)
            mag = (p.log() - t.log()).abs().mean()
            total = total + sc + mag
        return total / len(self.resolutions)


class MelL1Loss(nn.Module):
    """L1 between log-mels of two waveforms ``(B, T)``, using ``mel`` (a :class:`LogMel`)."""

    def __init__(self, mel: LogMel) -> None:
        super().__init__()
        self.mel = mel

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.mel(pred) - self.mel(target)).abs().mean()
