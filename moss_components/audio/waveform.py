"""Turn whatever audio a user hands us into float32 mono at the rate a component expects.

Conversions that keep the signal (int PCM to float, stereo to mono, another sample rate) are done with a warning
where information is lost; input that cannot be audio (empty, NaN/inf) raises an error naming the problem.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import soxr
import torch

log = logging.getLogger(__name__)

_INT_SCALE = {torch.int16: 32768.0, torch.int32: 2147483648.0, torch.int8: 128.0, torch.uint8: 128.0}


def resample(wav: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample ``(T,)`` or ``(B, T)`` float audio from ``orig_rate`` Hz to ``target_rate`` Hz with soxr (VHQ)."""
    if orig_rate == target_rate:
        return wav
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate} Hz")
    x = wav.detach().to(torch.float32).cpu().numpy()
    if x.ndim == 1:
        y = soxr.resample(x, orig_rate, target_rate, quality="VHQ")
    else:
        y = np.stack([soxr.resample(row, orig_rate, target_rate, quality="VHQ") for row in x])
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(wav.device)


def to_mono_float32(
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    target_rate: int | None = None,
    *,
    channels_first: bool | None = None,
    min_samples: int = 1,
    name: str = "audio",
) -> torch.Tensor:
    """Return ``(T,)`` float32 mono audio in [-1, 1] at ``target_rate`` Hz (default: unchanged).

    Args:
        wav: ``(T,)`` mono, or ``(C, T)`` / ``(T, C)`` multi-channel (the smaller axis is taken as channels unless
            ``channels_first`` says which). Integer PCM is scaled to [-1, 1).
        sample_rate: rate of ``wav`` in Hz.
        target_rate: rate wanted in Hz; resampled with a warning when it differs.
        min_samples: fewer samples (after resampling) is an error, e.g. shorter than one frame of a tokenizer.
        name: how error messages refer to this audio (a file path, "batch item 3").
    """
    x = torch.as_tensor(wav)
    if x.dtype in _INT_SCALE:
        x = x.to(torch.float32) / _INT_SCALE[x.dtype]
        if torch.as_tensor(wav).dtype == torch.uint8:
            x = x - 1.0
    elif not x.is_floating_point():
        raise TypeError(f"{name}: unsupported sample dtype {x.dtype}; expected float or int8/16/32 PCM")
    x = x.to(torch.float32)
    if x.ndim == 2:
        if channels_first is None:
            channels_first = x.shape[0] <= x.shape[1]
        channels = x.shape[0] if channels_first else x.shape[1]
        if channels > 1:
            warnings.warn(f"{name}: {channels} channels downmixed to mono", stacklevel=2)
        x = x.mean(dim=0 if channels_first else 1)
    elif x.ndim != 1:
        raise ValueError(f"{name}: expected (T,) or (C, T) audio, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: audio is empty (0 samples)")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: {bad} of {x.numel()} samples are NaN or inf")
    if target_rate is not None and target_rate != sample_rate:
        warnings.warn(f"{name}: resampling {sample_rate} Hz -> {target_rate} Hz", stacklevel=2)
        x = resample(x, sample_rate, target_rate)
    if x.numel() < min_samples:
        raise ValueError(f"{name}: {x.numel()} samples is shorter than the minimum of {min_samples} (one frame)")
    return x
