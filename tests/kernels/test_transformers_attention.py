"""``moss_triton`` inside a tiny random Qwen3: the same logits and gradients as ``eager``, packed and unpacked."""

import logging

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from kernels import backend
from kernels.backend import resolve_attn_implementation
from kernels.transformers_attention import _layout_from_mask, register_moss_triton_attention
from tests.kernels.kernel_checks import DEVICE, assert_rel_close, requires_triton

VOCAB = 97


def _tiny_qwen3(attn_implementation: str) -> Qwen3ForCausalLM:
    torch.manual_seed(0)  # the same weights for every implementation
    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=256,
        attn_implementation=attn_implementation,
    )
    return Qwen3ForCausalLM(config).to(DEVICE)


def _run(model, input_ids, **kwargs):
    out = model(input_ids=input_ids, labels=input_ids, use_cache=False, **kwargs)
    out.loss.backward()
    return out.logits.detach(), {name: p.grad for name, p in model.named_parameters()}


def _positions(doc_lens_per_row):
    return torch.stack([torch.cat([torch.arange(n) for n in row]) for row in doc_lens_per_row]).to(DEVICE)


PACKINGS = {
    "unpacked": lambda: {},
    "packed-position-ids": lambda: {"position_ids": _positions([[20, 25], [7, 1, 37]])},
    "packed-cu-seqlens": lambda: {
        "position_ids": _positions([[20, 25, 45]]),
        "cu_seq_lens_q": torch.tensor([0, 20, 45, 90], dtype=torch.int32, device=DEVICE),
        "cu_seq_lens_k": torch.tensor([0, 20, 45, 90], dtype=torch.int32, device=DEVICE),
        "max_length_q": 45,
        "max_length_k": 45,
    },
}


@requires_triton
@pytest.mark.parametrize("packing", list(PACKINGS))
def test_same_logits_and_gradients_as_eager(packing):
    register_moss_triton_attention()
    kwargs = PACKINGS[packing]()
    batch = kwargs["position_ids"].shape[0] if "position_ids" in kwargs else 2
    length = kwargs["position_ids"].shape[1] if "position_ids" in kwargs else 45
    input_ids = torch.randint(0, VOCAB, (batch, length), device=DEVICE)
    eager_logits, eager_grads = _run(_tiny_qwen3("eager"), input_ids, **kwargs)
    logits, grads = _run(_tiny_qwen3("moss_triton"), input_ids, **kwargs)
    assert_rel_close(logits, eager_logits, 1e-5, "logits")
    for name, grad in grads.items():
        assert_rel_close(grad, eager_grads[name], 1e-4, f"grad {name}")


@requires_triton
def test_packing_changes_the_result():
    """Guards the test above: packed and unpacked logits differ, so packing really reached the kernel."""
    register_moss_triton_attention()
    model = _tiny_qwen3("moss_triton")
    input_ids = torch.randint(0, VOCAB, (1, 30), device=DEVICE)
    packed = model(input_ids=input_ids, position_ids=_positions([[10, 20]]), use_cache=False).logits
    # The same restart-free positions as one document: only the first 10 tokens may agree.
    whole = model(input_ids=input_ids, use_cache=False).logits
    assert not torch.allclose(packed[:, 10:], whole[:, 10:], atol=1e-3)


def test_padding_mask_falls_back_to_sdpa_once(caplog, monkeypatch):
    register_moss_triton_attention()
    monkeypatch.setattr(backend, "_logged", set())
    input_ids = torch.randint(0, VOCAB, (2, 12), device=DEVICE)
    attention_mask = torch.ones(2, 12, dtype=torch.long, device=DEVICE)
    attention_mask[1, 9:] = 0  # right padding
    model = _tiny_qwen3("moss_triton")
    with caplog.at_level(logging.INFO, logger="kernels.backend"), torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        expected = _tiny_qwen3("eager")(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    valid = attention_mask.bool()
    assert_rel_close(logits[valid], expected[valid], 1e-5, "logits")
    fallbacks = [r.message for r in caplog.records if "falling back to SDPA" in r.message]
    assert len(fallbacks) == 1, fallbacks


def _block_causal(doc_lens):
    length = sum(doc_lens)
    doc = torch.repeat_interleave(torch.arange(len(doc_lens)), torch.tensor(doc_lens))
    pos = torch.arange(length)
    return (doc[:, None] == doc[None, :]) & (pos[:, None] >= pos[None, :])


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        pytest.param(_block_causal([6])[None, None], ("causal", None, 6), id="causal"),
        pytest.param(_block_causal([2, 3, 1])[None, None], ("causal", [0, 2, 5, 6], 3), id="packed-causal"),
        pytest.param(torch.ones(2, 1, 5, 5, dtype=torch.bool), ("full", None, 5), id="full"),
        pytest.param(
            torch.where(_block_causal([3, 3]), 0.0, torch.finfo(torch.float32).min)[None, None],
            ("causal", [0, 3, 6], 3),
            id="float-packed",
        ),
        pytest.param(_block_causal([6])[None, None] & torch.tensor([1, 1, 1, 1, 0, 0]).bool(), None, id="padding"),
        pytest.param(_block_causal([6]).triu(-1)[None, None], None, id="sliding-window"),
        pytest.param(torch.randn(1, 1, 4, 4), None, id="float-bias"),
    ],
)
def test_mask_layout(mask, expected):
    layout = _layout_from_mask(mask)
    if expected is None:
        assert layout is None
        return
    kind, cu_seqlens, max_len = layout
    assert (kind, None if cu_seqlens is None else cu_seqlens.tolist(), max_len) == expected


def test_resolve_attn_implementation():
    assert resolve_attn_implementation("sdpa") == "sdpa"
    assert resolve_attn_implementation("auto") == ("moss_triton" if torch.cuda.is_available() else "sdpa")
    assert resolve_attn_implementation("moss_triton") == "moss_triton"
    with pytest.raises(ValueError, match="attention_backend 'flash' unknown"):
        resolve_attn_implementation("flash")


@requires_triton
def test_restarting_position_ids_without_mask_use_varlen():
    """No mask but position ids that restart (a FlashAttention-2 style call): documents stay apart."""
    from kernels.flash_attention_reference import attention_varlen_reference
    from kernels.transformers_attention import moss_triton_attention_forward

    module = torch.nn.Module()
    module.is_causal = True
    q, k, v = (torch.randn(1, 30, h, 32, device=DEVICE).transpose(1, 2) for h in (4, 2, 2))
    out, weights = moss_triton_attention_forward(
        module, q, k, v, None, scaling=0.3, position_ids=_positions([[12, 18]])
    )
    cu_seqlens = torch.tensor([0, 12, 30], dtype=torch.int32)
    expected, _ = attention_varlen_reference(*(t[0].transpose(0, 1) for t in (q, k, v)), cu_seqlens, scale=0.3)
    assert weights is None
    assert_rel_close(out[0], expected, 1e-5, "out")


@requires_triton
def test_one_packed_mask_broadcast_over_the_batch():
    """A (1, 1, L, L) packed mask applies to every row of a batch of 2."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from kernels.transformers_attention import moss_triton_attention_forward

    module = torch.nn.Module()
    module.is_causal, module.num_key_value_groups = True, 2
    q, k, v = (torch.randn(2, 30, h, 32, device=DEVICE).transpose(1, 2) for h in (4, 2, 2))
    mask = _block_causal([12, 18])[None, None].to(DEVICE)
    out, _ = moss_triton_attention_forward(module, q, k, v, mask, scaling=0.3)
    expected, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert_rel_close(out, expected, 1e-5, "out")


@requires_triton
@pytest.mark.parametrize(
    ("kwargs", "dropout", "head_dim", "key_length", "expected"),
    [
        pytest.param({}, 0.0, 32, 30, None, id="supported"),
        pytest.param({"sliding_window": 64}, 0.0, 32, 30, None, id="window-longer-than-sequence"),
        pytest.param({"sliding_window": 8}, 0.0, 32, 30, "sliding window 8 < length 30", id="window-8"),
        pytest.param({}, 0.1, 32, 30, "attention dropout 0.1", id="dropout"),
        pytest.param({}, 0.0, 80, 30, "head dim 80", id="head-dim-80"),
        pytest.param({}, 0.0, 32, 40, "query length 30 != key length 40", id="kv-cache"),
        pytest.param({"softcap": 30.0}, 0.0, 32, 30, "softcap", id="softcap"),
    ],
)
def test_fallback_reasons(kwargs, dropout, head_dim, key_length, expected):
    from kernels.transformers_attention import _fallback_reason

    query = torch.randn(1, 4, 30, head_dim, device=DEVICE)
    key = torch.randn(1, 2, key_length, head_dim, device=DEVICE)
    reason = _fallback_reason(torch.nn.Module(), query, key, None, dropout, kwargs)
    assert reason is None if expected is None else expected in reason


@requires_triton
def test_packed_batch_from_the_data_pipeline_reaches_the_varlen_kernel(monkeypatch):
    """A batch from ``collate_packed`` (restarting position_ids, no attention mask, a padding tail as its own block)."""
    import kernels.transformers_attention as transformers_attention
    from moss_components.data.packing import collate_packed
    from moss_components.special_ids import SpeechSpecialIds

    register_moss_triton_attention()
    special = SpeechSpecialIds.for_vocab(VOCAB - 2, num_speech_codes=16)
    doc = lambda n: (torch.randint(0, VOCAB - 2, (n, 2)), torch.randint(0, VOCAB - 2, (n, 2)))
    batch = collate_packed([[doc(11), doc(19)], [doc(25)]], special, length=32)
    calls = []
    real_varlen = transformers_attention.flash_attention_varlen
    monkeypatch.setattr(
        transformers_attention, "flash_attention_varlen", lambda *a, **k: calls.append(a[3]) or real_varlen(*a, **k)
    )
    text_ids, position_ids = batch["input_ids"][..., 0].to(DEVICE), batch["position_ids"].to(DEVICE)
    eager_logits, eager_grads = _run(_tiny_qwen3("eager"), text_ids, position_ids=position_ids)
    logits, grads = _run(_tiny_qwen3("moss_triton"), text_ids, position_ids=position_ids)
    assert calls and calls[0].tolist() == batch["cu_seqlens"].tolist()  # the pipeline's own document boundaries
    assert_rel_close(logits, eager_logits, 1e-5, "logits")
    for name, grad in grads.items():
        assert_rel_close(grad, eager_grads[name], 1e-4, f"grad {name}")
