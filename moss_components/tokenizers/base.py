"""The ``SpeechTokenizer`` interface: waveform -> discrete speech ids (and back, where the tokenizer can)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from moss_components.audio import to_mono_float32
from moss_components.tokenizers.pretrained import ConfigCapture

__all__ = ["SpeechTokenizer", "TokenizerOutput"]


@dataclass
class TokenizerOutput:
    """Speech ids and how many of them are valid.

    Attributes:
        ids: ``(B, N)`` long for one codebook, ``(B, Q, N)`` for several, at ``frame_rate`` Hz.
        lengths: ``(B,)`` long, valid frames per item (the rest is padding).
    """

    ids: torch.Tensor
    lengths: torch.Tensor


class SpeechTokenizer(ConfigCapture, nn.Module, ABC):
    """Waveform -> speech ids at ``frame_rate`` Hz.

    Subclasses implement :meth:`_encode` on a padded float batch at ``sample_rate``; :meth:`encode` takes care of
    what users hand in (a list of clips, int PCM, stereo, another rate) through ``to_mono_float32``.
    """

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Input rate in Hz."""

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Ids per second."""

    @property
    @abstractmethod
    def codebook_size(self) -> int:
        """Codes per codebook."""

    @property
    def num_codebooks(self) -> int:
        """Codebooks ``Q``; ids are ``(B, N)`` when 1, ``(B, Q, N)`` otherwise."""
        return 1

    @property
    def samples_per_frame(self) -> int:
        """Samples per id at ``sample_rate``."""
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def can_decode(self) -> bool:
        """Whether :meth:`decode` returns audio."""
        return False

    @abstractmethod
    def _encode(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> TokenizerOutput:
        """``wav`` ``(B, T)`` float32 at ``sample_rate`` with ``wav_lengths`` ``(B,)`` samples -> ids."""

    def prepare(
        self, wav: torch.Tensor | list, sample_rate: int, wav_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert user audio to a padded ``(B, T)`` float32 batch at ``sample_rate`` and its lengths.

        ``wav`` may be ``(T,)``, ``(B, T)`` (float or int PCM), or a list of clips (each ``(T,)`` or ``(C, T)``).
        Stereo is downmixed and other rates resampled, with a warning; empty, NaN/inf or shorter-than-one-frame
        audio raises a ``ValueError`` naming the item.
        """
        if isinstance(wav, (list, tuple)):
            clips = list(wav)
            given = None
        else:
            w = torch.as_tensor(wav)
            clips = [w] if w.ndim == 1 else list(w)
            given = wav_lengths
        out = []
        for i, clip in enumerate(clips):
            if given is not None:
                clip = clip[..., : int(given[i])]
            out.append(
                to_mono_float32(
                    clip, sample_rate, self.sample_rate, min_samples=self.samples_per_frame, name=f"batch item {i}"
                )
            )
        lengths = torch.tensor([c.numel() for c in out], dtype=torch.long)
        batch = torch.zeros(len(out), int(lengths.max()))
        for i, c in enumerate(out):
            batch[i, : c.numel()] = c
        return batch, lengths

    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor | list, sample_rate: int, wav_lengths: torch.Tensor | None = None
    ) -> TokenizerOutput:
        """Audio (see :meth:`prepare`) at ``sample_rate`` Hz -> :class:`TokenizerOutput`."""
        batch, lengths = self.prepare(wav, sample_rate, wav_lengths)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        return self._encode(batch.to(device), lengths.to(device))

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the first id outside ``[0, codebook_size)``."""
        bad = (ids < 0) | (ids >= self.codebook_size)
        if bad.any():
            raise ValueError(
                f"speech id {int(ids[bad][0])} is outside the codebook: expected 0..{self.codebook_size - 1} "
                f"(codebook size {self.codebook_size})"
            )

    def decode(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Ids -> ``(B, T)`` audio at ``sample_rate``; only tokenizers with ``can_decode``."""
        raise NotImplementedError(
            f"{type(self).__name__} has no waveform decoder; use a SpeechDecoder + Vocoder to turn its ids into audio"
        )
