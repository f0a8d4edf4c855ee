"""THE INVARIANT: under FP-Full (PT-1), the text logits of any text input stay bit-identical to the base model's,
before and after AdamW steps with weight decay, for transformers' own Qwen3 and Llama at several split points."""

import copy

import pytest
import torch

from moss_components.freezing import FreezeFull
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_special_ids, tiny_text_model

IDS = tiny_special_ids()


def training_batch(seed: int):
    """A grid with text and speech segments and labels on both channels."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(2, 98, (2, 10), generator=g)
    speech = torch.full_like(text, IDS.speech_pad)
    text[:, 2] = IDS.text_start_of_speech
    text[:, 3:8] = IDS.text_modality_pad
    speech[:, 3:7] = torch.randint(0, 30, (2, 4), generator=g)
    speech[:, 7] = IDS.speech_end_of_speech
    grid = torch.stack([text, speech], dim=-1)
    labels = grid.clone()
    labels[..., 0] = torch.where(text == IDS.text_modality_pad, -100, text)
    labels[..., 1] = torch.where(speech == IDS.speech_pad, -100, speech)
    return grid, labels


@pytest.mark.parametrize("family", ["qwen3", "llama"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("k", [1, 3])
def test_text_logits_bit_identical_after_adamw_steps_under_freeze_full(family, attn, k):
    base = tiny_text_model(family, num_layers=4, attn_implementation=attn)
    reference = copy.deepcopy(base)
    model = LayerSplitSpeechLM.from_text_model(base, k, TINY_SPEECH_VOCAB, IDS)
    policy = FreezeFull()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    probe = torch.randint(0, 98, (3, 11))
    probe_mask = torch.ones_like(probe)
    probe_mask[2, :4] = 0

    def text_logits():
        model.eval()
        with torch.no_grad():
            return model(probe, attention_mask=probe_mask).text_logits

    with torch.no_grad():
        expected = reference(probe, attention_mask=probe_mask).logits
    assert torch.equal(text_logits(), expected)
    speech_before = copy.deepcopy(model.speech_head.state_dict())

    model.train()
    for step in range(3):
        policy.apply(model, step)
        grid, labels = training_batch(step)
        out = model(grid, labels=labels)
        out.loss.backward()
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        assert frozen and all(dict(model.named_parameters())[n].grad is None for n in frozen)
        optimizer.step()
        optimizer.zero_grad()

    assert torch.equal(text_logits(), expected)
    # the speech side did learn, and only trainable parameters carry optimizer state
    assert not torch.equal(model.speech_head.weight, speech_before["weight"])
    with_state = {n for n, p in model.named_parameters() if p in optimizer.state}
    assert with_state == set(policy.trainable_parameter_names(model, 2))
    assert all(n.startswith(("speech_embed.", "speech_layers.", "speech_norm.", "speech_head.")) for n in with_state)
