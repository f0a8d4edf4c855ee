"""``moss_triton``: the Triton flash attention as a transformers attention implementation.

After :func:`register_moss_triton_attention`, any trunk built with ``attn_implementation="moss_triton"`` calls
:func:`moss_triton_attention_forward`. Masks are built exactly as for ``sdpa``; the function then reads what they
express. No mask means plain causal (or full) attention; a mask that is block-diagonal (packed documents, found from
the mask itself, from ``cu_seq_lens_q``/``cu_seqlens`` kwargs, or from restarting ``position_ids``) goes to the varlen
kernel. Anything the kernels cannot express (padding, sliding windows, a KV cache, dropout, odd head dims, custom
4D masks) goes to transformers' own SDPA function, with one log line per reason.
"""

from __future__ import annotations

import weakref

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from kernels.backend import log_once, triton_usable
from kernels.flash_attention import SUPPORTED_DTYPES, SUPPORTED_HEAD_DIMS, flash_attention, flash_attention_varlen

NAME = "moss_triton"

# The same mask / position-id tensors reach every layer of one forward: read them once. Tensors compare by value, so
# they cannot key a dict; one (weak reference, version, result) triple per kind is kept instead. The version counter
# catches a buffer that is refilled in place between forwards.
_memo_slots: dict[str, tuple] = {}


def _memo(kind: str, tensor: torch.Tensor, compute):
    ref, version, result = _memo_slots.get(kind, (None, None, None))
    if ref is None or ref() is not tensor or version != tensor._version:
        result = compute(tensor)
        _memo_slots[kind] = (weakref.ref(tensor), tensor._version, result)
    return result


def register_moss_triton_attention() -> str:
    """Register ``moss_triton`` with transformers' attention and mask interfaces; returns the name. Idempotent."""
    AttentionInterface.register(NAME, moss_triton_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def _cu_seqlens_from_starts(is_start: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``is_start (B, L)`` bool, True where a document begins (always at column 0) -> flat cu_seqlens, max length."""
    flat = is_start.reshape(-1).clone()
    flat[:: is_start.shape[1]] = True  # a row never continues the previous one
    starts = flat.nonzero().squeeze(1)
    bounds = torch.cat([starts, starts.new_tensor([flat.numel()])])
    return bounds.to(torch.int32), int(bounds.diff().max())


def _layout_from_mask(mask: torch.Tensor) -> tuple[str, torch.Tensor | None, int] | None:
    """Read a ``(B, 1, L, L)`` mask (bool, or additive float with 0 / very negative) as documents.

    Returns ``(kind, cu_seqlens, max_len)`` with kind ``causal`` or ``full``, cu_seqlens None when each row is one
    document, or None when the mask is anything else.
    """
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != mask.shape[3]:
        return None
    if mask.dtype == torch.bool:
        allowed = mask[:, 0]
    elif mask.is_floating_point():
        allowed = mask[:, 0] == 0
        if not bool((allowed | (mask[:, 0] <= torch.finfo(mask.dtype).min / 2)).all()):
            return None  # a real bias, not just a mask
    else:
        return None
    length = allowed.shape[-1]
    if not bool(allowed.any(-1).all()):
        return None  # a query that sees nothing (left padding): SDPA defines it, the kernels do not
    pos = torch.arange(length, device=mask.device)
    first = allowed.int().argmax(-1)  # (B, L): first visible key of each query
    is_start = first == pos
    # Documents partition the row: every query's first key is the start of the latest document.
    doc_start = torch.where(is_start, pos, 0).cummax(-1).values
    if not bool((first == doc_start).all()):
        return None
    doc = is_start.cumsum(-1)
    same_doc = doc[:, :, None] == doc[:, None, :]
    if torch.equal(allowed, same_doc & (pos[None, :, None] >= pos[None, None, :])):
        kind = "causal"
    elif torch.equal(allowed, same_doc):
        kind = "full"
    else:
        return None
    if not bool(is_start[:, 1:].any()):
        return kind, None, length
    cu_seqlens, max_len = _cu_seqlens_from_starts(is_start)
    return kind, cu_seqlens, max_len


def _cached_layout(mask: torch.Tensor):
    return _memo("mask", mask, _layout_from_mask)


def _fallback_reason(module, query, key, attention_mask, dropout, kwargs) -> str | None:
    if not triton_usable(query.device):
        return f"no CUDA device and no TRITON_INTERPRET=1 (tensors on {query.device.type})"
    if dropout > 0:
        return f"attention dropout {dropout} (the kernels have none)"
    if query.shape[-1] not in SUPPORTED_HEAD_DIMS:
        return f"head dim {query.shape[-1]} (expected one of {SUPPORTED_HEAD_DIMS})"
    if query.dtype not in SUPPORTED_DTYPES:
        return f"dtype {query.dtype}"
    if query.shape[2] != key.shape[2]:
        return f"query length {query.shape[2]} != key length {key.shape[2]} (KV cache)"
    window = kwargs.get("sliding_window")
    if window is not None and window < query.shape[2]:  # a window at least as long as the sequence changes nothing
        return f"sliding window {window} < length {query.shape[2]}"
    for name in ("softcap", "position_bias", "s_aux"):
        if kwargs.get(name) is not None:
            return name
    if kwargs.get("output_attentions"):
        return "output_attentions"
    if attention_mask is not None and attention_mask.shape[0] not in (1, query.shape[0]):
        return f"a mask for batch {attention_mask.shape[0]} with a batch of {query.shape[0]}"
    if attention_mask is not None and _cached_layout(attention_mask) is None:
        return f"a {tuple(attention_mask.shape)} mask that is not causal/packed (padding or custom)"
    return None


def moss_triton_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The transformers attention-interface function (same contract as ``sdpa_attention_forward``).

    Args:
        module: the attention module; ``module.is_causal`` is used unless ``is_causal`` is given.
        query: ``(B, Hq, L, D)``; key, value: ``(B, Hkv, L, D)``.
        attention_mask: None or the ``(B, 1, L, L)`` mask built by ``sdpa_mask``.
        kwargs: may carry ``cu_seq_lens_q``/``cu_seqlens`` (+ ``max_length_q``) or ``position_ids`` ``(B, L)``
            for packed documents.

    Returns:
        ``attn_output (B, L, Hq, D)`` and None (no attention weights).
    """
    reason = _fallback_reason(module, query, key, attention_mask, dropout, kwargs)
    if reason is not None:
        log_once(f"moss_triton:{reason}", f"moss_triton attention: falling back to SDPA for {reason}")
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    batch, heads, length, head_dim = query.shape
    cu_seqlens, max_len = _explicit_cu_seqlens(kwargs, batch, length)
    if cu_seqlens is None and attention_mask is not None:
        kind, cu_seqlens, max_len = _cached_layout(attention_mask)
        causal = kind == "causal"
        if cu_seqlens is not None and attention_mask.shape[0] == 1 and batch > 1:  # one mask broadcast over rows
            row_starts = cu_seqlens[:-1]
            offsets = torch.arange(batch, device=row_starts.device, dtype=row_starts.dtype) * length
            cu_seqlens = torch.cat(
                [(offsets[:, None] + row_starts[None, :]).reshape(-1), cu_seqlens.new_tensor([batch * length])]
            )
    elif cu_seqlens is None and kwargs.get("position_ids") is not None:
        cu_seqlens, max_len = _memo(
            f"positions {batch}x{length}",
            kwargs["position_ids"],
            lambda pos: _cu_seqlens_from_positions(pos, batch, length),
        )
    causal = causal and length > 1

    if cu_seqlens is None:
        out = flash_attention(query, key, value, causal=causal, scale=scaling)
        return out.transpose(1, 2), None
    # (B, H, L, D) -> (B * L, H, D): documents never cross rows, so rows simply follow each other.
    q, k, v = (t.transpose(1, 2).reshape(batch * length, t.shape[1], head_dim) for t in (query, key, value))
    out = flash_attention_varlen(q, k, v, cu_seqlens, max_len, causal=causal, scale=scaling)
    return out.view(batch, length, heads, head_dim), None


def _explicit_cu_seqlens(kwargs: dict, batch: int, length: int) -> tuple[torch.Tensor | None, int]:
    """cu_seqlens handed over by a flattening collator (FlashAttention-2 kwargs), if any."""
    cu = kwargs.get("cu_seq_lens_q", kwargs.get("cu_seqlens"))
    if cu is None:
        return None, 0
    if int(cu[-1]) != batch * length:
        raise ValueError(f"cu_seqlens ends at {int(cu[-1])}: expected the {batch} x {length} tokens of the batch")
    max_len = kwargs.get("max_length_q", kwargs.get("max_seqlen"))
    max_len = int(cu.diff().max()) if max_len is None else int(max_len)
    return cu, max_len


def _cu_seqlens_from_positions(position_ids: torch.Tensor, batch: int, length: int):
    """Documents from position ids that restart (any step other than +1 starts one); None if none restarts."""
    position_ids = position_ids.expand(batch, length)
    is_start = torch.ones_like(position_ids, dtype=torch.bool)
    is_start[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    if not bool(is_start[:, 1:].any()):
        return None, length
    return _cu_seqlens_from_starts(is_start)
