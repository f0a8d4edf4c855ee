"""The Table 6 freezing variants: which groups learn, the back-to-front thaw schedule, cheap re-application."""

import pytest
import torch

from moss_components.freezing import FreezeFull, FreezeLayerwise, FreezeShared, NoFreeze, pretrained_thaw_order
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_special_ids, tiny_text_model


def make(k=2, layers=4):
    return LayerSplitSpeechLM.from_text_model(
        tiny_text_model(num_layers=layers), k, TINY_SPEECH_VOCAB, tiny_special_ids()
    )


def prefixes(names):
    return {n.split(".")[0] + ("." + n.split(".")[1] if n.split(".")[1].isdigit() else "") for n in names}


def test_freeze_full_trains_only_speech_parts():
    model = make()
    FreezeFull().apply(model, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(FreezeFull().trainable_parameter_names(model, 0))
    assert prefixes(trainable) == {"speech_embed", "speech_layers.0", "speech_layers.1", "speech_norm", "speech_head"}


def test_freeze_shared_freezes_trunk_and_text_embedding():
    model = make()
    names = FreezeShared().trainable_parameter_names(model, 0)
    assert not any(n.startswith(("shared_layers.", "embed_tokens.")) for n in names)
    assert {"text_layers.0", "text_layers.1", "text_norm", "text_head", "speech_head"} <= prefixes(names)
    with_embedding = FreezeShared(freeze_text_embedding=False).trainable_parameter_names(model, 0)
    assert "embed_tokens.weight" in with_embedding


def test_no_freeze_trains_everything():
    model = make()
    assert set(NoFreeze().trainable_parameter_names(model, 0)) == {n for n, _ in model.named_parameters()}


def test_layerwise_thaws_back_to_front():
    model = make(k=2, layers=4)
    policy = FreezeLayerwise(thaw_every_steps=10)
    order = pretrained_thaw_order(model)
    assert order == [
        {"text_head", "text_norm"},
        {"text_branch.1"},
        {"text_branch.0"},
        {"shared.1"},
        {"shared.0"},
        {"text_embedding"},
    ]
    assert set(policy.trainable_parameter_names(model, 9)) == set(FreezeFull().trainable_parameter_names(model, 0))
    at_10 = prefixes(policy.trainable_parameter_names(model, 10)) - prefixes(
        FreezeFull().trainable_parameter_names(model, 0)
    )
    assert at_10 == {"text_head", "text_norm"}
    at_20 = prefixes(policy.trainable_parameter_names(model, 25))
    assert "text_layers.1" in at_20 and "text_layers.0" not in at_20
    assert set(policy.trainable_parameter_names(model, 60)) == set(NoFreeze().trainable_parameter_names(model, 0))
    policy.apply(model, 0)
    assert not model.text_head.weight.requires_grad
    policy.apply(model, 10)
    assert model.text_head.weight.requires_grad and not model.text_layers[1].mlp.up_proj.weight.requires_grad


def test_apply_is_a_no_op_when_nothing_changes(monkeypatch):
    model = make()
    policy = FreezeLayerwise(thaw_every_steps=100)
    policy.apply(model, 0)
    calls = []
    monkeypatch.setattr(torch.nn.Parameter, "requires_grad_", lambda self, v=True: calls.append(v), raising=False)
    for step in range(1, 50):
        policy.apply(model, step)
    assert calls == []


def test_freezing_clears_stale_gradients():
    model = make()
    NoFreeze().apply(model, 0)
    model.text_head.weight.grad = torch.ones_like(model.text_head.weight)
    FreezeFull().apply(model, 0)
    assert model.text_head.weight.grad is None


@pytest.mark.parametrize("bad", [dict(thaw_every_steps=0), dict(units_per_thaw=0), dict(start_step=-1)])
def test_layerwise_rejects_bad_schedules(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FreezeLayerwise(**bad)


def test_policies_are_selectable_by_class_path():
    from jsonargparse import ArgumentParser

    from moss_components.freezing import FreezingPolicy

    parser = ArgumentParser()
    parser.add_argument("--freezing", type=FreezingPolicy)
    cfg = parser.parse_args(
        ['--freezing={"class_path": "moss_components.freezing.FreezeLayerwise", "init_args": {"thaw_every_steps": 7}}']
    )
    policy = parser.instantiate_classes(cfg).freezing
    assert isinstance(policy, FreezeLayerwise) and policy.thaw_every_steps == 7
