"""Linear head + cross-entropy without the full ``(N, V)`` logits, Liger-Kernel style.

The forward walks the tokens in chunks. For each chunk it computes the ``(C, V)`` logits, turns them in place into
the gradient of the loss with respect to the logits (softmax minus one-hot, scaled), and immediately folds that into
the gradients of ``hidden``, ``weight`` and ``bias``. Peak extra memory is one chunk of logits plus the gradient
buffers; the backward only scales the stored gradients by the incoming scalar. The softmax/gradient step is a Triton
kernel on GPU (and under the interpreter in tests) and plain torch on CPU.
``fused_linear_cross_entropy_reference.py`` is the spec.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.backend import triton_interpreting, triton_usable

REDUCTIONS = ("mean", "sum")


@triton.jit
def _ce_grad_kernel(
    LOGITS, stride_row, LABELS, LOSS, n_cols, ignore_index, grad_scale,
    BLOCK_V: tl.constexpr,
):  # fmt: skip
    """One row: loss = logsumexp(x) - x[label]; x is overwritten by (softmax(x) - onehot(label)) * grad_scale."""
    row = tl.program_id(0).to(tl.int64)
    x_ptr = LOGITS + row * stride_row
    label = tl.load(LABELS + row)
    if label == ignore_index:  # no loss and no gradient from this token
        for start in range(0, n_cols, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            tl.store(x_ptr + cols, tl.zeros([BLOCK_V], dtype=tl.float32), mask=cols < n_cols)
        tl.store(LOSS + row, 0.0)
        return
    # Pass 1: online max and sum of exponentials over the vocabulary.
    m = float("-inf")
    d = 0.0
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(x_ptr + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    lse = m + tl.log(d)
    x_label = tl.load(x_ptr + label).to(tl.float32)
    tl.store(LOSS + row, lse - x_label)
    # Pass 2: the gradient, written over the logits.
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(x_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        grad = tl.exp(x - lse) - tl.where(cols == label, 1.0, 0.0)
        tl.store(x_ptr + cols, grad * grad_scale, mask=cols < n_cols)


def _empty_like(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Outputs the code writes in full are allocated here (tests swap in a NaN-filled version)."""
    return torch.empty_like(x, dtype=dtype)


def _ce_grad_triton(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, grad_scale: float) -> torch.Tensor:
    """Per-row losses ``(C,)``; ``logits (C, V)`` float32 become the scaled logit gradients."""
    loss = _empty_like(logits[:, 0], dtype=torch.float32)
    block_v = 1024 if triton_interpreting() else min(32768, triton.next_power_of_2(logits.shape[1]))
    _ce_grad_kernel[(logits.shape[0],)](
        logits, logits.stride(0), labels, loss, logits.shape[1], ignore_index, grad_scale,
        BLOCK_V=block_v, num_warps=32 if block_v >= 16384 else 8,
    )  # fmt: skip
    return loss


def _ce_grad_torch(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, grad_scale: float) -> torch.Tensor:
    """Same contract as ``_ce_grad_triton``, with in-place torch ops (no second ``(C, V)`` buffer)."""
    valid = labels != ignore_index
    safe = torch.where(valid, labels, 0).unsqueeze(1)
    target = logits.gather(1, safe)
    row_max = logits.amax(dim=1, keepdim=True)
    exp_sum = logits.sub_(row_max).exp_().sum(dim=1, keepdim=True)
    loss = (row_max + exp_sum.log() - target).squeeze(1) * valid
    logits.div_(exp_sum)  # softmax
    logits.scatter_add_(1, safe, torch.full_like(safe, -1.0, dtype=logits.dtype))
    logits.mul_((valid * grad_scale).unsqueeze(1).to(logits.dtype))
    return loss


CHUNK_LOGITS_BYTES = 2**30
# GEMMs that write float32 from half-precision inputs (CUDA, torch >= 2.8): no half-precision logits to upcast, and
# the weight gradient accumulates into its float32 buffer in place.
_FLOAT32_OUT_GEMM = hasattr(torch.ops.aten.mm, "dtype") and hasattr(torch.ops.aten.addmm, "dtype")


def _chunk_size(num_tokens: int, vocab: int) -> int:
    """Tokens per chunk: a power of two, at least 16, with at most ``CHUNK_LOGITS_BYTES`` of float32 logits and at
    most an eighth of the tokens.

    Large chunks mean efficient GEMMs and few passes over the ``(V, D)`` weight gradient (Liger's one chunk per V/D
    tokens makes ~150 passes at V=151,680, D=1,024); the caps keep the chunk small next to the naive ``(N, V)``.
    """
    rows = max(16, min(CHUNK_LOGITS_BYTES // (4 * vocab), num_tokens // 8))  # 1,024 at N = 8,192, V = 151,680
    return min(num_tokens, 1 << (rows.bit_length() - 1))


class FusedLinearCrossEntropyFunction(torch.autograd.Function):
    """Forward computes the loss and all gradients chunk by chunk; backward scales them by ``grad_output``."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, bias, ignore_index, reduction, use_triton, chunk_size, grad_enabled):
        num_tokens, vocab = hidden.shape[0], weight.shape[0]
        needs = [grad_enabled and n for n in ctx.needs_input_grad]
        n_valid = int((labels != ignore_index).sum())
        grad_scale = 1.0 / max(n_valid, 1) if reduction == "mean" else 1.0
        grad_hidden = _empty_like(hidden) if needs[0] else None
        # float32 accumulators: a bf16 sum over many chunks would lose the small contributions.
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs[1] else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and needs[3] else None
        loss = torch.zeros((), device=hidden.device, dtype=torch.float32)
        chunk_size = chunk_size or _chunk_size(num_tokens, vocab)
        ce_grad = _ce_grad_triton if use_triton else _ce_grad_torch
        float32_out = _FLOAT32_OUT_GEMM and hidden.is_cuda and hidden.dtype in (torch.float16, torch.bfloat16)
        for start in range(0, num_tokens, chunk_size):
            h = hidden[start : start + chunk_size]
            y = labels[start : start + chunk_size]
            logits = torch.mm(h, weight.T, out_dtype=torch.float32) if float32_out else (h @ weight.T).float()
            if bias is not None:
                logits += bias.float()
            loss += ce_grad(logits, y, ignore_index, grad_scale).sum()
            grad_logits = logits.to(hidden.dtype)  # (C, V), already scaled for the reduction
            if grad_hidden is not None:
                grad_hidden[start : start + chunk_size] = grad_logits @ weight
            if grad_weight is not None and hidden.dtype == torch.float32:
                grad_weight.addmm_(grad_logits.T, h)
            elif grad_weight is not None and float32_out:
                torch.addmm(grad_weight, grad_logits.T, h, out_dtype=torch.float32, out=grad_weight)
            elif grad_weight is not None:  # half-precision GEMM (tensor cores), float32 running sum
                grad_weight += grad_logits.T @ h
            if grad_bias is not None:
                grad_bias += logits.sum(0)
        loss = loss * grad_scale
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        # The loss is linear in grad_output, so the stored gradients only need scaling; the usual
        # loss.backward() passes 1, and then no (V, D)-sized copy is made (out of place otherwise, for retain_graph).
        if not bool(grad_output == 1):
            grad_hidden, grad_weight, grad_bias = (
                None if g is None else g * grad_output.to(g.dtype) for g in (grad_hidden, grad_weight, grad_bias)
            )
        if grad_weight is not None:
            grad_weight = grad_weight.to(ctx.weight_dtype)
        if grad_bias is not None:
            grad_bias = grad_bias.to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, grad_bias, None, None, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
    bias: torch.Tensor | None = None,
    reduction: str = "mean",
    *,
    use_triton: bool | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T + bias, labels)`` computed chunk by chunk, gradients included.

    Args:
        hidden: ``(N, D)`` token states (flatten ``(B, L, D)`` first); weight: ``(V, D)``; bias: optional ``(V,)``.
        labels: ``(N,)`` integer targets, ``ignore_index`` where a token has no loss.
        reduction: ``"mean"`` over non-ignored tokens (0 when all are ignored) or ``"sum"``.
        use_triton: the Triton softmax/gradient kernel; default: when it can run (CUDA, or the interpreter).
        chunk_size: tokens per chunk; default: at most 1 GiB of float32 logits and N / 8 tokens.

    Returns:
        The scalar float32 loss. Its gradients are computed during the forward whenever grad mode is on and an input
        requires grad; under ``torch.no_grad`` only the loss is computed.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} unsupported: expected one of {REDUCTIONS}")
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)}: expected (N, D) and (V, D)")
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels have shape {tuple(labels.shape)}: expected ({hidden.shape[0]},)")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias has shape {tuple(bias.shape)}: expected ({weight.shape[0]},)")
    if use_triton is None:
        use_triton = triton_usable(hidden.device)
    labels = labels.contiguous()
    return FusedLinearCrossEntropyFunction.apply(
        hidden, weight, labels, bias, ignore_index, reduction, use_triton, chunk_size, torch.is_grad_enabled()
    )
