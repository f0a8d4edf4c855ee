"""Log-mel spectrogram computed with ``torch.stft`` and transformers' mel filter bank.

Two framings are offered:

- ``causal=True`` pads ``n_fft - hop_length`` zeros on the left only, so frame ``i`` covers samples
  ``[(i + 1) * hop - n_fft, (i + 1) * hop)`` and never looks ahead. ``T`` samples give ``T // hop`` frames, and
  feeding audio in pieces (``LogMel.stream``) gives exactly the frames of the whole signal. The causal tokenizer
  uses this.
- ``causal=False`` centers frames (``torch.stft(center=True)``): ``T // hop + 1`` frames. The decoder and the
  vocoder use this, since an iSTFT head inverts centered frames.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank

__all__ = ["LogMel"]


class LogMel(nn.Module):
    """Waveform ``(B, T)`` at ``sample_rate`` Hz -> natural-log mel ``(B, n_mels, frames)``.

    Args:
        sample_rate: input rate in Hz.
        n_fft: FFT size in samples.
        hop_length: hop in samples (``sample_rate / hop_length`` frames per second).
        win_length: Hann window length in samples (default ``n_fft``).
        n_mels: mel bands.
        f_min, f_max: band edges in Hz (``f_max`` defaults to Nyquist).
        causal: left-pad only (see the module docstring) instead of centering.
        log_floor: magnitudes are clamped to this before the log.
        power: 1 for magnitude, 2 for power spectra.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        win_length: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        causal: bool = True,
        log_floor: float = 1e-5,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        win_length = win_length or n_fft
        if win_length > n_fft:
            raise ValueError(f"win_length {win_length} is larger than n_fft {n_fft}")
        if hop_length <= 0 or hop_length > n_fft:
            raise ValueError(f"hop_length {hop_length} must be in 1..n_fft ({n_fft})")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_mels = n_mels
        self.causal = causal
        self.log_floor = log_floor
        self.power = power
        fb = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=f_min,
            max_frequency=f_max if f_max is not None else sample_rate / 2,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # float64; no dtype= argument, which older transformers lack
        fb = torch.from_numpy(fb.astype(np.float32)).T.contiguous()
        self.register_buffer("mel_fb", fb, persistent=False)  # (n_mels, F)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames produced from ``num_samples`` samples."""
        if self.causal:
            return num_samples // self.hop_length
        return num_samples // self.hop_length + 1

    def _spec(self, wav: torch.Tensor, center: bool) -> torch.Tensor:
        spec = torch.stft(
            wav.float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=center,
            pad_mode="reflect",
            return_complex=True,
        )
        mag = spec.abs()
        if self.power != 1.0:
            mag = mag.pow(self.power)
        with torch.autocast(wav.device.type, enabled=False):  # bf16 would quantize the log-mel to ~0.03 nats
            mel = torch.matmul(self.mel_fb, mag)
        return torch.log(mel.clamp_min(self.log_floor))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` or ``(T,)`` float audio -> ``(B, n_mels, frames)`` log-mel."""
        if wav.ndim == 1:
            wav = wav[None]
        if self.causal:
            wav = nn.functional.pad(wav, (self.n_fft - self.hop_length, 0))
            if wav.shape[-1] < self.n_fft:
                return wav.new_zeros(wav.shape[0], self.n_mels, 0)
            return self._spec(wav, center=False)
        return self._spec(wav, center=True)

    def stream(self, wav: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal framing of the next piece of audio.

        Args:
            wav: ``(B, t)`` new samples.
            state: samples carried over from the previous call (``None`` at the start).

        Returns:
            ``(B, n_mels, frames)`` for the frames completed by this piece, and the new state.
        """
        if not self.causal:
            raise RuntimeError("LogMel.stream needs causal=True framing")
        if state is None:
            state = wav.new_zeros(wav.shape[0], self.n_fft - self.hop_length)
        buf = torch.cat([state, wav], dim=-1)
        n = (buf.shape[-1] - self.n_fft) // self.hop_length + 1 if buf.shape[-1] >= self.n_fft else 0
        if n == 0:
            return wav.new_zeros(wav.shape[0], self.n_mels, 0), buf
        used = (n - 1) * self.hop_length + self.n_fft
        out = self._spec(buf[:, :used], center=False)
        return out, buf[:, n * self.hop_length :]
