"""Varlen flash attention over packed documents against the per-document float32 reference."""

import itertools

import pytest
import torch

from kernels.flash_attention import flash_attention, flash_attention_varlen
from kernels.flash_attention_reference import attention_varlen_reference
from tests.kernels.kernel_checks import DEVICE, DTYPE_IDS, RTOL, assert_rel_close, requires_triton

pytestmark = requires_triton

# Uneven documents: a single token, lengths off the block grid, one longer than two blocks.
DOCS = {
    "docs-1-37-5-70-16": [1, 37, 5, 70, 16],
    "docs-63": [63],
    "docs-200-1": [200, 1],
    "docs-8x9": [9] * 8,
}


def _case(docs, group, causal, head_dim, dtype, marks=()):
    tag = "causal" if causal else "full"
    return pytest.param(
        DOCS[docs],
        group,
        causal,
        head_dim,
        dtype,
        id=f"{docs}-gqa{group}-{tag}-D{head_dim}-{DTYPE_IDS[dtype]}",
        marks=marks,
    )


FAST = [
    _case("docs-1-37-5-70-16", 2, True, 64, torch.float32),
    _case("docs-1-37-5-70-16", 1, False, 64, torch.float32),
    _case("docs-1-37-5-70-16", 4, True, 128, torch.bfloat16),
    _case("docs-8x9", 2, False, 32, torch.float16),
]
_fast_ids = {p.id for p in FAST}
SWEEP = [
    _case(*combo, marks=pytest.mark.slow)
    for combo in itertools.product(
        DOCS, (1, 2, 4), (True, False), (32, 64, 96, 128), (torch.float32, torch.float16, torch.bfloat16)
    )
    if _case(*combo).id not in _fast_ids
]


def _packed(doc_lens, heads, group, head_dim, dtype):
    total = sum(doc_lens)
    q = torch.randn(total, heads, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
    k = torch.randn(total, heads // group, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
    v = torch.randn(total, heads // group, head_dim, device=DEVICE, dtype=dtype, requires_grad=True)
    cu_seqlens = torch.tensor([0, *doc_lens], device=DEVICE).cumsum(0).to(torch.int32)
    return q, k, v, cu_seqlens


@pytest.mark.parametrize(("doc_lens", "group", "causal", "head_dim", "dtype"), FAST + SWEEP)
def test_matches_reference(doc_lens, group, causal, head_dim, dtype):
    q, k, v, cu_seqlens = _packed(doc_lens, 4, group, head_dim, dtype)
    out, lse = flash_attention_varlen(q, k, v, cu_seqlens, max(doc_lens), causal=causal, return_lse=True)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)

    ref_inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = attention_varlen_reference(*ref_inputs, cu_seqlens, causal=causal)
    ref_grads = torch.autograd.grad(ref_out, ref_inputs, grad_out.float())

    assert_rel_close(out, ref_out, RTOL[dtype], "out")
    assert_rel_close(lse, ref_lse, 1e-5, "lse")
    for name, grad, ref in zip(("dq", "dk", "dv"), grads, ref_grads):
        assert_rel_close(grad, ref, RTOL[dtype], name)


def test_no_token_attends_across_documents():
    """Changing one document's keys and values leaves every other document's output and gradients untouched."""
    doc_lens = [30, 41, 7]
    q, k, v, cu_seqlens = _packed(doc_lens, 4, 2, 64, torch.float32)
    out = flash_attention_varlen(q, k, v, cu_seqlens, 41, causal=False)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[30:71] += 5.0
    v2[30:71] -= 3.0
    out2 = flash_attention_varlen(q, k2, v2, cu_seqlens, 41, causal=False)
    outside = torch.ones(sum(doc_lens), dtype=torch.bool)
    outside[30:71] = False
    torch.testing.assert_close(out2[outside], out[outside], rtol=0, atol=0)
    assert not torch.allclose(out2[~outside], out[~outside])


def test_one_document_per_row_equals_dense():
    """Two equal documents packed give exactly the dense kernel's batch of two."""
    q, k, v = (torch.randn(2, h, 50, 64, device=DEVICE) for h in (4, 2, 2))
    dense = flash_attention(q, k, v, causal=True)
    pack = lambda t: t.transpose(1, 2).reshape(100, t.shape[1], 64)
    cu_seqlens = torch.tensor([0, 50, 100], dtype=torch.int32, device=DEVICE)
    packed = flash_attention_varlen(pack(q), pack(k), pack(v), cu_seqlens, 50, causal=True)
    torch.testing.assert_close(packed, pack(dense), rtol=0, atol=0)


def test_rejects_bad_cu_seqlens():
    q = torch.randn(10, 2, 32, device=DEVICE)
    with pytest.raises(ValueError, match="expected \\(num_docs \\+ 1,\\)"):
        flash_attention_varlen(q, q, q, torch.tensor([10], device=DEVICE), 10)
