"""Fused linear cross-entropy against ``F.cross_entropy(hidden @ weight.T + bias, labels)``: loss and gradients."""

import importlib
import itertools

import pytest
import torch
import torch.nn.functional as F

from kernels.fused_linear_cross_entropy import fused_linear_cross_entropy
from tests.kernels.kernel_checks import DEVICE, DTYPE_IDS, assert_rel_close, requires_triton

flce_module = importlib.import_module("kernels.fused_linear_cross_entropy")

# bf16 gradients go through bf16 GEMMs in both the fused and the naive path.
RTOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def _problem(num_tokens, dim, vocab, dtype, with_bias, ignored="some"):
    hidden = torch.randn(num_tokens, dim, device=DEVICE, dtype=dtype, requires_grad=True)
    weight = (torch.randn(vocab, dim, device=DEVICE) / dim**0.5).to(dtype).requires_grad_()
    bias = torch.randn(vocab, device=DEVICE, dtype=dtype, requires_grad=True) if with_bias else None
    labels = torch.randint(0, vocab, (num_tokens,), device=DEVICE)
    if ignored == "some":
        labels[:16] = -100  # a whole chunk of 16 ignored
        labels[20::3] = -100
    elif ignored == "all":
        labels[:] = -100
    return hidden, weight, bias, labels


def _naive(hidden, weight, bias, labels, reduction):
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction=reduction)


def _case(path, dtype, reduction, with_bias, marks=()):
    tag = f"{path}-{DTYPE_IDS[dtype]}-{reduction}-{'bias' if with_bias else 'nobias'}"
    if path == "triton":
        marks = (*marks, requires_triton)
    return pytest.param(path == "triton", dtype, reduction, with_bias, id=tag, marks=marks)


FAST = [
    _case("torch", torch.float32, "mean", False),
    _case("torch", torch.bfloat16, "sum", True),
    _case("triton", torch.float32, "mean", True),
    _case("triton", torch.bfloat16, "mean", False),
]
_fast_ids = {p.id for p in FAST}
SWEEP = [
    _case(*combo, marks=(pytest.mark.slow,))
    for combo in itertools.product(("torch", "triton"), (torch.float32, torch.bfloat16), ("mean", "sum"), (False, True))
    if _case(*combo).id not in _fast_ids
]


@pytest.mark.parametrize(("use_triton", "dtype", "reduction", "with_bias"), FAST + SWEEP)
def test_matches_naive(use_triton, dtype, reduction, with_bias):
    hidden, weight, bias, labels = _problem(70, 48, 1000, dtype, with_bias)
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    loss = fused_linear_cross_entropy(
        hidden, weight, labels, bias=bias, reduction=reduction, use_triton=use_triton, chunk_size=16
    )
    grads = torch.autograd.grad(loss * 2.5, inputs)  # a non-unit upstream gradient
    expected = _naive(hidden, weight, bias, labels, reduction)
    expected_grads = torch.autograd.grad(expected * 2.5, inputs)

    assert loss.dtype == torch.float32 and loss.shape == ()
    assert_rel_close(loss, expected, RTOL[dtype] / 10, "loss")
    for name, grad, ref in zip(("hidden", "weight", "bias"), grads, expected_grads):
        assert grad.dtype == dtype, f"grad {name} dtype {grad.dtype}"
        assert_rel_close(grad, ref, RTOL[dtype], f"grad {name}")


@pytest.mark.parametrize(
    "use_triton", [pytest.param(True, marks=requires_triton, id="triton"), pytest.param(False, id="torch")]
)
def test_all_labels_ignored_gives_zero_not_nan(use_triton):
    hidden, weight, _, labels = _problem(20, 32, 64, torch.float32, False, ignored="all")
    loss = fused_linear_cross_entropy(hidden, weight, labels, use_triton=use_triton)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(hidden.grad, torch.zeros_like(hidden))
    assert torch.equal(weight.grad, torch.zeros_like(weight))


def test_default_chunking_and_no_grad():
    """The default chunk size (N / 8 rounded down to a power of two: 300 tokens take 10 chunks), and no_grad."""
    assert flce_module._chunk_size(300, 2000) == 32
    assert flce_module._chunk_size(8192, 151_680) == 1024  # both caps: 1 GiB (1,769 rows, rounded down) and N / 8
    assert flce_module._chunk_size(65536, 151_680) == 1024  # the 1 GiB cap alone
    assert flce_module._chunk_size(8192, 16_512) == 1024  # the N / 8 cap
    assert flce_module._chunk_size(1 << 20, 16_512) == 8192  # the 1 GiB cap (16,256 rows) at the speech vocabulary
    hidden, weight, _, labels = _problem(300, 32, 2000, torch.float32, False)
    loss = fused_linear_cross_entropy(hidden, weight, labels, use_triton=False)
    expected = _naive(hidden, weight, None, labels, "mean")
    assert_rel_close(loss, expected, 1e-6, "loss")
    with torch.no_grad():
        assert_rel_close(fused_linear_cross_entropy(hidden, weight, labels, use_triton=False), expected, 1e-6, "loss")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"reduction": "none"}, "reduction 'none' unsupported", id="reduction-none"),
        pytest.param({"labels": torch.zeros(5, dtype=torch.long)}, "expected \\(8,\\)", id="labels-length"),
        pytest.param({"weight": torch.randn(10, 7)}, "expected \\(N, D\\) and \\(V, D\\)", id="dim-mismatch"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    args = {"hidden": torch.randn(8, 16), "weight": torch.randn(10, 16), "labels": torch.zeros(8, dtype=torch.long)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fused_linear_cross_entropy(**args)
