"""Streaming vocoding: mel frames arrive chunk by chunk, audio samples leave as soon as no later frame can change them.

A vocoder that is a stack of convolutions over frames followed by an iSTFT (Vocos) gives sample ``s`` from the
frames ``j`` whose window covers it (``|j * hop - s| < n_fft / 2``, ``center=True`` framing), and frame ``j``'s
spectrum from the mel frames ``j - R .. j + R`` (``R`` = the convolutions' half-widths summed). So with the first
``F`` final mel frames in hand, the samples ``s < (F - R) * hop - n_fft / 2`` are final. Each push vocodes only a
window that starts early enough for its left edge (zero padding, a partial overlap-add) not to reach the samples
it emits, so the streamed waveform equals ``vocoder(whole mel)`` up to float rounding, at O(chunk + 2R) frames of
work per push.

Griffin-Lim has no finite receptive field (each iteration spreads by a window, and its random phase start depends
on the shape), so its stream uses a long context and is close to, not equal to, the one-shot audio.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from moss_components.vocoders import GriffinLimVocoder, Vocoder

__all__ = ["VocoderStream", "vocoder_context_frames"]


def vocoder_context_frames(vocoder: Vocoder) -> int:
    """``R``: mel frames on each side that one output frame's spectrum depends on.

    Summed half-widths of the ``Conv1d`` layers (``dilation * (kernel - 1) / 2``, rounded up), which is exact for a
    stack of same-padded convolutions and per-frame layers (Vocos). Griffin-Lim: one window's spread per iteration.
    """
    if isinstance(vocoder, GriffinLimVocoder):
        return vocoder.n_iter * math.ceil(vocoder.mel.n_fft / (2 * vocoder.hop_length))
    half = 0
    for module in vocoder.modules():
        if isinstance(module, nn.Conv1d):
            half += math.ceil(module.dilation[0] * (module.kernel_size[0] - 1) / 2)
    return half


class VocoderStream:
    """Push final log-mel frames, get the audio samples that are final.

    Args:
        vocoder: any :class:`Vocoder` (exact for convolutional ones, see the module docstring).
        context_frames: ``R`` (default :func:`vocoder_context_frames`); a larger value is safe, only slower to
            release audio.

    ``push(mel (B, n_mels, f))`` returns ``(B, t)`` float32 samples at ``vocoder.sample_rate`` (``t`` may be 0);
    ``flush()`` returns the rest. All pushed pieces concatenated give ``F * hop_length`` samples, as
    ``vocoder(mel)`` does.
    """

    def __init__(self, vocoder: Vocoder, context_frames: int | None = None) -> None:
        self.vocoder = vocoder
        self.context = vocoder_context_frames(vocoder) if context_frames is None else int(context_frames)
        if self.context < 0:
            raise ValueError(f"context_frames must be >= 0, got {self.context}")
        self.hop = vocoder.hop_length
        self.half_window = vocoder.mel.n_fft // 2
        self.mel: torch.Tensor | None = None  # (B, n_mels, f) the final frames still needed, from frame `start`
        self.start = 0  # stream index of mel[..., 0]
        self.frames = 0  # frames pushed so far
        self.emitted = 0  # samples returned so far

    def _first_needed_frame(self) -> int:
        """The first frame a window must start at to render sample ``emitted`` exactly: the first frame whose
        iSTFT window reaches it, minus R for the convolutions, minus one for rounding."""
        return max(0, (self.emitted - self.half_window) // self.hop - self.context - 1)

    @torch.no_grad()
    def _render(self, upto: int) -> torch.Tensor:
        """Samples ``[emitted, upto)`` of the stream."""
        batch = self.mel.shape[0]
        if upto <= self.emitted:
            return self.mel.new_zeros(batch, 0)
        first = self._first_needed_frame()
        wav = self.vocoder(self.mel[..., first - self.start :]).float()
        offset = first * self.hop  # stream index of wav[:, 0]
        out = wav[:, self.emitted - offset : upto - offset]
        self.emitted = upto
        # forget the frames no later window starts before (keeps each push O(chunk + 2R) frames)
        keep = self._first_needed_frame()
        self.mel, self.start = self.mel[..., keep - self.start :], keep
        return out

    def push(self, mel: torch.Tensor) -> torch.Tensor:
        """Append final frames ``(B, n_mels, f)``; return the ``(B, t)`` samples that became final."""
        self.vocoder.check_mel(mel)
        self.mel = mel if self.mel is None else torch.cat([self.mel, mel.to(self.mel)], dim=-1)
        self.frames += mel.shape[-1]
        final = max(0, (self.frames - self.context) * self.hop - self.half_window)
        return self._render(final)

    def flush(self) -> torch.Tensor:
        """End of the mel stream: every sample not yet returned (``frames * hop_length`` in all)."""
        if self.mel is None:
            return torch.zeros(1, 0)
        return self._render(self.frames * self.hop)
