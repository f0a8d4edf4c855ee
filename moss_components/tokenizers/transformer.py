"""A small pre-norm transformer with rotary positions, masks and a KV cache for streaming.

Shared by the causal tokenizer encoder, the CTC heads and the flow-matching decoder. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``; the mask decides causal, chunked or full attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Transformer", "TransformerBlock", "causal_mask", "chunk_mask"]


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """``(q_len, k_len)`` bool: query ``i`` (the last ``q_len`` of ``k_len`` positions) sees keys ``<= i``."""
    q = torch.arange(k_len - q_len, k_len, device=device)[:, None]
    k = torch.arange(k_len, device=device)[None, :]
    return k <= q


def chunk_mask(length: int, chunk: int, lookahead: int = 0, device=None) -> torch.Tensor:
    """``(length, length)`` bool: position ``i`` sees every position before the end of its chunk + ``lookahead``.

    With ``chunk=1, lookahead=0`` this is the causal mask. Used so that one-shot decoding computes exactly what
    chunk-by-chunk streaming computes.
    """
    pos = torch.arange(length, device=device)
    limit = (pos // chunk + 1) * chunk + lookahead  # exclusive
    return pos[None, :] < limit[:, None]


def _rope(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding of ``x`` ``(B, H, L, Dh)`` at integer positions ``pos`` ``(L,)``."""
    dh = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, dh, 2, device=x.device, dtype=torch.float32) / dh))
    ang = pos.to(torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + GELU MLP on ``(B, L, D)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0, rope_theta: float = 1e4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.rope_theta = rope_theta
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` ``(B, L, D)``, ``pos`` ``(L,)``, ``mask`` broadcastable to ``(B, H, L, S)`` (True = attend).

        ``cache`` holds keys/values ``(B, H, S_past, Dh)`` of earlier positions; the updated cache is returned.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rope(q, pos, self.rope_theta), _rope(k, pos, self.rope_theta)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.dropout(self.proj(y.transpose(1, 2).reshape(b, n, d)))
        x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, (k, v)


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` with a final LayerNorm.

    Args:
        dim: model width ``D``.
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width / ``D``.
        dropout: dropout after attention and MLP.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        key_padding: torch.Tensor | None = None,
        offset: int = 0,
        cache: list | None = None,
    ) -> tuple[torch.Tensor, list]:
        """Run ``x`` ``(B, L, D)``.

        Args:
            mask: ``(L, S)`` bool (True = attend), ``S = past + L``; ``None`` attends everywhere.
            key_padding: ``(B, S)`` bool, True at valid keys.
            offset: absolute position of ``x[:, 0]`` (for rotary positions when streaming).
            cache: per-block ``(k, v)`` from an earlier call, or ``None``.

        Returns:
            ``(B, L, D)`` and the per-block caches.
        """
        pos = torch.arange(offset, offset + x.shape[1], device=x.device)
        full = None
        if mask is not None:
            full = mask[None, None]
        if key_padding is not None:
            kp = key_padding[:, None, None, :]
            full = kp if full is None else full & kp
        new_cache = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk(x, pos, full, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.norm(x), new_cache


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """``(B,)`` scalars in [0, 1] -> ``(B, dim)`` sinusoidal features (for flow-matching time)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = scale * t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)
