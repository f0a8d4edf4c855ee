"""Load manifest audio as float32 mono at a wanted rate, and keep count of what could not be used.

Loading resamples (soxr) and downmixes through :func:`moss_components.audio.waveform.to_mono_float32`. Its
per-file warnings are folded into one warning per kind and process ("resampling 22050 Hz -> 16000 Hz; further ones
not shown"), so a corpus at another rate does not flood the log. Items that cannot be used raise
:class:`UnusableAudio` with a short reason, which datasets count (see :class:`SkipCounter`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from moss_components.audio.waveform import to_mono_float32

# Reason codes stored per item in a shared counter; 0 = used.
SKIP_REASONS = ("ok", "unreadable", "too short", "too long", "nan or inf", "silent", "empty text")
_warned: set[str] = set()


class UnusableAudio(Exception):
    """An item that loading cannot use; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _warn_once(message: str) -> None:
    kind = re.sub(r"^.*?: ", "", message)  # drop the file name: one warning per kind of conversion
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(f"{message} (further '{kind}' warnings not shown)", stacklevel=3)


def load_audio(
    path: str | Path,
    target_rate: int,
    *,
    min_samples: int = 1,
    max_samples: int | None = None,
    silence_peak: float = 1e-4,
) -> torch.Tensor:
    """Read ``path`` and return ``(T,)`` float32 mono in [-1, 1] at ``target_rate`` Hz.

    Raises :class:`UnusableAudio` for an unreadable file, fewer than ``min_samples`` or more than ``max_samples``
    samples (after resampling), NaN/inf samples, or silence (peak below ``silence_peak``).
    """
    name = str(path)
    try:
        data, rate = sf.read(name, dtype="float32", always_2d=True)  # (T, C)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or OSError depending on the damage
        raise UnusableAudio("unreadable", f"{name}: {err}") from err
    if data.shape[0] == 0:
        raise UnusableAudio("too short", f"{name}: 0 samples")
    if max_samples is not None and data.shape[0] * target_rate > max_samples * rate:
        raise UnusableAudio("too long", f"{name}: {data.shape[0] / rate:.2f} s > {max_samples / target_rate:.2f} s")
    if not np.isfinite(data).all():
        raise UnusableAudio("nan or inf", f"{name}: {int((~np.isfinite(data)).sum())} samples are NaN or inf")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            wav = to_mono_float32(torch.from_numpy(data.T.copy()), rate, target_rate, channels_first=True, name=name)
        except ValueError as err:
            raise UnusableAudio("unreadable", str(err)) from err
    for w in caught:
        _warn_once(str(w.message))
    if wav.numel() < min_samples:
        raise UnusableAudio("too short", f"{name}: {wav.numel()} samples < {min_samples}")
    if float(wav.abs().max()) < silence_peak:
        raise UnusableAudio("silent", f"{name}: peak {float(wav.abs().max()):.2e} < {silence_peak:.0e}")
    return wav


class SkipCounter:
    """Per-item skip reasons in shared memory, so DataLoader worker processes report to the main process.

    ``mark(i, reason)`` in any worker; ``summary()`` in the main process gives ``{reason: count}``;
    ``reset()`` starts a new epoch.
    """

    def __init__(self, n: int) -> None:
        self.codes = torch.zeros(n, dtype=torch.uint8).share_memory_()

    def mark(self, index: int, reason: str) -> None:
        self.codes[index] = SKIP_REASONS.index(reason)

    def summary(self) -> dict[str, int]:
        counts = torch.bincount(self.codes.long(), minlength=len(SKIP_REASONS))
        return {SKIP_REASONS[i]: int(c) for i, c in enumerate(counts) if i > 0 and c > 0}

    def total(self) -> int:
        return int((self.codes > 0).sum())

    def reset(self) -> None:
        self.codes.zero_()
