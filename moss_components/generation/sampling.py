"""Sampling settings and the logits processing of one decoding step (repetition penalty, temperature, top-k/p)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SamplingConfig", "apply_repetition_penalty", "process_logits", "sample_next"]


@dataclass
class SamplingConfig:
    """How the next token is chosen. Defaults are MOSS-Speech's (temperature 0.6, top-p 0.95, top-k 20,
    repetition penalty 1.1, up to 500 new tokens).

    Args:
        temperature: divides the logits (> 0; ignored when ``greedy``).
        top_p: nucleus mass in (0, 1]; 1 disables.
        top_k: keep the k best ids; 0 disables.
        repetition_penalty: >= 1; HF's rule (positive scores divided, negative multiplied) over the ids already in
            the sample's channel of the current mode (prompt included); 1 disables.
        max_new_tokens: decoding steps at most (> 0).
        greedy: argmax instead of sampling (``do_sample=False``); the repetition penalty still applies.
        seed: seeds a private generator (same seed, same tokens); None uses the global RNG.
        use_cache: decode with the KV cache when the router supports one (the result is the same either way).
    """

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    repetition_penalty: float = 1.1
    max_new_tokens: int = 500
    greedy: bool = False
    seed: int | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature} (use greedy=True)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty < 1:
            raise ValueError(f"repetition_penalty must be >= 1, got {self.repetition_penalty}")
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """HF's repetition penalty. ``logits (N, V)`` float, ``seen (N, V)`` bool: ids already in the context."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def process_logits(logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """The scores that are softmaxed (or argmaxed): penalty, then temperature, top-k, top-p (HF's order).

    Args:
        logits: ``(N, V)``; ids that must never be chosen are already ``-inf``.
        seen: ``(N, V)`` bool for the repetition penalty.

    Returns:
        ``(N, V)`` float32 scores, ``-inf`` where filtered out.
    """
    scores = apply_repetition_penalty(logits.float(), seen, config.repetition_penalty)
    if config.greedy:
        return scores
    scores = scores / config.temperature
    if 0 < config.top_k < scores.shape[-1]:
        kth = scores.topk(config.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        # HF's TopPLogitsWarper: drop the low tail whose cumulative mass is <= 1 - top_p, keep at least one id
        sorted_scores, order = scores.sort(dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - config.top_p)
        drop[:, -1] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores


def sample_next(
    logits: torch.Tensor, seen: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Pick one id per row of ``logits (N, V)`` (see :func:`process_logits`); returns ``(N,)`` long."""
    scores = process_logits(logits, seen, config)
    if config.greedy:
        return scores.argmax(dim=-1)
    return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(-1)
