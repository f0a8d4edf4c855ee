"""Flash attention in Triton: forward and backward, causal or not, GQA, dense ``(B, H, L, D)`` or packed varlen.

Structure follows Triton's fused-attention tutorial: the forward keeps an online softmax per query block with float32
accumulators and stores the log-sum-exp; the backward recomputes probabilities from it, one kernel walking query
blocks for each key block (dk, dv; GQA query heads of a KV head are summed in registers, no atomics) and one walking
key blocks for each query block (dq). Dense and varlen share the kernels: a dense batch is read through its batch
stride, a packed batch through ``cu_seqlens``. ``flash_attention_reference.py`` is the spec.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels.backend import triton_interpreting, use_triton
from kernels.flash_attention_reference import attention_reference, attention_varlen_reference

SUPPORTED_HEAD_DIMS = (32, 64, 96, 128)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LOG2E = 1.4426950408889634


@triton.jit
def _load(ptrs, mask, UPCAST: tl.constexpr):
    """Masked load; the interpreter computes bf16 wrongly, so there everything is upcast right after loading."""
    x = tl.load(ptrs, mask=mask, other=0.0)
    if UPCAST:
        x = x.to(tl.float32)
    return x


@triton.jit
def _fwd_inner(
    acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, seq_len, lo, hi, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Online-softmax update of one query block over key blocks ``[lo, hi)``; scores are in log2 units."""
    d_ok = offs_d < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < seq_len
        k_t = _load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None], d_ok[:, None] & n_ok[None, :], UPCAST)
        s = tl.dot(q, k_t, input_precision=PRECISION) * qk_scale
        if MASKED:  # the diagonal block (causal) or the ragged tail; blocks before it are fully visible
            visible = n_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_m[:, None] >= offs_n[None, :])
            s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = _load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], n_ok[:, None] & d_ok[None, :], UPCAST)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _attn_fwd(
    Q, K, V, OUT, LSE, CU_SEQLENS,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt, stride_vb, stride_vh, stride_vt,
    stride_ob, stride_oh, stride_ot, stride_lb, stride_lh,
    dense_len, qk_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, VARLEN: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    head = tl.program_id(1)
    batch = tl.program_id(2)
    if VARLEN:
        start = tl.load(CU_SEQLENS + batch).to(tl.int64)
        seq_len = tl.load(CU_SEQLENS + batch + 1) - start
    else:
        start = 0
        seq_len = dense_len
    m_start = pid_m * BLOCK_M
    if m_start >= seq_len:  # varlen grids are sized for the longest document
        return
    batch = batch.to(tl.int64)
    q_base = Q + batch * stride_qb + head * stride_qh + start * stride_qt
    k_base = K + batch * stride_kb + (head // GROUP) * stride_kh + start * stride_kt
    v_base = V + batch * stride_vb + (head // GROUP) * stride_vh + start * stride_vt

    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = (offs_m[:, None] < seq_len) & (offs_d[None, :] < HEAD_DIM)
    q = _load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], q_mask, UPCAST)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # Stage 1: key blocks every query of this block sees in full. Stage 2: the diagonal or ragged tail, masked.
    if CAUSAL:
        full_hi = m_start
        masked_hi = tl.minimum(m_start + BLOCK_M, seq_len)
    else:
        full_hi = (seq_len // BLOCK_N) * BLOCK_N
        masked_hi = seq_len
    acc, m_i, l_i = _fwd_inner(
        acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, seq_len, 0, full_hi, qk_scale,
        HEAD_DIM, BLOCK_N, False, CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip
    acc, m_i, l_i = _fwd_inner(
        acc, m_i, l_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, seq_len, full_hi, masked_hi,
        qk_scale, HEAD_DIM, BLOCK_N, True, CAUSAL, UPCAST, PRECISION,
    )  # fmt: skip

    acc = acc / l_i[:, None]
    lse = (m_i + tl.log2(l_i)) / 1.4426950408889634  # back to natural log
    o_base = OUT + batch * stride_ob + head * stride_oh + start * stride_ot
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :], acc.to(OUT.dtype.element_ty), mask=q_mask)
    lse_base = LSE + batch * stride_lb + head * stride_lh + start
    tl.store(lse_base + offs_m, lse, mask=offs_m < seq_len)


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO, LSE, DELTA, DK, DV, CU_SEQLENS,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt, stride_vb, stride_vh, stride_vt,
    stride_dob, stride_doh, stride_dot, stride_dkb, stride_dkh, stride_dkt, stride_dvb, stride_dvh, stride_dvt,
    stride_lb, stride_lh,
    dense_len, scale, qk_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, VARLEN: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """dk and dv of one key block of one KV head, summed over the GROUP query heads that share it."""
    pid_n = tl.program_id(0)
    kv_head = tl.program_id(1)
    batch = tl.program_id(2)
    if VARLEN:
        start = tl.load(CU_SEQLENS + batch).to(tl.int64)
        seq_len = tl.load(CU_SEQLENS + batch + 1) - start
    else:
        start = 0
        seq_len = dense_len
    n_start = pid_n * BLOCK_N
    if n_start >= seq_len:
        return
    batch = batch.to(tl.int64)
    offs_n = n_start + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    n_ok = offs_n < seq_len
    kv_mask = n_ok[:, None] & d_ok[None, :]
    k_base = K + batch * stride_kb + kv_head * stride_kh + start * stride_kt
    v_base = V + batch * stride_vb + kv_head * stride_vh + start * stride_vt
    k = _load(k_base + offs_n[:, None] * stride_kt + offs_d[None, :], kv_mask, UPCAST)
    v = _load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], kv_mask, UPCAST)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    # Causal: query blocks wholly before this key block contribute nothing.
    lo = (n_start // BLOCK_M) * BLOCK_M if CAUSAL else 0
    for g in range(GROUP):
        head = kv_head * GROUP + g
        q_base = Q + batch * stride_qb + head * stride_qh + start * stride_qt
        do_base = DO + batch * stride_dob + head * stride_doh + start * stride_dot
        row_off = batch * stride_lb + head * stride_lh + start
        for m_start in range(lo, seq_len, BLOCK_M):
            offs_m = m_start + tl.arange(0, BLOCK_M)
            m_ok = offs_m < seq_len
            q_t = _load(q_base + offs_m[None, :] * stride_qt + offs_d[:, None], d_ok[:, None] & m_ok[None, :], UPCAST)
            lse = tl.load(LSE + row_off + offs_m, mask=m_ok, other=0.0)
            s_t = tl.dot(k, q_t, input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M), log2 units
            p_t = tl.exp2(s_t - lse[None, :] * 1.4426950408889634)
            visible = m_ok[None, :] & n_ok[:, None]
            if CAUSAL:
                visible = visible & (offs_m[None, :] >= offs_n[:, None])
            p_t = tl.where(visible, p_t, 0.0)
            do = _load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :], m_ok[:, None] & d_ok[None, :], UPCAST)
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            delta = tl.load(DELTA + row_off + offs_m, mask=m_ok, other=0.0)
            ds_t = p_t * (dp_t - delta[None, :])
            dk = tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), dk, input_precision=PRECISION)
    dk = dk * scale
    dk_base = DK + batch * stride_dkb + kv_head * stride_dkh + start * stride_dkt
    dv_base = DV + batch * stride_dvb + kv_head * stride_dvh + start * stride_dvt
    tl.store(dk_base + offs_n[:, None] * stride_dkt + offs_d[None, :], dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(dv_base + offs_n[:, None] * stride_dvt + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, LSE, DELTA, DQ, CU_SEQLENS,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt, stride_vb, stride_vh, stride_vt,
    stride_dob, stride_doh, stride_dot, stride_dqb, stride_dqh, stride_dqt, stride_lb, stride_lh,
    dense_len, scale, qk_scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, VARLEN: tl.constexpr, UPCAST: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """dq of one query block of one query head."""
    pid_m = tl.program_id(0)
    head = tl.program_id(1)
    batch = tl.program_id(2)
    if VARLEN:
        start = tl.load(CU_SEQLENS + batch).to(tl.int64)
        seq_len = tl.load(CU_SEQLENS + batch + 1) - start
    else:
        start = 0
        seq_len = dense_len
    m_start = pid_m * BLOCK_M
    if m_start >= seq_len:
        return
    batch = batch.to(tl.int64)
    offs_m = m_start + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    m_ok = offs_m < seq_len
    q_mask = m_ok[:, None] & d_ok[None, :]
    q_base = Q + batch * stride_qb + head * stride_qh + start * stride_qt
    do_base = DO + batch * stride_dob + head * stride_doh + start * stride_dot
    k_base = K + batch * stride_kb + (head // GROUP) * stride_kh + start * stride_kt
    v_base = V + batch * stride_vb + (head // GROUP) * stride_vh + start * stride_vt
    row_off = batch * stride_lb + head * stride_lh + start
    q = _load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :], q_mask, UPCAST)
    do = _load(do_base + offs_m[:, None] * stride_dot + offs_d[None, :], q_mask, UPCAST)
    lse = tl.load(LSE + row_off + offs_m, mask=m_ok, other=0.0)
    delta = tl.load(DELTA + row_off + offs_m, mask=m_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    hi = tl.minimum(m_start + BLOCK_M, seq_len) if CAUSAL else seq_len
    for n_start in range(0, hi, BLOCK_N):
        offs_n = n_start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < seq_len
        kv_mask_t = d_ok[:, None] & n_ok[None, :]
        k_t = _load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None], kv_mask_t, UPCAST)
        v_t = _load(v_base + offs_n[None, :] * stride_vt + offs_d[:, None], kv_mask_t, UPCAST)
        s = tl.dot(q, k_t, input_precision=PRECISION) * qk_scale
        p = tl.exp2(s - lse[:, None] * 1.4426950408889634)
        visible = m_ok[:, None] & n_ok[None, :]
        if CAUSAL:
            visible = visible & (offs_m[:, None] >= offs_n[None, :])
        p = tl.where(visible, p, 0.0)
        dp = tl.dot(do, v_t, input_precision=PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k_t.dtype), tl.trans(k_t), dq, input_precision=PRECISION)
    dq = dq * scale
    dq_base = DQ + batch * stride_dqb + head * stride_dqh + start * stride_dqt
    tl.store(dq_base + offs_m[:, None] * stride_dqt + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=q_mask)


def _empty(*shape: int, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Every kernel output is allocated here (tests swap it for a NaN-filled version to catch unwritten elements)."""
    return torch.empty(*shape, device=like.device, dtype=dtype or like.dtype)


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    """Like ``_empty``, keeping ``x``'s strides."""
    return torch.empty_like(x)


class Launch(NamedTuple):
    """One kernel's tile (queries x keys per block) and launch settings."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def _launch_config(head_dim: int) -> dict[str, Launch]:
    """Launch settings of the three kernels ("fwd", "dkdv", "dq") at one head dim.

    The interpreter pays per program, so it gets fewer, larger blocks. The GPU values for D > 64 were searched on an
    H200 (bf16, causal, L = 4,096; ``moss-speech bench attention-tune``): 1.27x, 1.38x and 1.53x faster kernels than
    the untuned settings kept for D <= 64. Retune on another card. The causal forward needs ``block_m`` to be a
    multiple of ``block_n`` (its unmasked key loop ends at the query block's start).
    """
    if triton_interpreting():
        return dict.fromkeys(("fwd", "dkdv", "dq"), Launch(32, 32, 4, 1))
    if head_dim > 64:
        return {"fwd": Launch(128, 64, 8, 3), "dkdv": Launch(64, 64, 4, 2), "dq": Launch(64, 32, 4, 4)}
    return {"fwd": Launch(128, 64, 4, 3), "dkdv": Launch(64, 64, 4, 3), "dq": Launch(64, 64, 4, 3)}


def _launch_kwargs(launch: Launch) -> dict:
    return dict(
        BLOCK_M=launch.block_m, BLOCK_N=launch.block_n, num_warps=launch.num_warps, num_stages=launch.num_stages
    )


def _strides(x: torch.Tensor, varlen: bool) -> tuple[int, int, int]:
    """(batch, head, token) strides in elements; packed tensors have no batch axis."""
    if varlen:  # (total, H, D)
        return 0, x.stride(1), x.stride(0)
    return x.stride(0), x.stride(1), x.stride(2)  # (B, H, L, D)


def _lse_strides(lse: torch.Tensor, varlen: bool) -> tuple[int, int]:
    return (0, lse.stride(0)) if varlen else (lse.stride(0), lse.stride(1))


def _flash_fwd(q, k, v, cu_seqlens, max_seqlen, causal, scale):
    varlen = cu_seqlens is not None
    head_dim = q.shape[-1]
    if varlen:
        total, num_heads, _ = q.shape
        batch, seq_len = cu_seqlens.numel() - 1, max_seqlen
        out = _empty(*q.shape, like=q)
        lse = _empty(num_heads, total, like=q, dtype=torch.float32)
        group = num_heads // k.shape[1]
    else:
        batch, num_heads, seq_len, _ = q.shape
        # (B, L, H, D) memory seen as (B, H, L, D): transformers transposes it back for free.
        out = _empty(batch, seq_len, num_heads, head_dim, like=q).transpose(1, 2)
        lse = _empty(batch, num_heads, seq_len, like=q, dtype=torch.float32)
        group = num_heads // k.shape[1]
    launch = _launch_config(head_dim)["fwd"]
    grid = (triton.cdiv(seq_len, launch.block_m), num_heads, batch)
    _attn_fwd[grid](
        q, k, v, out, lse, cu_seqlens,
        *_strides(q, varlen), *_strides(k, varlen), *_strides(v, varlen), *_strides(out, varlen),
        *_lse_strides(lse, varlen),
        seq_len, scale * LOG2E,
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), CAUSAL=causal, VARLEN=varlen,
        UPCAST=triton_interpreting(), PRECISION=_precision(q.dtype), **_launch_kwargs(launch),
    )  # fmt: skip
    return out, lse


def _flash_bwd(do, q, k, v, out, lse, cu_seqlens, max_seqlen, causal, scale):
    varlen = cu_seqlens is not None
    head_dim = q.shape[-1]
    # delta_i = sum_d dO_id * O_id, in the LSE layout; the tutorial's preprocess kernel, left to torch.
    delta = (out.float() * do.float()).sum(-1)
    if varlen:
        delta = delta.transpose(0, 1).contiguous()
        batch, seq_len = cu_seqlens.numel() - 1, max_seqlen
        num_heads, num_kv_heads = q.shape[1], k.shape[1]
    else:
        batch, num_heads, seq_len, _ = q.shape
        num_kv_heads = k.shape[1]
    group = num_heads // num_kv_heads
    dq, dk, dv = _empty_like(q), _empty_like(k), _empty_like(v)
    launch = _launch_config(head_dim)
    common = dict(
        GROUP=group, HEAD_DIM=head_dim, BLOCK_D=triton.next_power_of_2(head_dim), CAUSAL=causal, VARLEN=varlen,
        UPCAST=triton_interpreting(), PRECISION=_precision(q.dtype),
    )  # fmt: skip
    qkv_strides = (*_strides(q, varlen), *_strides(k, varlen), *_strides(v, varlen), *_strides(do, varlen))
    _attn_bwd_dkdv[(triton.cdiv(seq_len, launch["dkdv"].block_n), num_kv_heads, batch)](
        q, k, v, do, lse, delta, dk, dv, cu_seqlens,
        *qkv_strides, *_strides(dk, varlen), *_strides(dv, varlen), *_lse_strides(lse, varlen),
        seq_len, scale, scale * LOG2E, **common, **_launch_kwargs(launch["dkdv"]),
    )  # fmt: skip
    _attn_bwd_dq[(triton.cdiv(seq_len, launch["dq"].block_m), num_heads, batch)](
        q, k, v, do, lse, delta, dq, cu_seqlens,
        *qkv_strides, *_strides(dq, varlen), *_lse_strides(lse, varlen),
        seq_len, scale, scale * LOG2E, **common, **_launch_kwargs(launch["dq"]),
    )  # fmt: skip
    return dq, dk, dv


def _precision(dtype: torch.dtype) -> str:
    # fp32 inputs would otherwise be rounded to tf32 by the tensor cores.
    return "ieee" if dtype == torch.float32 else "tf32"


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: saves q, k, v, out and the log-sum-exp; the backward recomputes probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens, max_seqlen, causal, scale):
        q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
        out, lse = _flash_fwd(q, k, v, cu_seqlens, max_seqlen, causal, scale)
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens)
        ctx.max_seqlen, ctx.causal, ctx.scale = max_seqlen, causal, scale
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse, cu_seqlens = ctx.saved_tensors
        dout = dout if dout.stride(-1) == 1 else dout.contiguous()
        dq, dk, dv = _flash_bwd(dout, q, k, v, out, lse, cu_seqlens, ctx.max_seqlen, ctx.causal, ctx.scale)
        return dq, dk, dv, None, None, None, None


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, varlen: bool) -> None:
    rank = 3 if varlen else 4
    layout = "(total, H, D)" if varlen else "(B, H, L, D)"
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != rank:
            raise ValueError(f"{name} has shape {tuple(t.shape)}: expected {layout}")
    if q.dtype not in SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"dtypes {q.dtype}/{k.dtype}/{v.dtype} unsupported: expected one of {SUPPORTED_DTYPES}, equal")
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ: expected equal shapes")
    head_axis, len_axis = (1, 0) if varlen else (1, 2)
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"head dim {q.shape[-1]} unsupported: expected one of {SUPPORTED_HEAD_DIMS}, same for k, v")
    if q.shape[head_axis] % k.shape[head_axis]:
        raise ValueError(f"{q.shape[head_axis]} query heads for {k.shape[head_axis]} KV heads: expected a multiple")
    if q.shape[len_axis] != k.shape[len_axis] or (not varlen and q.shape[0] != k.shape[0]):
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch or length: expected equal")


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with the Triton kernels (SDPA where they cannot run, logged once).

    Args:
        q: ``(B, Hq, L, D)``; k, v: ``(B, Hkv, L, D)`` with ``Hq % Hkv == 0`` and ``D`` in 32, 64, 96, 128.
        causal: query ``i`` attends keys ``0..i``.
        scale: softmax scale, ``D ** -0.5`` when None.
        return_lse: also return the ``(B, Hq, L)`` float32 natural-log log-sum-exp (not differentiable).

    Returns:
        ``out (B, Hq, L, D)`` in the input dtype (its memory is ``(B, L, H, D)``), and ``lse`` if asked.
    """
    _check(q, k, v, varlen=False)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not use_triton(q.device, "flash_attention", "torch SDPA"):
        if return_lse:
            return attention_reference(q, k, v, causal=causal, scale=scale)
        group = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=group > 1)
    if q.shape[2] == 0:
        out = torch.empty_like(q)
        lse = q.new_empty(q.shape[:3], dtype=torch.float32)
        return (out, lse) if return_lse else out
    out, lse = FlashAttentionFunction.apply(q, k, v, None, q.shape[2], causal, scale)
    return (out, lse) if return_lse else out


def flash_attention_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    causal: bool = True,
    scale: float | None = None,
    return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Attention over packed documents; no token attends across a document boundary.

    Args:
        q: ``(total, Hq, D)``; k, v: ``(total, Hkv, D)``.
        cu_seqlens: ``(num_docs + 1,)`` integer boundaries, from 0 to ``total``, non-decreasing.
        max_seqlen: the longest document, in tokens (sizes the launch grid).
        causal, scale: as in :func:`flash_attention`.
        return_lse: also return the ``(Hq, total)`` float32 log-sum-exp.

    Returns:
        ``out (total, Hq, D)``, and ``lse`` if asked.
    """
    _check(q, k, v, varlen=True)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens has shape {tuple(cu_seqlens.shape)}: expected (num_docs + 1,), num_docs >= 1")
    cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32)
    max_seqlen = int(max_seqlen)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not use_triton(q.device, "flash_attention_varlen", "torch SDPA per document"):
        out, lse = attention_varlen_reference(q, k, v, cu_seqlens, causal=causal, scale=scale)
        return (out, lse) if return_lse else out
    out, lse = FlashAttentionFunction.apply(q, k, v, cu_seqlens, max(max_seqlen, 1), causal, scale)
    return (out, lse) if return_lse else out
