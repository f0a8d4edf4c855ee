"""Pure-torch attention: the specification the Triton kernels in ``flash_attention.py`` are tested against.

Readable rather than fast: it materializes the full ``(L, L)`` score matrix in float32.
"""

from __future__ import annotations

import torch


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention computed in float32, with GQA by repeating key/value heads.

    Args:
        q: ``(B, Hq, L, D)`` queries.
        k, v: ``(B, Hkv, L, D)`` keys and values; ``Hq`` must be a multiple of ``Hkv``.
        causal: query ``i`` sees keys ``0..i`` only.
        scale: softmax scale; ``D ** -0.5`` when None.

    Returns:
        ``out (B, Hq, L, D)`` in the input dtype and ``lse (B, Hq, L)`` float32, the natural-log log-sum-exp of each
        row of scaled scores.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("bhid,bhjd->bhij", q.float(), k) * scale
    if causal:
        length = q.shape[2]
        visible = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhij,bhjd->bhid", torch.softmax(scores, dim=-1), v)
    return out.to(q.dtype), lse


def attention_varlen_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over packed documents: each document attends to itself only.

    Args:
        q: ``(total, Hq, D)``; k, v: ``(total, Hkv, D)``.
        cu_seqlens: ``(num_docs + 1,)`` int32 document boundaries, ``cu_seqlens[0] == 0``, ``cu_seqlens[-1] == total``.

    Returns:
        ``out (total, Hq, D)`` and ``lse (Hq, total)`` float32.
    """
    outs, lses = [], []
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        doc = [t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v)]  # (1, H, Ldoc, D)
        out, lse = attention_reference(*doc, causal=causal, scale=scale)
        outs.append(out[0].transpose(0, 1))
        lses.append(lse[0])
    return torch.cat(outs, dim=0), torch.cat(lses, dim=1)
