"""Conditional flow-matching decoder (the CosyVoice 2 recipe MOSS-Speech uses): speech ids -> log-mel.

```
ids (B, N) 12.5 Hz -> embedding -> token encoder (chunk mask + look-ahead)
   -> repeat x frames_per_token (+ position-in-token embedding) -> upsampling encoder (frame chunk mask) = h
   -> estimator v(x_t, t | h, speaker) over frames, integrated with Euler from noise (t=0) to mel (t=1)
```
Time follows a cosine schedule (``t = 1 - cos(pi/2 * s)``) in training and sampling; classifier-free guidance
mixes ``(1 + w) v(x | h, spk) - w v(x | 0, 0)``. An optional speaker prompt (log-mel of a reference clip) is
summarized by its per-band mean and spread.

Streaming. A convolution gives each id a view of the next ``lookahead_tokens`` ids; after it, every attention
mask is chunk-causal (a token or frame sees what lies up to the end of its chunk). One-shot decoding uses the
same masks, so decoding chunk by chunk (:meth:`FlowMatchingDecoder.streaming`) gives the one-shot mel, up to float
rounding, when the noise is shared (noise is drawn frame-major from a seed, so a prefix of it is the same for any
length). A chunk is emitted as soon as its look-ahead tokens have arrived. The stream recomputes the prefix for
each chunk (simple and exact; O(n^2) in the number of chunks, fine for answers of a few seconds).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from moss_components.decoders.base import SpeechDecoder
from moss_components.features import LogMel
from moss_components.tokenizers.transformer import Transformer, chunk_mask, sinusoidal_embedding

__all__ = ["FlowMatchingDecoder", "DecoderStream", "frame_noise"]


def frame_noise(batch: int, frames: int, n_mels: int, seed: int, device=None) -> torch.Tensor:
    """``(B, frames, n_mels)`` standard normal noise, drawn frame-major so any prefix is length-independent."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(frames, batch, n_mels, generator=gen).permute(1, 0, 2).to(device)


def cosine_times(steps: int, device=None) -> torch.Tensor:
    """``(steps + 1,)`` times from 0 to 1, dense near 0 (the noisy end)."""
    s = torch.linspace(0, 1, steps + 1, device=device)
    return 1 - torch.cos(s * math.pi / 2)


class FlowMatchingDecoder(SpeechDecoder):
    """Ids ``(B, N)`` -> natural-log mel ``(B, n_mels, N * frames_per_token)`` by conditional flow matching.

    Args:
        codebook_size: speech ids accepted.
        sample_rate, n_mels, n_fft, hop_length: the mel it predicts (``LogMel(causal=False)``); with 16 kHz,
            hop 320 (50 Hz) and 12.5 Hz ids, ``frames_per_token`` is 4 (MOSS-Speech: 4 mel frames per token).
        frames_per_token: mel frames per id.
        dim, heads: transformer width / heads.
        encoder_depth: token-level layers; upsample_depth: frame-level layers of the conditioning encoder.
        estimator_depth: layers of the vector-field estimator.
        chunk_tokens: streaming chunk in ids; lookahead_tokens: ids of look-ahead (MOSS-Speech: 3).
        steps: Euler steps (10); guidance: classifier-free guidance weight (0.7).
        temperature: scale of the starting noise (Matcha-TTS samples at 0.667). Below 1 gives smoother, more
            average mels; the tiny decoder resynthesizes worse for it (CER 23.9% at 1.0, 29.5% at 0.5).
        cfg_dropout: probability of dropping the id condition in training; prompt_dropout: of the speaker prompt.
        sigma_min: OT-CFM minimum noise.
        mel_mean, mel_std: normalization of the log-mel the flow works in.
        mu_loss_weight: weight of an L1 loss tying a linear read-out of ``h`` to the mel (speeds up early
            training; the read-out is also a one-step mel estimate for logging).
    """

    def __init__(
        self,
        codebook_size: int = 512,
        sample_rate: int = 16000,
        n_mels: int = 80,
        n_fft: int = 1024,
        hop_length: int = 320,
        frames_per_token: int = 4,
        dim: int = 256,
        heads: int = 4,
        encoder_depth: int = 3,
        upsample_depth: int = 1,
        estimator_depth: int = 4,
        chunk_tokens: int = 8,
        lookahead_tokens: int = 3,
        steps: int = 10,
        guidance: float = 0.7,
        temperature: float = 1.0,
        cfg_dropout: float = 0.2,
        prompt_dropout: float = 0.5,
        sigma_min: float = 1e-4,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        mu_loss_weight: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mel = LogMel(sample_rate, n_fft, hop_length, n_mels=n_mels, causal=False)
        self._codebook_size = codebook_size
        self.frames_per_token = frames_per_token
        self.chunk_tokens, self.lookahead_tokens = chunk_tokens, lookahead_tokens
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.steps, self.guidance, self.temperature = steps, guidance, temperature
        self.cfg_dropout, self.prompt_dropout = cfg_dropout, prompt_dropout
        self.sigma_min = sigma_min
        self.mel_mean, self.mel_std = mel_mean, mel_std
        self.mu_loss_weight = mu_loss_weight
        self.embed = nn.Embedding(codebook_size, dim)
        # Look-ahead lives in one conv over ids i..i+lookahead (CosyVoice 2's pre-lookahead layer), so attention can
        # stay chunk-causal: look-ahead inside attention would compound layer after layer.
        self.lookahead_conv = nn.Conv1d(dim, dim, lookahead_tokens + 1)
        self.token_encoder = Transformer(dim, encoder_depth, heads, dropout=dropout)
        self.phase = nn.Parameter(torch.zeros(frames_per_token, dim))
        self.upsample_encoder = Transformer(dim, upsample_depth, heads, dropout=dropout)
        self.mu_proj = nn.Linear(dim, n_mels)
        self.speaker = nn.Sequential(nn.Linear(2 * n_mels, dim), nn.GELU(), nn.Linear(dim, dim))
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.x_proj = nn.Linear(n_mels, dim)
        self.h_proj = nn.Linear(dim, dim)
        self.estimator = Transformer(dim, estimator_depth, heads, dropout=dropout)
        self.out = nn.Linear(dim, n_mels)
        self.dim = dim

    @property
    def codebook_size(self) -> int:
        return self._codebook_size

    # -- pieces ------------------------------------------------------------------------------------------------
    def _valid(self, n: int, lengths: torch.Tensor) -> torch.Tensor:
        return torch.arange(n, device=lengths.device)[None] < lengths[:, None]

    def encode_ids(self, ids: torch.Tensor, ids_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids ``(B, N)`` -> frame conditions ``h`` ``(B, N * fpt, dim)`` and the mel read-out ``mu``."""
        b, n = ids.shape
        fpt = self.frames_per_token
        valid = self._valid(n, ids_lengths)
        x = (self.embed(ids) * valid[..., None]).transpose(1, 2)
        x = (x + self.lookahead_conv(F.pad(x, (0, self.lookahead_tokens)))).transpose(1, 2)
        x, _ = self.token_encoder(x, mask=chunk_mask(n, self.chunk_tokens, 0, ids.device), key_padding=valid)
        x = (x[:, :, None] + self.phase[None, None]).reshape(b, n * fpt, self.dim)
        h, _ = self.upsample_encoder(
            x,
            mask=chunk_mask(n * fpt, self.chunk_tokens * fpt, 0, ids.device),
            key_padding=self._valid(n * fpt, ids_lengths * fpt),
        )
        return h, self.mu_proj(h)

    def speaker_embedding(self, prompt_mel: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """Prompt log-mel ``(B, n_mels, F_p)`` -> ``(B, dim)``; zeros without a prompt."""
        if prompt_mel is None:
            return torch.zeros(batch, self.dim, device=device)
        if prompt_mel.ndim != 3 or prompt_mel.shape[1] != self.n_mels:
            raise ValueError(
                f"speaker prompt must be a (B, {self.n_mels}, frames) log-mel, got {tuple(prompt_mel.shape)}"
            )
        p = (prompt_mel - self.mel_mean) / self.mel_std
        stats = torch.cat([p.mean(-1), p.std(-1, unbiased=False)], dim=-1)
        return self.speaker(stats)

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor, spk: torch.Tensor, frame_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Vector field at ``x`` ``(B, F, n_mels)``, times ``t`` ``(B,)``, conditions ``h`` ``(B, F, dim)``."""
        temb = self.time_mlp(sinusoidal_embedding(t, self.dim))
        z = self.x_proj(x) + self.h_proj(h) + (temb + spk)[:, None]
        n = x.shape[1]
        fpt = self.frames_per_token
        z, _ = self.estimator(
            z,
            mask=chunk_mask(n, self.chunk_tokens * fpt, 0, x.device),
            key_padding=self._valid(n, frame_lengths),
        )
        return self.out(z)

    # -- training ----------------------------------------------------------------------------------------------
    def loss(
        self, ids: torch.Tensor, ids_lengths: torch.Tensor, mel: torch.Tensor, prompt_mel: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Flow-matching loss. ``mel`` ``(B, n_mels, >= N * fpt)`` log-mel target (extra frames are cut).

        Returns ``{"loss", "fm_loss", "mu_l1"}`` (``mu_l1`` is in normalized-mel units).
        """
        self.check_ids(ids)
        b, n = ids.shape
        frames = n * self.frames_per_token
        if mel.shape[-1] < frames:
            mel = F.pad(mel, (0, frames - mel.shape[-1]), value=math.log(self.mel.log_floor))
        x1 = ((mel[..., :frames] - self.mel_mean) / self.mel_std).transpose(1, 2)
        flen = ids_lengths * self.frames_per_token
        valid = self._valid(frames, flen)[..., None].float()
        h, mu = self.encode_ids(ids, ids_lengths)
        spk = self.speaker_embedding(prompt_mel if prompt_mel is not None else mel, b, ids.device)
        if self.training:
            keep_h = (torch.rand(b, device=ids.device) >= self.cfg_dropout).float()
            keep_spk = (torch.rand(b, device=ids.device) >= self.prompt_dropout).float() * keep_h
            h_in, spk = h * keep_h[:, None, None], spk * keep_spk[:, None]
        else:
            h_in = h
        t = 1 - torch.cos(torch.rand(b, device=ids.device) * math.pi / 2)
        x0 = torch.randn_like(x1)
        tt = t[:, None, None]
        xt = (1 - (1 - self.sigma_min) * tt) * x0 + tt * x1
        target = x1 - (1 - self.sigma_min) * x0
        v = self.velocity(xt, t, h_in, spk, flen)
        denom = valid.sum() * x1.shape[-1]
        fm = ((v.float() - target) ** 2 * valid).sum() / denom
        mu_l1 = ((mu.float() - x1).abs() * valid).sum() / denom
        return {"loss": fm + self.mu_loss_weight * mu_l1, "fm_loss": fm, "mu_l1": mu_l1}

    # -- inference ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        ids: torch.Tensor,
        ids_lengths: torch.Tensor | None = None,
        prompt_mel: torch.Tensor | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        noise: torch.Tensor | None = None,
        seed: int = 0,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """Ids ``(B, N)`` -> log-mel ``(B, n_mels, N * frames_per_token)``.

        Args:
            ids_lengths: ``(B,)`` valid ids (frames past ``lengths * fpt`` are padding).
            prompt_mel: optional speaker prompt, log-mel ``(B, n_mels, F_p)`` of a reference clip.
            steps, guidance, temperature: override the Euler steps / guidance weight / noise scale.
            noise: ``(B, N * fpt, n_mels)`` unit starting noise (scaled by the temperature); else
                :func:`frame_noise` with ``seed``.
        """
        if ids.ndim == 1:
            ids = ids[None]
        self.check_ids(ids)
        b, n = ids.shape
        if ids_lengths is None:
            ids_lengths = torch.full((b,), n, dtype=torch.long, device=ids.device)
        steps = self.steps if steps is None else steps
        w = self.guidance if guidance is None else guidance
        frames = n * self.frames_per_token
        flen = ids_lengths * self.frames_per_token
        h, _ = self.encode_ids(ids, ids_lengths)
        spk = self.speaker_embedding(prompt_mel, b, ids.device)
        x = frame_noise(b, frames, self.n_mels, seed, ids.device) if noise is None else noise[:, :frames].to(ids.device)
        x = x * (self.temperature if temperature is None else temperature)
        ts = cosine_times(steps, ids.device)
        if w:
            h2, spk2, flen2 = (
                torch.cat([h, torch.zeros_like(h)]),
                torch.cat([spk, torch.zeros_like(spk)]),
                flen.repeat(2),
            )
        for k in range(steps):
            t = ts[k].expand(b)
            if w:
                v_c, v_u = self.velocity(x.repeat(2, 1, 1), t.repeat(2), h2, spk2, flen2).chunk(2)
                v = (1 + w) * v_c - w * v_u
            else:
                v = self.velocity(x, t, h, spk, flen)
            x = x + (ts[k + 1] - ts[k]) * v
        return (x * self.mel_std + self.mel_mean).transpose(1, 2)

    @contextmanager
    def streaming(self, batch_size: int = 1, prompt_mel: torch.Tensor | None = None, seed: int = 0, **decode_kwargs):
        """``with dec.streaming() as s: mel = s.push(new_ids); ...; mel = s.flush()`` (see the module docstring)."""
        was_training = self.training
        self.eval()
        try:
            yield DecoderStream(self, batch_size, prompt_mel, seed, decode_kwargs)
        finally:
            self.train(was_training)


class DecoderStream:
    """Chunked decoding state: push ids as they are generated, get finished mel chunks back."""

    def __init__(self, decoder: FlowMatchingDecoder, batch_size: int, prompt_mel, seed: int, decode_kwargs: dict):
        self.decoder = decoder
        self.prompt_mel = prompt_mel
        self.seed = seed
        self.kwargs = decode_kwargs
        self.ids = torch.zeros(batch_size, 0, dtype=torch.long)
        self.emitted_frames = 0

    def _emit(self, upto_tokens: int) -> torch.Tensor:
        fpt = self.decoder.frames_per_token
        if upto_tokens * fpt <= self.emitted_frames:
            return torch.zeros(self.ids.shape[0], self.decoder.n_mels, 0)
        mel = self.decoder.decode(self.ids, prompt_mel=self.prompt_mel, seed=self.seed, **self.kwargs)
        out = mel[..., self.emitted_frames : upto_tokens * fpt]
        self.emitted_frames = upto_tokens * fpt
        return out

    def push(self, ids: torch.Tensor) -> torch.Tensor:
        """Append ``(B, n)`` ids; return the ``(B, n_mels, f)`` mel frames now final (``f`` may be 0)."""
        if ids.ndim == 1:
            ids = ids[None]
        self.decoder.check_ids(ids)
        self.ids = torch.cat([self.ids.to(ids.device), ids.long()], dim=1)
        c, la = self.decoder.chunk_tokens, self.decoder.lookahead_tokens
        ready_chunks = max(0, (self.ids.shape[1] - la) // c)
        return self._emit(ready_chunks * c)

    def flush(self) -> torch.Tensor:
        """End of the id stream: return every frame not yet emitted."""
        if self.ids.shape[1] == 0:
            return torch.zeros(self.ids.shape[0], self.decoder.n_mels, 0)
        return self._emit(self.ids.shape[1])
