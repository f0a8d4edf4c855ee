"""``moss-speech bench attention-tune``: search the Triton attention's launch settings on this GPU.

Each of the three kernels (forward, backward dk/dv, backward dq) is timed over a grid of tiles, warps and pipeline
stages, in that order, with the others at their defaults or at the best found before them (the dk/dv and dq
kernels are timed together, as one backward), through the same host code as training (``_flash_fwd`` /
``_flash_bwd``). The baseline is the current default, measured in the same run; every candidate's output is checked
against the default's. Copy the winners into ``kernels.flash_attention._launch_config``.
"""

from __future__ import annotations

import importlib
import itertools
import time
from unittest import mock

import torch

from moss_components.cli.bench_attention import DTYPES, SWEEP_TOLERANCE, _rel_err

TILES = {
    "fwd": [(128, 64), (128, 32), (128, 128), (64, 64), (64, 32)],  # causal needs block_m % block_n == 0
    "dkdv": [(64, 64), (32, 128), (64, 128), (32, 64), (16, 128), (16, 64)],
    "dq": [(64, 64), (128, 32), (128, 64), (64, 32), (32, 64)],
}
WARPS = (4, 8)
STAGES = (2, 3, 4)


def tune_attention(
    head_dim: int = 128,
    num_heads: int = 16,
    length: int = 4096,
    tokens_per_batch: int = 16384,
    dtype: str = "bfloat16",
    causal: bool = True,
    only: list[str] | None = None,
    budget_s: float = 60.0,
) -> dict:
    """Time every candidate launch of each kernel; print a table per kernel and the best against the default.

    Args:
        head_dim, num_heads, length: D, H and L of q, k, v (B = tokens_per_batch // L).
        dtype: bfloat16, float16 or float32.
        only: which of "fwd", "dkdv", "dq" to tune (default all, in that order).
        budget_s: wall seconds per kernel, compiles included; candidates past it are skipped and counted.

    Returns:
        {kernel: {"default": Launch, "best": Launch, "default_ms": float, "best_ms": float}}.
    """
    if not torch.cuda.is_available():
        raise SystemExit("bench attention-tune times compiled kernels and needs a CUDA GPU; none here")
    if dtype not in DTYPES:
        raise SystemExit(f"dtype {dtype!r} unknown: expected one of {list(DTYPES)}")
    only = only or list(TILES)
    unknown = [k for k in only if k not in TILES]
    if unknown:
        raise SystemExit(f"only={unknown} unknown: expected some of {list(TILES)}")
    from triton.testing import do_bench

    # The module, not the `flash_attention` function that `kernels` re-exports under the same name.
    fa = importlib.import_module("kernels.flash_attention")

    torch.manual_seed(0)
    batch = max(1, tokens_per_batch // length)
    shape = (batch, num_heads, length, head_dim)
    q, k, v, grad_out = (torch.randn(shape, device="cuda", dtype=DTYPES[dtype]) for _ in range(4))
    scale = head_dim**-0.5
    defaults = fa._launch_config(head_dim)
    out, lse = fa._flash_fwd(q, k, v, None, length, causal, scale)

    def run(kernel):
        if kernel == "fwd":
            return lambda: fa._flash_fwd(q, k, v, None, length, causal, scale)[0]
        return lambda: fa._flash_bwd(grad_out, q, k, v, out, lse, None, length, causal, scale)

    print(f"bench attention-tune on {torch.cuda.get_device_name()}: D={head_dim} H={num_heads} L={length} B={batch}")
    print(f"{dtype}, {'causal' if causal else 'full'}; each kernel timed through its host call (the backward's: both)")
    results = {}
    chosen = dict(defaults)
    for kernel in only:
        baseline = defaults[kernel]
        grid = (fa.Launch(m, n, w, s) for (m, n), w, s in itertools.product(TILES[kernel], WARPS, STAGES))
        candidates = [baseline, *(launch for launch in grid if launch != baseline)]
        reference = default_ms = None
        timed, skipped, failed = [], 0, 0
        deadline = time.monotonic() + budget_s
        print(f"\n{kernel}: {len(candidates)} candidates")
        print(f"{'block_m':>7} {'block_n':>7} {'warps':>5} {'stages':>6} | {'ms':>8} {'vs default':>10} {'rel err':>8}")
        for launch in candidates:
            if time.monotonic() > deadline:
                skipped += 1
                continue
            config = {**chosen, kernel: launch}
            with mock.patch.object(fa, "_launch_config", lambda _d, config=config: config):
                fn = run(kernel)
                try:
                    result = fn()
                    torch.cuda.synchronize()
                    ms = do_bench(fn)
                except Exception as error:  # out of shared memory or registers at this tile
                    if launch == baseline:
                        raise SystemExit(f"{kernel}: the default {baseline} does not run here: {error}") from error
                    failed += 1
                    print(f"{_settings(launch)} | failed: {type(error).__name__}")
                    continue
            outputs = result if isinstance(result, tuple) else (result,)
            if reference is None:  # the default runs first: the others are checked against it
                reference, default_ms = outputs, ms
            err = max(_rel_err(a, b) for a, b in zip(outputs, reference))
            ok = err <= SWEEP_TOLERANCE[DTYPES[dtype]]
            if ok:
                timed.append((ms, launch))
            verdict = "" if ok else "  WRONG: not kept"
            print(f"{_settings(launch)} | {ms:>8.3f} {default_ms / ms:>9.2f}x {err:>8.1e}{verdict}")
        best_ms, best = min(timed, key=lambda t: t[0])
        chosen[kernel] = best
        results[kernel] = {"default": baseline, "best": best, "default_ms": default_ms, "best_ms": best_ms}
        print(f"{kernel}: best {best} at {best_ms:.3f} ms, {default_ms / best_ms:.2f}x the default {baseline}")
        if skipped or failed:
            print(f"{kernel}: {skipped} candidate(s) skipped past the {budget_s:.0f} s budget, {failed} failed to run")
    print("\nsummary (speed-up over the default launch, same run):")
    for kernel, r in results.items():
        print(f"  {kernel:<5} {r['default']} -> {r['best']}: {r['default_ms'] / r['best_ms']:.2f}x")
    return results


def _settings(launch) -> str:
    return f"{launch.block_m:>7} {launch.block_n:>7} {launch.num_warps:>5} {launch.num_stages:>6}"
