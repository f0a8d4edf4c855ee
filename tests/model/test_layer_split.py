"""LayerSplitSpeechLM against transformers' own models: text path, speech path, masks, packing, cache, loss."""

import copy

import pytest
import torch
import torch.nn.functional as F

from moss_components.model import LayerSplitSpeechLM, SplitError
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_special_ids, tiny_text_model
from moss_components.routers import DualBranchRouter

IDS = tiny_special_ids()


def split(family="qwen3", k=2, attn="sdpa", num_layers=4, **kw):
    base = tiny_text_model(family, num_layers=num_layers, attn_implementation=attn)
    ref = copy.deepcopy(base)
    model = LayerSplitSpeechLM.from_text_model(base, k, TINY_SPEECH_VOCAB, IDS, **kw).eval()
    return ref, model


def mixed_grid(batch=2, length=12, seed=1):
    """Text, start-of-speech, a few speech tokens, end-of-speech, text again."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(2, 98, (batch, length), generator=g)
    speech = torch.full((batch, length), IDS.speech_pad)
    text[:, 3] = IDS.text_start_of_speech
    text[:, 4:9] = IDS.text_modality_pad
    speech[:, 4:8] = torch.randint(0, 30, (batch, 4), generator=g)
    speech[:, 8] = IDS.speech_end_of_speech
    return torch.stack([text, speech], dim=-1)


@pytest.mark.parametrize("family", ["qwen3", "llama", "qwen2", "mistral"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("k", [1, 3])
def test_text_logits_bit_identical_to_base(family, attn, k):
    ref, model = split(family, k, attn)
    ids = torch.randint(0, 98, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        got = model(ids, attention_mask=mask).text_logits
        grid = torch.stack([ids, torch.full_like(ids, IDS.speech_pad)], dim=-1)
        got_grid = model(grid, attention_mask=mask).text_logits
    assert torch.equal(got, expected)
    assert torch.equal(got_grid, expected)


def test_text_branch_is_the_base_modules():
    base = tiny_text_model()
    model = LayerSplitSpeechLM.from_text_model(base, 2, TINY_SPEECH_VOCAB, IDS)
    assert model.text_head is base.lm_head and model.text_norm is base.model.norm
    assert model.embed_tokens is base.model.embed_tokens
    assert all(a is b for a, b in zip(list(model.shared_layers) + list(model.text_layers), base.model.layers))
    assert all(a is not b for a, b in zip(model.speech_layers, model.text_layers))
    assert (model.text_vocab_size, model.speech_vocab_size, model.num_shared_layers) == (100, TINY_SPEECH_VOCAB, 2)
    assert model.config is base.config


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_speech_path_equals_hf_model_built_from_speech_weights(family):
    """A speech-only grid through the split model == a transformers model whose upper layers, norm, embedding and
    head are the speech branch's (after the branch has diverged from the text branch)."""
    _, model = split(family, 2)
    with torch.no_grad():
        for p in list(model.speech_layers.parameters()) + list(model.speech_norm.parameters()):
            p.add_(0.05 * torch.randn_like(p))
    ref = tiny_text_model(family, vocab_size=TINY_SPEECH_VOCAB)
    with torch.no_grad():
        ref.model.embed_tokens.weight.copy_(model.speech_embed.weight)
        ref.lm_head.weight.copy_(model.speech_head.weight)
        ref.model.norm.load_state_dict(model.speech_norm.state_dict())
        for i, layer in enumerate(list(model.shared_layers) + list(model.speech_layers)):
            ref.model.layers[i].load_state_dict(layer.state_dict())
    speech = torch.randint(0, 30, (2, 8))
    grid = torch.stack([torch.full_like(speech, IDS.text_modality_pad), speech], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(model(grid).speech_logits, ref(speech).logits, rtol=0, atol=1e-6)


def test_speech_branch_starts_as_a_copy_of_the_text_branch():
    _, model = split("qwen3", 2)
    out = model(mixed_grid())
    assert torch.equal(out.text_hidden, out.speech_hidden)


def test_mixed_grid_uses_speech_table_at_speech_positions():
    ref, model = split("qwen3", 2)
    grid = mixed_grid()
    with torch.no_grad():
        out = model(grid)
        # positions before the speech segment see only text: equal to the base model
        torch.testing.assert_close(out.text_logits[:, :4], ref(grid[:, :4, 0]).logits, rtol=0, atol=1e-6)
        changed = grid.clone()
        changed[:, 5, 1] = (changed[:, 5, 1] + 1) % 30
        out2 = model(changed)
    assert torch.equal(out2.text_logits[:, :5], out.text_logits[:, :5])
    assert not torch.allclose(out2.text_logits[:, 5:], out.text_logits[:, 5:])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_sequences_are_block_diagonal(attn):
    ref, model = split("qwen3", 2, attn)
    a, b = torch.randint(0, 98, (1, 5)), torch.randint(0, 98, (1, 7))
    packed = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(5), torch.arange(7)]).unsqueeze(0)
    with torch.no_grad():
        got = model(packed, position_ids=positions).text_logits
        torch.testing.assert_close(got[:, :5], ref(a).logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(got[:, 5:], ref(b).logits, rtol=0, atol=1e-6)


def test_extra_kwargs_reach_the_attention_function(monkeypatch):
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seen = []

    def spy(module, q, k, v, mask, **kwargs):
        seen.append(kwargs.get("cu_seq_lens_q"))
        kwargs.pop("cu_seq_lens_q", None)
        return sdpa_attention_forward(module, q, k, v, mask, **kwargs)

    AttentionInterface.register("moss_test_spy", spy)
    ref, model = split("qwen3", 2)
    model.config._attn_implementation = "moss_test_spy"
    cu = torch.tensor([0, 6], dtype=torch.int32)
    model(torch.randint(0, 98, (1, 6)), cu_seq_lens_q=cu)
    assert len(seen) == 2 + 2 * 2 and all(s is cu for s in seen)


@pytest.mark.parametrize("family", ["qwen3", "mistral"])
def test_cache_incremental_equals_full(family):
    _, model = split(family, 2)
    grid = mixed_grid(length=12)
    with torch.no_grad():
        full = model(grid)
        out = model(grid[:, :6], use_cache=True)
        cache = out.past_key_values
        steps = [out]
        for t in range(6, 12):
            step = model(grid[:, t : t + 1], past_key_values=cache, use_cache=True)
            steps.append(step)
        assert cache.get_seq_length() == 12 and len(cache.layers) == 2 + 2 * 2
    text = torch.cat([steps[0].text_logits] + [s.text_logits for s in steps[1:]], dim=1)
    speech = torch.cat([steps[0].speech_logits] + [s.speech_logits for s in steps[1:]], dim=1)
    torch.testing.assert_close(text, full.text_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(speech, full.speech_logits, rtol=1e-5, atol=1e-5)


def test_text_only_loss_equals_hf_loss():
    ref, model = split("qwen3", 2)
    ids = torch.randint(0, 98, (2, 9))
    labels = ids.clone()
    labels[0, :3] = -100
    with torch.no_grad():
        expected = ref(ids, labels=labels).loss
        out = model(ids, labels=labels)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.text_loss, expected)
    assert out.speech_loss.item() == 0.0


def test_grid_loss_is_token_weighted_over_channels():
    _, model = split("qwen3", 2)
    grid = mixed_grid()
    labels = grid.clone()
    labels[..., 1] = torch.where(grid[..., 1] == IDS.speech_pad, -100, grid[..., 1])
    labels[..., 0] = torch.where(grid[..., 0] == IDS.text_modality_pad, -100, grid[..., 0])
    with torch.no_grad():
        out = model(grid, labels=labels)
    tl, sl = out.text_logits[:, :-1], out.speech_logits[:, :-1]
    tt, st = labels[:, 1:, 0], labels[:, 1:, 1]
    t_sum = F.cross_entropy(tl.reshape(-1, 100), tt.reshape(-1), reduction="sum")
    # the speech loss is over the speech vocabulary (32), not the text one
    s_sum = F.cross_entropy(sl.reshape(-1, TINY_SPEECH_VOCAB), st.reshape(-1), reduction="sum")
    nt, ns = (tt != -100).sum(), (st != -100).sum()
    torch.testing.assert_close(out.text_loss, t_sum / nt)
    torch.testing.assert_close(out.speech_loss, s_sum / ns)
    torch.testing.assert_close(out.loss, (t_sum + s_sum) / (nt + ns))
    all_ignored = model(grid, labels=torch.full_like(labels, -100))
    assert all_ignored.loss.item() == 0.0 and not all_ignored.loss.isnan()


def test_fused_loss_matches_materialized():
    kernels = pytest.importorskip("kernels")
    if not hasattr(kernels, "fused_linear_cross_entropy"):
        pytest.skip("kernels.fused_linear_cross_entropy is not there yet")
    _, model = split("qwen3", 2)
    grid = mixed_grid()
    labels = grid.clone()
    labels[..., 0] = torch.where(grid[..., 0] == IDS.text_modality_pad, -100, grid[..., 0])
    model.train()
    expected = model(grid, labels=labels)
    expected.loss.backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.fused_loss = True
    got = model(grid, labels=labels)
    assert got.text_logits is None and got.speech_logits is None
    torch.testing.assert_close(got.loss, expected.loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.text_loss, expected.text_loss, rtol=1e-4, atol=1e-5)
    got.loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_split_out_of_range_names_the_valid_range():
    with pytest.raises(SplitError, match=r"split layer 5 is out of range: the trunk has 4 layers.*\[0, 4\]"):
        LayerSplitSpeechLM.from_text_model(tiny_text_model(), 5, TINY_SPEECH_VOCAB, IDS)
    with pytest.raises(SplitError, match=r"\[0, 4\]"):
        LayerSplitSpeechLM.from_text_model(tiny_text_model(), -1, TINY_SPEECH_VOCAB, IDS)


@pytest.mark.parametrize("missing", ["rotary_emb", "norm", "layers"])
def test_unsplittable_trunk_names_the_missing_module(missing):
    base = tiny_text_model()
    delattr(base.model, missing)
    with pytest.raises(SplitError, match=f"model.{missing}"):
        LayerSplitSpeechLM.from_text_model(base, 2, TINY_SPEECH_VOCAB, IDS)


def test_missing_lm_head_is_named():
    base = tiny_text_model()
    del base.lm_head
    with pytest.raises(SplitError, match="`lm_head`"):
        LayerSplitSpeechLM.from_text_model(base, 2, TINY_SPEECH_VOCAB, IDS)


def test_speech_vocab_too_small_for_special_ids():
    with pytest.raises(ValueError, match="speech_vocab_size=31"):
        LayerSplitSpeechLM.from_text_model(tiny_text_model(), 2, 31, IDS, router=DualBranchRouter())


def test_gradient_checkpointing_gives_the_same_gradients():
    _, model = split("qwen3", 2)
    model.train()
    grid = mixed_grid()
    labels = torch.where(grid == IDS.text_modality_pad, -100, grid)

    def grads():
        model.zero_grad(set_to_none=True)
        model(grid, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.gradient_checkpointing_enable()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["qwen3", "llama", "qwen2", "mistral"])
def test_layers_take_the_cache_under_the_name_we_pass(family):
    # Decoder layers swallow unknown keywords, so a renamed cache argument would silently disable KV caching.
    import inspect

    from moss_components.model.layer_split import CACHE_KWARG

    layer = tiny_text_model(family, num_layers=1).model.layers[0]
    assert CACHE_KWARG in inspect.signature(layer.forward).parameters
    assert CACHE_KWARG in inspect.signature(layer.self_attn.forward).parameters
