"""Shared pieces of the kernel tests: the device, per-dtype tolerances, relative errors.

Imported as ``tests.kernels.kernel_checks`` (the repository root is on sys.path under pytest); the NaN
poisoning fixture is in conftest.py.
"""

import pytest
import torch

from kernels.backend import triton_usable

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# Relative error (norm of difference / norm of reference) against a float32 reference fed the same inputs.
RTOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

requires_triton = pytest.mark.skipif(
    not triton_usable(DEVICE), reason="needs a CUDA device or TRITON_INTERPRET=1 set before triton is imported"
)


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``|actual - expected| / |expected|`` in float32 norms; an all-zero reference compares absolutely."""
    diff = (actual.float() - expected.float()).norm().item()
    scale = expected.float().norm().item()
    return diff / scale if scale > 0 else diff


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values (an element the kernel never wrote?)"
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol:.0e}"
