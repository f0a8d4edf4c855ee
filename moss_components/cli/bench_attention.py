"""``moss-speech bench attention``: the Triton flash attention against torch SDPA (flash backend).

On a GPU it prints TFLOP/s of forward and forward + backward for both, and the ratio, measured in the same process
with ``triton.testing.do_bench``. On a machine without one it says so and runs the interpreter correctness sweep
(outputs and dq/dk/dv against the float32 reference) instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SWEEP_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.float().norm().item()
    diff = (actual.float() - expected.float()).norm().item()
    return diff / scale if scale > 0 else diff


def _sweep_cases(full: bool):
    """(label, batch, heads, group, doc_lens or None for dense, head_dim, causal, dtype)."""
    lengths = (1, 37, 63, 200) if full else (37, 200)
    groups = (1, 2, 4) if full else (1, 4)
    head_dims = (32, 64, 96, 128) if full else (64, 128)
    dtypes = (torch.float32, torch.float16, torch.bfloat16)
    for length in lengths:
        for group in groups:
            for head_dim in head_dims:
                for dtype in dtypes:
                    for causal in (True, False):
                        yield "dense", 1, 4, group, [length], head_dim, causal, dtype
    for dtype in dtypes:
        for causal in (True, False):
            yield "varlen", 1, 4, 2, [1, 37, 5, 70, 16], 64, causal, dtype


def interpreter_sweep(full: bool = False) -> int:
    """Check the kernels against the reference under the Triton interpreter; returns the number of failures."""
    from kernels.backend import triton_usable
    from kernels.flash_attention import flash_attention, flash_attention_varlen
    from kernels.flash_attention_reference import attention_reference, attention_varlen_reference

    if not triton_usable(torch.device("cpu")):
        raise SystemExit("the interpreter sweep needs TRITON_INTERPRET=1 set before triton is imported")
    header = f"{'kind':<7} {'L / docs':<16} {'Hq:Hkv':>6} {'D':>4} {'mask':<6} {'dtype':<8} {'out':>8} {'dq':>8} "
    header += f"{'dk':>8} {'dv':>8} {'tol':>7} {'s':>5}  ok"
    print(header)
    print("-" * len(header))
    failures = 0
    generator = torch.Generator().manual_seed(0)
    for kind, batch, heads, group, docs, head_dim, causal, dtype in _sweep_cases(full):
        total = sum(docs)
        if kind == "dense":
            shapes = [(batch, heads, total, head_dim), (batch, heads // group, total, head_dim)]
        else:
            shapes = [(total, heads, head_dim), (total, heads // group, head_dim)]
        q, k, v = (torch.randn(s, generator=generator).to(dtype).requires_grad_() for s in (shapes[0], *shapes[1:] * 2))
        start = time.perf_counter()
        if kind == "dense":
            out = flash_attention(q, k, v, causal=causal)
        else:
            cu_seqlens = torch.tensor([0, *docs]).cumsum(0).to(torch.int32)
            out = flash_attention_varlen(q, k, v, cu_seqlens, max(docs), causal=causal)
        grad_out = torch.randn(out.shape, generator=generator).to(dtype)
        grads = torch.autograd.grad(out, (q, k, v), grad_out)
        seconds = time.perf_counter() - start
        ref_in = [t.detach().float().requires_grad_() for t in (q, k, v)]
        if kind == "dense":
            ref_out, _ = attention_reference(*ref_in, causal=causal)
        else:
            ref_out, _ = attention_varlen_reference(*ref_in, cu_seqlens, causal=causal)
        ref_grads = torch.autograd.grad(ref_out, ref_in, grad_out.float())
        errors = [_rel_err(out, ref_out)] + [_rel_err(g, r) for g, r in zip(grads, ref_grads)]
        tol = SWEEP_TOLERANCE[dtype]
        ok = all(e <= tol for e in errors) and all(torch.isfinite(t).all() for t in (out, *grads))
        failures += not ok
        docs_label = str(total) if kind == "dense" else "-".join(map(str, docs))
        print(
            f"{kind:<7} {docs_label:<16} {f'{heads}:{heads // group}':>6} {head_dim:>4} "
            f"{'causal' if causal else 'full':<6} {str(dtype).removeprefix('torch.'):<8} "
            + " ".join(f"{e:>8.1e}" for e in errors)
            + f" {tol:>7.1e} {seconds:>5.1f}  {'ok' if ok else 'FAIL'}"
        )
    print(f"{failures} failure(s)")
    return failures


def _gpu_bench(seq_lens, head_dim, num_heads, tokens_per_batch, dtype):
    from torch.nn.attention import sdpa_kernel
    from triton.testing import do_bench

    from kernels.flash_attention import flash_attention

    card = torch.cuda.get_device_name()
    print(f"bench attention on {card}: D={head_dim} H={num_heads} {dtype}, batch x L = {tokens_per_batch} tokens")
    print(f"torch {torch.__version__}; baseline: F.scaled_dot_product_attention with SDPBackend.FLASH_ATTENTION")
    header = f"{'mask':<6} {'L':>6} {'B':>3} | {'fwd TFLOP/s':>11} {'sdpa':>7} {'ratio':>6} | "
    header += f"{'fwd+bwd TFLOP/s':>15} {'sdpa':>7} {'ratio':>6} | {'max rel err':>11}"
    print(header)
    print("-" * len(header))
    rows = []
    for causal in (True, False):
        for length in seq_lens:
            batch = max(1, tokens_per_batch // length)
            row = _gpu_case(flash_attention, batch, num_heads, length, head_dim, causal, dtype, do_bench, sdpa_kernel)
            rows.append(row)
            print(
                f"{'causal' if causal else 'full':<6} {length:>6} {batch:>3} | {row['fwd_triton']:>11.1f} "
                f"{row['fwd_sdpa']:>7.1f} {row['fwd_triton'] / row['fwd_sdpa']:>5.2f}x | "
                f"{row['fwd_bwd_triton']:>15.1f} {row['fwd_bwd_sdpa']:>7.1f} "
                f"{row['fwd_bwd_triton'] / row['fwd_bwd_sdpa']:>5.2f}x | {row['max_rel_err']:>11.1e}"
            )
    return rows


def _gpu_case(flash_attention, batch, num_heads, length, head_dim, causal, dtype, do_bench, sdpa_kernel) -> dict:
    """TFLOP/s of both implementations at one shape, forward and forward + backward."""
    from torch.nn.attention import SDPBackend

    shape = (batch, num_heads, length, head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
    grad_out = torch.randn_like(q)

    def triton_fwd():
        return flash_attention(q, k, v, causal=causal)

    def sdpa_fwd():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    flops = 4 * batch * num_heads * length * length * head_dim * (0.5 if causal else 1.0)
    row = {"causal": causal, "length": length, "batch": batch, "max_rel_err": _rel_err(triton_fwd(), sdpa_fwd())}
    for phase, mult in (("fwd", 1.0), ("fwd_bwd", 3.5)):  # backward = 2.5 x forward matmul work
        for name, fn in (("triton", triton_fwd), ("sdpa", sdpa_fwd)):
            bench_fn = fn if phase == "fwd" else (lambda fn=fn: fn().backward(grad_out))
            ms = do_bench(bench_fn, grad_to_none=[q, k, v])
            row[f"{phase}_{name}"] = mult * flops / ms * 1e-9
    return row


def bench_attention(
    seq_lens: list[int] | None = None,
    head_dim: int = 128,
    num_heads: int = 16,
    tokens_per_batch: int = 16384,
    dtype: str = "bfloat16",
    full_sweep: bool = False,
) -> list[dict] | int:
    """TFLOP/s of the Triton attention against SDPA on a GPU; the interpreter correctness sweep without one.

    Args:
        seq_lens: sequence lengths L; default 1k to 16k.
        head_dim, num_heads: D and H of q, k and v (no GQA in the timing).
        tokens_per_batch: B = tokens_per_batch // L, so every length does the same number of tokens.
        dtype: bfloat16, float16 or float32.
        full_sweep: without a GPU, sweep every length, GQA ratio, head dim and dtype (slow) instead of a subset.

    Returns:
        The table rows on GPU; the number of failed cases on CPU (non-zero exits with an error).
    """
    if dtype not in DTYPES:
        raise SystemExit(f"dtype {dtype!r} unknown: expected one of {list(DTYPES)}")
    if torch.cuda.is_available():
        return _gpu_bench(
            seq_lens or [1024, 2048, 4096, 8192, 16384], head_dim, num_heads, tokens_per_batch, DTYPES[dtype]
        )
    print("bench attention needs a CUDA GPU to time the kernels; none here, so running the Triton interpreter")
    print("correctness sweep instead (relative errors of out, dq, dk, dv against the float32 reference).")
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        # triton was imported without the interpreter: run the sweep in a fresh process that has it.
        code = (
            f"from moss_components.cli.bench_attention import interpreter_sweep; exit(interpreter_sweep({full_sweep}))"
        )
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        failures = subprocess.run([sys.executable, "-c", code], env=env).returncode
    else:
        os.environ["TRITON_INTERPRET"] = "1"  # before the kernels import triton
        failures = interpreter_sweep(full_sweep)
    if failures:
        raise SystemExit(f"{failures} case(s) failed the interpreter sweep")
    return failures
