"""Cosine-similarity vector quantizer with EMA codebook updates and dead-code restarts.

Vectors are projected to a small space (8 to 32 dimensions) and L2-normalized; the nearest code is the one with
the largest dot product. Codes follow the data by exponential moving averages (no codebook gradient), codes nobody
picked for a while are restarted on random vectors of the current batch, and a short warm-up passes the continuous
vectors through untouched. When the warm-up ends, the codebook is set by spherical k-means (k-means++ seeding) over
the vectors of its last ``kmeans_window`` steps, so that no code starts where there is no data.

At tiny scale (512 codes, configs/tokenizer/tiny.yaml) the code space's width decided whether the codebook
survived: with 32 dimensions one seed of three kept 11-19% of the codes in use and learned CTC about 3x slower;
with 8 dimensions both seeds tried had 79-93% in use by step 600. FSQ(8,8,8) collapsed to one code during
CTC's all-blank phase.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moss_components.quantizers.base import Quantizer, QuantizerOutput

__all__ = ["CosineVQ"]


class CosineVQ(Quantizer):
    """Single-codebook cosine VQ.

    Args:
        dim: input/output width ``D``.
        codebook_size: number of codes ``K``.
        code_dim: width of the normalized code space (input is projected ``D -> code_dim -> D``).
        decay: EMA decay of code statistics.
        commitment: weight of ``||z - sg(c)||^2``.
        dead_threshold: a code picked fewer than this many times per training step, on average over the last
            ``restart_every`` steps, is restarted (0 = only codes nobody picked).
        warmup_steps: training steps that bypass quantization (the codebook is still fitted).
        restart_every: check for dead codes every this many training steps.
        kmeans_window: training steps at the end of the warm-up whose vectors seed the codebook by k-means (0: off).
        kmeans_iters: k-means iterations.
    """

    def __init__(
        self,
        dim: int = 256,
        codebook_size: int = 512,
        code_dim: int = 32,
        decay: float = 0.99,
        commitment: float = 0.25,
        dead_threshold: float = 0.0,
        warmup_steps: int = 200,
        restart_every: int = 20,
        kmeans_window: int = 50,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        self.dim = dim
        self._size = codebook_size
        self.code_dim = code_dim
        self.decay = decay
        self.commitment = commitment
        self.dead_threshold = dead_threshold
        self.warmup_steps = warmup_steps
        self.restart_every = restart_every
        self.kmeans_window = kmeans_window
        self.kmeans_iters = kmeans_iters
        self._kmeans_vectors: list[torch.Tensor] = []  # transient: a resume inside the window skips the k-means
        self.proj_in = nn.Linear(dim, code_dim)
        self.proj_out = nn.Linear(code_dim, dim)
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, code_dim), dim=-1))
        self.register_buffer("ema_count", torch.zeros(codebook_size))
        # Picks since the last restart check. Judging death by this window, not by the slow EMA count, matters:
        # early on the encoder drifts fast, and a code restarted on stale vectors must be restarted again soon.
        self.register_buffer("recent", torch.zeros(codebook_size))
        self.register_buffer("ema_sum", 1e-3 * self.codebook)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def codebook_size(self) -> int:
        return self._size

    def _nearest(self, zn: torch.Tensor) -> torch.Tensor:
        return (zn @ self.codebook.T).argmax(dim=-1)

    @torch.no_grad()
    def _update(self, zn: torch.Tensor, ids: torch.Tensor) -> None:
        onehot = F.one_hot(ids, self._size).to(zn.dtype)  # (M, K)
        count = onehot.sum(0)
        summed = onehot.T @ zn
        self.ema_count.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(summed, alpha=1 - self.decay)
        self.codebook.copy_(F.normalize(self.ema_sum, dim=-1))
        self.recent += count
        if int(self.steps) % self.restart_every == 0:
            dead = self.recent <= self.dead_threshold * self.restart_every
            self.recent.zero_()
            n_dead = int(dead.sum())
            if n_dead:
                # Restart on random current vectors, slightly jittered so that twins split apart.
                pick = zn[torch.randint(0, zn.shape[0], (n_dead,), device=zn.device)]
                pick = F.normalize(pick + 0.01 * torch.randn_like(pick), dim=-1)
                self.codebook[dead] = pick
                self.ema_sum[dead] = pick
                self.ema_count[dead] = 1.0

    @torch.no_grad()
    def _kmeans_init(self, x: torch.Tensor) -> None:
        """Spherical k-means (k-means++ seeding) of unit vectors ``x`` ``(M, code_dim)`` into the codebook."""
        k = self._size
        gen = torch.Generator(device="cpu").manual_seed(int(self.steps))
        # k-means++ seeding: each new center drawn with probability ~ squared cosine distance to the nearest so far
        centers = x.new_empty(k, x.shape[1])
        centers[0] = x[int(torch.randint(0, x.shape[0], (1,), generator=gen))]
        dist = (1 - x @ centers[0]).clamp_min(0).square()
        for i in range(1, k):
            weights = dist.cpu() + 1e-12
            centers[i] = x[int(torch.multinomial(weights, 1, generator=gen))]
            dist = torch.minimum(dist, (1 - x @ centers[i]).clamp_min(0).square())
        for _ in range(self.kmeans_iters):
            assign = (x @ centers.T).argmax(dim=-1)
            sums = torch.zeros_like(centers).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k)
            empty = counts == 0
            centers = F.normalize(sums, dim=-1)
            if empty.any():
                refill = torch.randint(0, x.shape[0], (int(empty.sum()),), generator=gen).to(x.device)
                centers[empty] = F.normalize(x[refill] + 0.01 * torch.randn_like(x[refill]), dim=-1)
        self.codebook.copy_(centers)
        self.ema_sum.copy_(centers)
        self.ema_count.fill_(1.0)
        self.recent.zero_()

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> QuantizerOutput:
        """``z`` ``(B, N, D)`` -> quantized ``(B, N, D)``, ids ``(B, N)``; updates the codebook in training."""
        zn = F.normalize(self.proj_in(z).float(), dim=-1)
        if self.training:
            self.steps += 1
            flat = zn.detach().reshape(-1, self.code_dim)
            if mask is not None:
                flat = flat[mask.reshape(-1)]
            step = int(self.steps)
            if self.kmeans_window and self.warmup_steps - self.kmeans_window < step <= self.warmup_steps:
                self._kmeans_vectors.append(flat)
            elif step == self.warmup_steps + 1 and self._kmeans_vectors:
                self._kmeans_init(torch.cat(self._kmeans_vectors))
                self._kmeans_vectors = []
        ids = self._nearest(zn)
        if self.training:
            flat_ids = ids.reshape(-1) if mask is None else ids.reshape(-1)[mask.reshape(-1)]
            if flat.shape[0]:
                self._update(flat, flat_ids)
        code = self.codebook[ids]
        bypassed = self.training and int(self.steps) <= self.warmup_steps
        if bypassed:
            out = zn
            loss = zn.new_zeros(())
        else:
            out = zn + (code - zn).detach()
            diff = (zn - code.detach()).pow(2).sum(-1)
            if mask is not None:
                loss = (diff * mask).sum() / mask.sum().clamp_min(1)
            else:
                loss = diff.mean()
            loss = self.commitment * loss
        return QuantizerOutput(self.proj_out(out.to(z.dtype)), ids, loss, bypassed)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        self.check_ids(ids)
        return self.proj_out(self.codebook[ids])
