"""Triton flash attention (dense) against the float32 reference: outputs, log-sum-exp and dq/dk/dv."""

import itertools
import logging

import pytest
import torch
import torch.nn.functional as F

from kernels import backend
from kernels.flash_attention import flash_attention
from kernels.flash_attention_reference import attention_reference
from tests.kernels.kernel_checks import DEVICE, DTYPE_IDS, RTOL, assert_rel_close, requires_triton

pytestmark = requires_triton


def _case(length, group, causal, head_dim, dtype, marks=()):
    tag = "causal" if causal else "full"
    case_id = f"L{length}-gqa{group}-{tag}-D{head_dim}-{DTYPE_IDS[dtype]}"
    return pytest.param(length, group, causal, head_dim, dtype, id=case_id, marks=marks)


# The default suite: every length, ratio, mask, head dim and dtype appears at least once.
FAST = [
    _case(1, 1, True, 64, torch.float32),
    _case(37, 2, True, 64, torch.float32),
    _case(63, 4, False, 64, torch.float32),
    _case(200, 2, True, 64, torch.float32),
    _case(200, 1, False, 32, torch.float16),
    _case(63, 2, True, 96, torch.bfloat16),
    _case(37, 4, True, 128, torch.float16),
    _case(63, 1, False, 128, torch.bfloat16),
]
_fast_ids = {p.id for p in FAST}
SWEEP = [
    _case(*combo, marks=pytest.mark.slow)
    for combo in itertools.product(
        (1, 37, 63, 200), (1, 2, 4), (True, False), (32, 64, 96, 128), (torch.float32, torch.float16, torch.bfloat16)
    )
    if _case(*combo).id not in _fast_ids
]


def _inputs(batch, heads, group, length, head_dim, dtype):
    shape_q, shape_kv = (batch, heads, length, head_dim), (batch, heads // group, length, head_dim)
    q = torch.randn(shape_q, device=DEVICE, dtype=dtype, requires_grad=True)
    k = torch.randn(shape_kv, device=DEVICE, dtype=dtype, requires_grad=True)
    v = torch.randn(shape_kv, device=DEVICE, dtype=dtype, requires_grad=True)
    return q, k, v


@pytest.mark.parametrize(("length", "group", "causal", "head_dim", "dtype"), FAST + SWEEP)
def test_matches_reference(length, group, causal, head_dim, dtype):
    q, k, v = _inputs(2, 4, group, length, head_dim, dtype)
    scale = 0.7 / head_dim**0.5  # not the default, so a dropped scale shows
    out, lse = flash_attention(q, k, v, causal=causal, scale=scale, return_lse=True)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)

    ref_inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = attention_reference(*ref_inputs, causal=causal, scale=scale)
    ref_grads = torch.autograd.grad(ref_out, ref_inputs, grad_out.float())

    assert out.dtype == dtype
    assert_rel_close(out, ref_out, RTOL[dtype], "out")
    assert_rel_close(lse, ref_lse, 1e-5, "lse")
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert grad.dtype == dtype
        assert_rel_close(grad, ref, RTOL[dtype], name)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_matches_sdpa_on_transformers_layout(causal):
    """(B, L, H, D) memory transposed to (B, H, L, D), as transformers hands it over, against torch's own SDPA."""
    q, k, v = (torch.randn(1, 45, h, 64, device=DEVICE).transpose(1, 2) for h in (4, 2, 2))
    out = flash_attention(q, k, v, causal=causal)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    assert_rel_close(out, expected, 1e-5, "out")
    assert out.transpose(1, 2).is_contiguous()  # transformers' transpose back is free


@pytest.mark.parametrize(
    ("shape_q", "shape_kv", "match"),
    [
        pytest.param((1, 2, 8, 80), (1, 2, 8, 80), "head dim 80 unsupported", id="head-dim-80"),
        pytest.param((1, 3, 8, 64), (1, 2, 8, 64), "expected a multiple", id="heads-3-for-2"),
        pytest.param((1, 2, 8, 64), (1, 2, 9, 64), "disagree on batch or length", id="length-mismatch"),
        pytest.param((2, 8, 64), (2, 8, 64), "expected \\(B, H, L, D\\)", id="rank-3"),
    ],
)
def test_rejects_bad_shapes(shape_q, shape_kv, match):
    q, k = torch.randn(shape_q, device=DEVICE), torch.randn(shape_kv, device=DEVICE)
    with pytest.raises(ValueError, match=match):
        flash_attention(q, k, k)


def test_rejects_integer_dtype():
    q = torch.zeros(1, 2, 8, 64, dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match="unsupported"):
        flash_attention(q, q, q)


def test_falls_back_to_sdpa_where_triton_cannot_run(monkeypatch, caplog):
    """A CPU without the interpreter: SDPA does the work, and says so once."""
    monkeypatch.setattr(backend, "triton_usable", lambda device: False)
    monkeypatch.setattr(backend, "_logged", set())
    q, k, v = (torch.randn(1, h, 20, 32) for h in (4, 2, 2))
    with caplog.at_level(logging.INFO, logger="kernels.backend"):
        out = flash_attention(q, k, v)
        flash_attention(q, k, v)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert_rel_close(out, expected, 1e-6, "out")
    assert sum("using torch SDPA" in r.message for r in caplog.records) == 1
