"""``SpeechTokenizer`` wrappers over transformers' neural codecs: Mimi, EnCodec and DAC.

Each builds from a config dict with random weights (tests, ablations) or loads ``from_pretrained(local_dir)``
(no download: ``local_files_only``). Codes come out as ``(B, Q, N)`` for ``Q = num_codebooks`` residual
codebooks, and :meth:`decode` turns them back into audio.

What the LM consumes. The split model has one speech channel, so a multi-codebook codec is fed by
:meth:`CodecTokenizer.lm_ids`: by default the first (coarsest) codebook only, ``(B, N)`` with ids in
``[0, codebook_size)``; for Mimi that is the semantic codebook, distilled from WavLM, which is the closest to what
MOSS-Speech's semantic tokenizer gives. ``lm_mode="flatten"`` instead interleaves all ``Q`` codebooks frame by
frame, ``(B, N * Q)``, with codebook ``q`` offset by ``q * codebook_size`` (vocabulary ``Q * codebook_size``, rate
``Q * frame_rate``); :meth:`from_lm_ids` inverts either. Decoding first-codebook ids alone gives coarse audio.
"""

from __future__ import annotations

import torch

from moss_components.tokenizers.base import SpeechTokenizer, TokenizerOutput

__all__ = ["CodecTokenizer", "MimiTokenizer", "EncodecTokenizer", "DacTokenizer"]


class CodecTokenizer(SpeechTokenizer):
    """Base of the transformers codec wrappers.

    Args:
        config: keyword arguments of the transformers config class (random weights); ignored with ``pretrained``.
        pretrained: a local directory for ``from_pretrained`` (no network).
        num_codebooks: residual codebooks kept (default: all the model has).
        lm_mode: ``"first"`` (first codebook, ``(B, N)``) or ``"flatten"`` (all codebooks interleaved).
    """

    model_class: type
    config_class: type

    def __init__(
        self,
        config: dict | None = None,
        pretrained: str | None = None,
        num_codebooks: int | None = None,
        lm_mode: str = "first",
    ) -> None:
        super().__init__()
        if lm_mode not in ("first", "flatten"):
            raise ValueError(f"lm_mode must be 'first' or 'flatten', got {lm_mode!r}")
        if pretrained is not None:
            self.model = self.model_class.from_pretrained(pretrained, local_files_only=True)
        else:
            self.model = self.model_class(self.config_class(**(config or {})))
        self.model.eval()
        total = self._total_codebooks()
        self._q = num_codebooks or total
        if not 1 <= self._q <= total:
            raise ValueError(f"num_codebooks {num_codebooks} out of range: the model has {total} codebooks")
        self.lm_mode = lm_mode

    # subclasses: total codebooks, per-model encode/decode
    def _total_codebooks(self) -> int:
        raise NotImplementedError

    def _codes(self, wav: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _audio(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def num_codebooks(self) -> int:
        return self._q

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.codebook_size)

    @property
    def can_decode(self) -> bool:
        return True

    def _encode(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> TokenizerOutput:
        mask = (torch.arange(wav.shape[-1], device=wav.device)[None] < wav_lengths[:, None]).long()
        codes = self._codes(wav[:, None, :], mask)  # (B, Q, N)
        lengths = torch.ceil(wav_lengths.float() * self.frame_rate / self.sample_rate).long()
        return TokenizerOutput(codes, lengths.clamp(max=codes.shape[-1]))

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``(B, Q, N)`` (or ``(B, N)`` first-codebook ids) -> audio ``(B, T)`` at ``sample_rate``."""
        if ids.ndim == 2:
            ids = ids[:, None]
        self.check_ids(ids)
        return self._audio(ids.long())[:, 0]

    def lm_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, Q, N)`` codes -> what the LM's single speech channel consumes (see the module docstring)."""
        if self.lm_mode == "first":
            return codes[:, 0]
        b, q, n = codes.shape
        offsets = torch.arange(q, device=codes.device)[None, :, None] * self.codebook_size
        return (codes + offsets).transpose(1, 2).reshape(b, n * q)

    def from_lm_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`lm_ids`: ``(B, N)`` or ``(B, N * Q)`` -> ``(B, 1 or Q, N)`` codes."""
        if self.lm_mode == "first":
            return ids[:, None]
        b, m = ids.shape
        q = self._q
        if m % q:
            raise ValueError(f"flattened id count {m} is not a multiple of the {q} codebooks")
        return (ids.reshape(b, m // q, q) % self.codebook_size).transpose(1, 2)

    @property
    def lm_vocab_size(self) -> int:
        """Speech vocabulary the LM needs for :meth:`lm_ids`."""
        return self.codebook_size * (self._q if self.lm_mode == "flatten" else 1)


class MimiTokenizer(CodecTokenizer):
    """Kyutai's Mimi (12.5 Hz, 24 kHz; codebook 0 is semantic). ``transformers.MimiModel``."""

    from transformers import MimiConfig as config_class
    from transformers import MimiModel as model_class

    def _total_codebooks(self) -> int:
        return int(self.model.config.num_quantizers)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.frame_rate)

    def _codes(self, wav, mask):
        return self.model.encode(wav, padding_mask=mask, num_quantizers=self._q).audio_codes

    def _audio(self, codes):
        return self.model.decode(codes).audio_values


class EncodecTokenizer(CodecTokenizer):
    """Meta's EnCodec (75 Hz at 24 kHz). ``transformers.EncodecModel``; bandwidth picks the codebook count."""

    from transformers import EncodecConfig as config_class
    from transformers import EncodecModel as model_class

    def _total_codebooks(self) -> int:
        return int(self.model.config.num_quantizers)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.frame_rate)

    def _bandwidth(self) -> float:
        # Each codebook costs log2(codebook_size) * frame_rate bits/s; pick the smallest bandwidth with >= Q books.
        per_book = self.model.config.frame_rate * torch.log2(torch.tensor(float(self.codebook_size))).item() / 1000
        for bw in sorted(self.model.config.target_bandwidths):
            if int(bw / per_book + 1e-6) >= self._q:
                return bw
        return max(self.model.config.target_bandwidths)

    def _codes(self, wav, mask):
        out = self.model.encode(wav, padding_mask=mask, bandwidth=self._bandwidth())
        codes = out.audio_codes  # (chunks, B, Q, N); one chunk without chunk_length_s
        return codes[0, :, : self._q]

    def _audio(self, codes):
        return self.model.decode(codes[None], [None]).audio_values


class DacTokenizer(CodecTokenizer):
    """Descript Audio Codec. ``transformers.DacModel``."""

    from transformers import DacConfig as config_class
    from transformers import DacModel as model_class

    def _total_codebooks(self) -> int:
        return int(self.model.config.n_codebooks)

    @property
    def frame_rate(self) -> float:
        return float(self.model.config.frame_rate)

    def _codes(self, wav, mask):
        return self.model.encode(wav, n_quantizers=self._q).audio_codes[:, : self._q]

    def _audio(self, codes):
        return self.model.decode(audio_codes=codes).audio_values[:, None]
