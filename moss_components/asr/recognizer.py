"""``CTCRecognizer``: the ASR judge, a small causal-encoder CTC model at 25 frames/s with no quantizer.

It shares the tokenizer's encoder and CTC head (quantizer off, pooling 2 instead of 4), is trained on the corpus'
read speech by :class:`lightning_modules.asr_module.ASRModule`, and is independent of any model it judges.
"""

from __future__ import annotations

import torch
from torch import nn

from moss_components.asr.ctc_head import CTCHead, CTCOutput
from moss_components.asr.ctc_vocab import ctc_closed_set_decode, ctc_greedy_decode
from moss_components.audio import to_mono_float32
from moss_components.tokenizers.causal_encoder import CausalSpeechEncoder
from moss_components.tokenizers.pretrained import ConfigCapture, load_pretrained

__all__ = ["CTCRecognizer", "decode_ctc", "load_recognizer"]


class CTCRecognizer(ConfigCapture, nn.Module):
    """Waveform -> characters with CTC at ``16000 / 160 / 2 / pool`` frames/s (25 with ``pool=2``).

    Args:
        sample_rate: input rate in Hz.
        n_mels, dim, depth, heads: encoder size (see ``CausalSpeechEncoder``).
        pool: downsampling from the 50 Hz front end; 2 gives 25 frames/s.
        downsample: ``"mean"`` (transformer at 50 Hz, averaged after) or ``"stack"`` (see ``CausalSpeechEncoder``).
        head_depth: bidirectional transformer layers in the CTC head.
        dropout: dropout in encoder and head.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        dim: int = 192,
        depth: int = 4,
        heads: int = 4,
        pool: int = 2,
        head_depth: int = 2,
        dropout: float = 0.1,
        downsample: str = "mean",
    ) -> None:
        super().__init__()
        self.encoder = CausalSpeechEncoder(sample_rate, n_mels, dim, depth, heads, pool, dropout, downsample=downsample)
        self.ctc_head = CTCHead(dim, upsample=1, depth=head_depth, heads=heads, dropout=dropout)

    @property
    def sample_rate(self) -> int:
        return self.encoder.mel.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    def ctc_forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> CTCOutput:
        """``wav`` ``(B, T)`` at ``sample_rate`` with ``(B,)`` lengths -> CTC log-probs ``(B, M, V)``."""
        feats, lengths = self.encoder(wav, wav_lengths)
        log_probs, lengths = self.ctc_head(feats, lengths.clamp_min(1))
        return CTCOutput(log_probs, lengths, wav.new_zeros(()))

    @torch.no_grad()
    def read(self, wav: torch.Tensor | list, sample_rate: int) -> CTCOutput:
        """CTC log-probs ``(B, M, V)`` of clips ``wav`` (``(T,)``, ``(B, T)`` or a list) at ``sample_rate``: mono,
        resampled and zero-padded into one batch."""
        if isinstance(wav, (list, tuple)):
            clips = list(wav)
        else:
            w = torch.as_tensor(wav)
            clips = [w] if w.ndim == 1 else list(w)
        hop = self.encoder.hop_samples
        clips = [
            to_mono_float32(c, sample_rate, self.sample_rate, min_samples=hop, name=f"batch item {i}")
            for i, c in enumerate(clips)
        ]
        lengths = torch.tensor([c.numel() for c in clips])
        batch = torch.zeros(len(clips), int(lengths.max()))
        for i, c in enumerate(clips):
            batch[i, : c.numel()] = c
        device = next(self.parameters()).device
        return self.ctc_forward(batch.to(device), lengths.to(device))

    @torch.no_grad()
    def transcribe(self, wav: torch.Tensor | list, sample_rate: int, candidates: list[str] | None = None) -> list[str]:
        """Transcript of each clip (as :meth:`read` takes them): greedy (open vocabulary), or with ``candidates`` the
        most likely of those sentences (:func:`ctc_closed_set_decode`)."""
        return decode_ctc(self.read(wav, sample_rate), candidates)


def decode_ctc(out: CTCOutput, candidates: list[str] | None = None) -> list[str]:
    """Greedy transcripts of a CTC output, or with ``candidates`` the most likely of those sentences."""
    if candidates is not None:
        return ctc_closed_set_decode(out.log_probs, out.lengths, candidates)
    return ctc_greedy_decode(out.log_probs, out.lengths)


def load_recognizer(path: str) -> CTCRecognizer:
    """Load a :class:`CTCRecognizer` saved with ``save_pretrained`` (``config.yaml`` + ``model.safetensors``)."""
    return load_pretrained(path, CTCRecognizer)
