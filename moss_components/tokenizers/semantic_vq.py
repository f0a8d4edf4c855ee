"""MOSS-Speech's semantic tokenizer at any scale: causal encoder, 12.5 Hz, one codebook, CTC as the only signal.

```
wav 16 kHz -> log-mel 100 Hz -> conv (stride 2) 50 Hz -> stack 4 frames 12.5 Hz -> causal transformer
           -> quantizer (CosineVQ or FSQ) -> ids (B, N)
                       \\-> 3x upsample -> CTC head (characters)   [training signal only]
           \\-> (encoder_ctc_weight > 0) 3x upsample -> linear CTC head  [training only: intermediate CTC]
```
Character CTC straight on 12.5 Hz frames lacks frames (speech runs at ~16 characters/s, up to 25), hence the 3x
upsampling for the CTC head; the ids stay at 12.5 Hz.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from moss_components.asr.ctc_head import CTCHead, CTCOutput
from moss_components.quantizers import CosineVQ, Quantizer
from moss_components.tokenizers.base import SpeechTokenizer, TokenizerOutput
from moss_components.tokenizers.causal_encoder import CausalSpeechEncoder, EncoderStreamState

__all__ = ["SemanticVQTokenizer", "TokenizerStream"]


class SemanticVQTokenizer(SpeechTokenizer):
    """Single-codebook semantic speech tokenizer trained with character CTC.

    Args:
        sample_rate: input rate in Hz (16000).
        n_mels: mel bands (128 for ``moss``, 64-80 at tiny scale).
        dim: encoder width.
        depth, heads: causal transformer layers / heads.
        pool: downsampling from the 50 Hz front end (4 -> 12.5 Hz).
        downsample: ``"stack"`` (frames concatenated before the transformer, the default) or ``"mean"`` (averaged
            after a 50 Hz transformer); see :class:`CausalSpeechEncoder`.
        quantizer: a :class:`~moss_components.quantizers.Quantizer` whose ``dim`` equals ``dim``; default
            ``CosineVQ(dim, 512)``.
        ctc_upsample: time upsampling before the CTC head.
        ctc_depth: transformer layers in the CTC head.
        dropout: dropout in the encoder and head.
        augment: training-time feature augmentation of the encoder's normalized log-mel, e.g.
            :class:`~moss_components.features.SpecAugment` (its ``n_mels`` must equal ``n_mels``).
        running_mean_frames: 0 normalizes the log-mel by a fixed mean; above 0, by each band's running mean
            (causal mean normalization, see :class:`CausalSpeechEncoder`).
        encoder_ctc_weight: above 0, a second CTC head (upsampling + linear, no transformer) reads the encoder's
            features *before* the quantizer, and its loss is added at this weight in training (intermediate CTC,
            Lee & Watanabe 2021): the encoder learns from a path that skips the code bottleneck.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        pool: int = 4,
        quantizer: Quantizer | None = None,
        ctc_upsample: int = 3,
        ctc_depth: int = 2,
        dropout: float = 0.1,
        downsample: str = "stack",
        augment: nn.Module | None = None,
        running_mean_frames: int = 0,
        encoder_ctc_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if encoder_ctc_weight < 0:
            raise ValueError(f"encoder_ctc_weight {encoder_ctc_weight} must be >= 0")
        self.encoder = CausalSpeechEncoder(
            sample_rate,
            n_mels,
            dim,
            depth,
            heads,
            pool,
            dropout,
            downsample=downsample,
            augment=augment,
            running_mean_frames=running_mean_frames,
        )
        self.quantizer = quantizer if quantizer is not None else CosineVQ(dim=dim, codebook_size=512)
        if self.quantizer.dim != dim:
            raise ValueError(f"quantizer dim {self.quantizer.dim} does not match the encoder dim {dim}")
        self.ctc_head = CTCHead(dim, upsample=ctc_upsample, depth=ctc_depth, heads=heads, dropout=dropout)
        self.encoder_ctc_weight = encoder_ctc_weight
        self.encoder_ctc_head = CTCHead(dim, upsample=ctc_upsample, depth=0) if encoder_ctc_weight > 0 else None

    @property
    def sample_rate(self) -> int:
        return self.encoder.mel.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.encoder.frame_rate

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def _mask(self, n: int, lengths: torch.Tensor) -> torch.Tensor:
        return torch.arange(n, device=lengths.device)[None] < lengths[:, None]

    def _encode(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> TokenizerOutput:
        feats, lengths = self.encoder(wav, wav_lengths)
        q = self.quantizer(feats, self._mask(feats.shape[1], lengths))
        return TokenizerOutput(q.ids.masked_fill(~self._mask(q.ids.shape[1], lengths), 0), lengths)

    def ctc_forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> CTCOutput:
        """Training/eval pass: ``wav`` ``(B, T)`` at ``sample_rate`` -> CTC log-probs over characters + ids.

        In training mode with ``encoder_ctc_weight`` > 0, ``intermediate`` holds the encoder head's log-probs.
        """
        feats, lengths = self.encoder(wav, wav_lengths)
        mask = self._mask(feats.shape[1], lengths)
        q = self.quantizer(feats, mask)
        log_probs, ctc_lengths = self.ctc_head(q.quantized, lengths)
        intermediate = []
        if self.encoder_ctc_head is not None and self.training:
            intermediate.append((*self.encoder_ctc_head(feats, lengths), self.encoder_ctc_weight))
        return CTCOutput(log_probs, ctc_lengths, q.loss, q.ids, lengths, q.bypassed, intermediate)

    def ids_to_ctc(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Read ids back as characters: ``(B, N)`` ids -> CTC log-probs ``(B, 3N, V)`` and lengths."""
        self.check_ids(ids)
        return self.ctc_head(self.quantizer.decode(ids), lengths)

    @torch.no_grad()
    def transcribe(self, wav: torch.Tensor | list, sample_rate: int) -> list[str]:
        """Greedy CTC transcript of each clip, read through the quantized ids (what the LM sees)."""
        from moss_components.asr.ctc_vocab import ctc_greedy_decode

        batch, lengths = self.prepare(wav, sample_rate)
        out = self.ctc_forward(batch, lengths)
        return ctc_greedy_decode(out.log_probs, out.lengths)

    @contextmanager
    def streaming(self, batch_size: int = 1):
        """Context for chunk-by-chunk encoding: ``with tok.streaming() as s: ids = s.encode_chunk(wav_piece)``."""
        was_training = self.training
        self.eval()
        try:
            yield TokenizerStream(self, batch_size)
        finally:
            self.train(was_training)


class TokenizerStream:
    """Incremental encoder state; ids from :meth:`encode_chunk` concatenated equal ``encode`` of the whole clip."""

    def __init__(self, tokenizer: SemanticVQTokenizer, batch_size: int = 1) -> None:
        self.tokenizer = tokenizer
        self.state = EncoderStreamState()
        self.batch_size = batch_size

    @torch.no_grad()
    def encode_chunk(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, t)`` or ``(t,)`` float32 samples at ``sample_rate`` -> ``(B, n)`` new ids (``n`` may be 0)."""
        if wav.ndim == 1:
            wav = wav[None]
        if not torch.isfinite(wav).all():
            raise ValueError("streamed audio chunk contains NaN or inf samples")
        feats = self.tokenizer.encoder.stream(wav.float(), self.state)
        if feats.shape[1] == 0:
            return torch.zeros(wav.shape[0], 0, dtype=torch.long, device=wav.device)
        return self.tokenizer.quantizer(feats).ids
