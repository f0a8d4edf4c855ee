"""Routers: modality-routed agrees with dual-branch where it computes; no-split is one stack with a joint softmax."""

import copy

import pytest
import torch
import torch.nn.functional as F

from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_special_ids, tiny_text_model
from moss_components.routers import DualBranchRouter, ModalityRoutedRouter, NoSplitRouter
from moss_components.routers.modality_routed import compact_positions

IDS = tiny_special_ids()


def pair(family="qwen3", k=2, attn="sdpa"):
    """A dual-branch and a modality-routed model with the same weights (the speech branch perturbed)."""
    dual = LayerSplitSpeechLM.from_text_model(
        tiny_text_model(family, attn_implementation=attn), k, TINY_SPEECH_VOCAB, IDS
    )
    with torch.no_grad():
        for p in dual.speech_layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    routed = copy.deepcopy(dual)
    routed.router = ModalityRoutedRouter()
    return dual.eval(), routed.eval()


def speech_grid(batch=2, length=9, start=True):
    speech = torch.randint(0, 30, (batch, length))
    text = torch.full_like(speech, IDS.text_modality_pad)
    if start:
        text[:, 0] = IDS.text_start_of_speech
        speech[:, 0] = IDS.speech_pad
    return torch.stack([text, speech], dim=-1)


def test_compact_positions():
    select = torch.tensor([[True, False, True, False], [False, False, False, True]])
    index, valid = compact_positions(select)
    assert index[0].tolist() == [0, 2] and index[1, 0].item() == 3
    assert valid.tolist() == [[True, True], [True, False]]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_modality_routed_equals_dual_branch_on_single_route_sequences(family, attn):
    dual, routed = pair(family, attn=attn)
    text = torch.randint(2, 98, (2, 9))
    mask = torch.ones_like(text)
    mask[0, :2] = 0
    speech = speech_grid()
    with torch.no_grad():
        d, r = dual(text, attention_mask=mask), routed(text, attention_mask=mask)
        torch.testing.assert_close(r.text_logits, d.text_logits, rtol=0, atol=1e-6)
        assert r.text_computed.all() and not r.speech_computed.any()
        assert (r.speech_logits == 0).all()
        d, r = dual(speech), routed(speech)
        torch.testing.assert_close(r.speech_logits, d.speech_logits, rtol=0, atol=1e-6)
        assert r.speech_computed.all()


def test_modality_routed_agrees_up_to_the_first_route_switch_and_routes_by_predicted_modality():
    dual, routed = pair()
    text = torch.randint(2, 98, (2, 12))
    speech = torch.full_like(text, IDS.speech_pad)
    text[:, 5] = IDS.text_start_of_speech
    text[:, 6:10] = IDS.text_modality_pad
    speech[:, 6:9] = torch.randint(0, 30, (2, 3))
    speech[:, 9] = IDS.speech_end_of_speech
    grid = torch.stack([text, speech], dim=-1)
    with torch.no_grad():
        d, r = dual(grid), routed(grid)
    # position 5 (start-of-speech) predicts speech; 9 (end-of-speech) predicts text again
    expected_speech = torch.zeros(2, 12, dtype=torch.bool)
    expected_speech[:, 5:9] = True
    assert torch.equal(r.speech_computed, expected_speech)
    torch.testing.assert_close(r.text_logits[:, :5], d.text_logits[:, :5], rtol=0, atol=1e-6)
    # from the switch on, a branch sees only its own route's positions (the trunk saw everything)
    assert not torch.allclose(r.speech_logits[:, 5], d.speech_logits[:, 5])


def test_modality_routed_packed_equals_each_document_alone():
    _, routed = pair()
    a, b = speech_grid(1, 5), torch.randint(2, 98, (1, 6))
    b = torch.stack([b, torch.full_like(b, IDS.speech_pad)], dim=-1)
    packed = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(5), torch.arange(6)]).unsqueeze(0)
    with torch.no_grad():
        got = routed(packed, position_ids=positions)
        torch.testing.assert_close(got.speech_logits[:, :5], routed(a).speech_logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(got.text_logits[:, 5:], routed(b).text_logits, rtol=0, atol=1e-6)


def test_modality_routed_trains_each_branch_only_from_its_positions():
    _, routed = pair()
    routed.train()
    text = torch.randint(2, 98, (2, 8))
    out = routed(text, labels=text)
    out.loss.backward()
    assert all(p.grad is None or (p.grad == 0).all() for p in routed.speech_layers.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in routed.text_layers.parameters())
    with pytest.raises(ValueError, match="does not support a KV cache"):
        routed(text, use_cache=True)


def test_no_split_is_one_stack_with_text_logits_of_the_base():
    base = tiny_text_model()
    reference = copy.deepcopy(base)
    model = LayerSplitSpeechLM.from_text_model(base, 2, TINY_SPEECH_VOCAB, IDS, router=NoSplitRouter()).eval()
    assert model.speech_layers is None and model.speech_norm is None
    ids = torch.randint(0, 98, (2, 7))
    with torch.no_grad():
        out = model(ids)
        assert torch.equal(out.text_logits, reference(ids).logits)
        assert out.speech_logits.shape == (2, 7, TINY_SPEECH_VOCAB)


def test_no_split_loss_is_one_softmax_over_the_appended_vocabulary():
    model = LayerSplitSpeechLM.from_text_model(tiny_text_model(), 2, TINY_SPEECH_VOCAB, IDS, router=NoSplitRouter())
    grid = speech_grid(2, 8)
    grid[:, 6, 0] = 5  # a text token inside, to have labels on both channels
    grid[:, 6, 1] = IDS.speech_pad
    labels = grid.clone()
    labels[..., 0] = torch.where(grid[..., 0] >= 98, -100, grid[..., 0])
    labels[..., 1] = torch.where(grid[..., 1] == IDS.speech_pad, -100, grid[..., 1])
    out = model(grid, labels=labels)
    joint = torch.cat([out.text_logits, out.speech_logits], dim=-1)[:, :-1].reshape(-1, 100 + TINY_SPEECH_VOCAB)
    # speech id s is joint id V_text + s
    targets = torch.where(labels[:, 1:, 1] >= 0, labels[:, 1:, 1] + 100, labels[:, 1:, 0]).reshape(-1)
    torch.testing.assert_close(out.loss, F.cross_entropy(joint, targets))


def test_routers_are_selectable_by_class_path():
    from jsonargparse import ArgumentParser

    from moss_components.routers import SpeechLMRouter

    parser = ArgumentParser()
    parser.add_argument("--router", type=SpeechLMRouter)
    for cls in (DualBranchRouter, ModalityRoutedRouter, NoSplitRouter):
        cfg = parser.parse_args([f"--router={{'class_path': '{cls.__module__}.{cls.__name__}'}}"])
        router = parser.instantiate_classes(cfg).router
        assert type(router) is cls
