"""``moss-speech bench loss``: fused linear cross-entropy against the naive head + ``F.cross_entropy``.

Both run forward + backward on the same inputs, in one process. Time is wall-clock (CUDA-synchronized on GPU).
Peak memory is, on GPU, ``torch.cuda.max_memory_allocated`` above what was allocated before the call; on CPU, the
rise of the process' peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) above its resident
size before the call. Both include the gradient buffers (the ``(V, D)`` weight gradient is the same in both).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from moss_components.cli.bench_utils import PeakMemory

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _naive(hidden, weight, labels):
    return F.cross_entropy(F.linear(hidden, weight).float(), labels, ignore_index=-100)


def _measure(fn, hidden, weight, labels, device, repeats):
    """Mean seconds and max peak bytes of forward + backward over ``repeats`` runs (after one warm-up on GPU)."""
    runs = repeats + (1 if device.type == "cuda" else 0)
    seconds, peak, loss = [], 0, None
    for i in range(runs):
        hidden.grad = weight.grad = None
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            loss = fn(hidden, weight, labels)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        if device.type == "cuda" and i == 0:
            continue
        seconds.append(elapsed)
        peak = max(peak, mem.bytes)
    return sum(seconds) / len(seconds), peak, loss.item()


def bench_loss(
    vocab_sizes: list[int] | None = None,
    num_tokens: int = 8192,
    hidden_size: int = 1024,
    dtype: str | None = None,
    repeats: int = 1,
    device: str | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
) -> list[dict]:
    """Time and peak memory of the fused loss against the naive one, forward + backward.

    Args:
        vocab_sizes: head sizes; default the MOSS-Speech pair, 151,680 text and 16,512 speech ids.
        num_tokens: tokens N in the batch (10 % get the ignore label).
        hidden_size: D. The naive loss at N=8192, V=151,680 in float32 peaks around 10-15 GiB on CPU.
        dtype: float32 / bfloat16 / float16; default float32 on CPU, bfloat16 on GPU.
        repeats: timed runs per method (GPU adds one warm-up).
        device: cuda or cpu; default cuda when available.
        seed: for the random inputs.
        chunk_size: tokens per chunk of the fused loss; default its own rule (1,024 at N = 8,192 for both V).

    Returns:
        One row per (vocab, method) with seconds, peak bytes and the ratios to the naive loss.
    """
    from kernels.fused_linear_cross_entropy import fused_linear_cross_entropy

    vocab_sizes = vocab_sizes or [151_680, 16_512]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = dtype or ("bfloat16" if device.type == "cuda" else "float32")
    if dtype_name not in DTYPES:
        raise SystemExit(f"dtype {dtype_name!r} unknown: expected one of {list(DTYPES)}")
    torch_dtype = DTYPES[dtype_name]
    path = "triton" if device.type == "cuda" else "torch"
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"bench loss: N={num_tokens} D={hidden_size} {dtype_name} on {card}; fused path: {path}")
    print("peak memory: " + ("CUDA max_memory_allocated above start" if device.type == "cuda" else "VmHWM rise (RSS)"))

    def fused(h, w, y):
        return fused_linear_cross_entropy(h, w, y, use_triton=device.type == "cuda", chunk_size=chunk_size)

    generator = torch.Generator().manual_seed(seed)
    rows = []
    header = f"{'V':>8} {'method':<7} {'time s':>9} {'peak MiB':>10} {'time ratio':>10} {'mem ratio':>9} {'loss':>9}"
    print(header)
    print("-" * len(header))
    for vocab in vocab_sizes:
        hidden = torch.randn(num_tokens, hidden_size, generator=generator).to(device, torch_dtype).requires_grad_()
        weight = (torch.randn(vocab, hidden_size, generator=generator) / hidden_size**0.5).to(device, torch_dtype)
        weight.requires_grad_()
        labels = torch.randint(0, vocab, (num_tokens,), generator=generator)
        labels[torch.rand(num_tokens, generator=generator) < 0.1] = -100
        labels = labels.to(device)
        base = None
        for name, fn in (("naive", _naive), ("fused", fused)):
            seconds, peak, loss = _measure(fn, hidden, weight, labels, device, repeats)
            base = base or (seconds, peak)
            row = {
                "vocab": vocab,
                "method": name,
                "seconds": seconds,
                "peak_bytes": peak,
                "time_ratio": seconds / base[0],
                # a run too small to raise the process' peak resident memory has no ratio to give
                "memory_ratio": peak / base[1] if base[1] > 0 else float("nan"),
                "loss": loss,
            }
            rows.append(row)
            print(
                f"{vocab:>8} {name:<7} {seconds:>9.4f} {peak / 2**20:>10.1f} {row['time_ratio']:>9.2f}x "
                f"{row['memory_ratio']:>8.3f}x {loss:>9.4f}"
            )
        del hidden, weight, labels
    return rows
