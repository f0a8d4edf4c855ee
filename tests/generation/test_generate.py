"""Generation: the modality state machine, cache == no cache, batch == alone, streaming, answer modes."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from scripted import EOS, IDS, chain_model  # noqa: E402

from moss_components.generation import SamplingConfig, generate, generate_steps, stream_speech  # noqa: E402
from moss_components.model import LayerSplitSpeechLM  # noqa: E402
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_text_model  # noqa: E402
from moss_components.routers import ModalityRoutedRouter, NoSplitRouter  # noqa: E402

GREEDY = SamplingConfig(greedy=True, max_new_tokens=40)
SOS, PAD, MPAD, EOSP = IDS.text_start_of_speech, IDS.speech_pad, IDS.text_modality_pad, IDS.speech_end_of_speech


def left_pad(prompts: list[list[int]]):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), 0)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    return ids, mask


def test_text_guided_answer_switches_to_speech_and_back():
    model = chain_model(switch_at=10, speech_len=3, stop_at=22)
    result = generate(model, torch.tensor([[5, 6, 7]]), config=GREEDY)
    assert result.text_ids == [[8, 9, 10, 20, 21, 22]]
    assert result.speech_ids == [[2, 3, 4]]
    answer = result.grid[0, 3:].tolist()
    assert answer == [
        [8, PAD], [9, PAD], [10, PAD], [SOS, PAD], [MPAD, 2], [MPAD, 3], [MPAD, 4], [MPAD, EOSP],
        [20, PAD], [21, PAD], [22, PAD], [EOS, PAD],
    ]  # fmt: skip
    assert result.stopped_on_eos.tolist() == [True] and result.new_tokens.tolist() == [12]


def test_text_free_answer_starts_in_speech():
    model = chain_model(speech_len=4, stop_at=21)
    result = generate(model, torch.tensor([[5, 6, 7]]), config=GREEDY, answer_mode="text_free")
    assert result.grid[0, 3].tolist() == [SOS, PAD]
    assert result.speech_ids == [[2, 3, 4, 5]] and result.text_ids == [[20, 21]]
    # a prompt that already ends in start-of-speech is the same request
    again = generate(model, torch.tensor([[5, 6, 7, SOS]]), config=GREEDY)
    assert torch.equal(again.grid, result.grid)


def test_max_new_tokens_stops_and_is_reported():
    model = chain_model(switch_at=90, stop_at=95)
    result = generate(model, torch.tensor([[5]]), config=SamplingConfig(greedy=True, max_new_tokens=7))
    assert result.text_ids == [[6, 7, 8, 9, 10, 11, 12]] and result.stopped_on_eos.tolist() == [False]


def test_speech_mode_never_samples_pad_or_ids_above_end_of_speech():
    """Even when the head prefers them: pad (31) and anything > end-of-speech are masked; so is the text modality
    pad in text mode."""
    model = chain_model()
    with torch.no_grad():
        model.speech_head.weight[PAD] = 100 * model.speech_head.weight[3]
        model.text_head.weight[MPAD] = 100 * model.text_head.weight[7]
    for step, _, _ in generate_steps(model, torch.tensor([[5, 6, SOS]]), config=GREEDY):
        assert step.speech[0] != PAD and step.text[0] != MPAD


@pytest.mark.parametrize("answer_mode", ["prompt", "text_free"])
def test_batch_equals_each_sample_alone_with_modality_switches_at_different_steps(answer_mode):
    model = chain_model(switch_at=12, speech_len=3, stop_at=23)
    prompts = [[5, 6, 7, 8], [10], [3, 4, 9, 10, 11], [2]]
    ids, mask = left_pad(prompts)
    batch = generate(model, ids, mask, GREEDY, answer_mode=answer_mode)
    switch_steps = set()
    for i, p in enumerate(prompts):
        alone = generate(model, torch.tensor([p]), config=GREEDY, answer_mode=answer_mode)
        assert batch.text_ids[i] == alone.text_ids[0]
        assert batch.speech_ids[i] == alone.speech_ids[0]
        n = int(alone.new_tokens[0])
        assert torch.equal(batch.grid[i, ids.shape[1] : ids.shape[1] + n], alone.grid[0, len(p) : len(p) + n])
        switch_steps.add(next(s for s, step in enumerate(alone.steps) if step.speech[0] >= 0))
    # the premise: in text-guided answers the samples switch to speech at different steps
    assert len(switch_steps) == (len(prompts) if answer_mode == "prompt" else 1)
    assert batch.speech_ids[0] == [2, 3, 4]


@pytest.mark.parametrize("router", [None, NoSplitRouter()], ids=["dual", "no-split"])
@pytest.mark.parametrize(
    "config",
    [SamplingConfig(greedy=True, max_new_tokens=10), SamplingConfig(seed=3, max_new_tokens=10)],
    ids=["greedy", "sampled"],
)
def test_cached_generation_equals_uncached(router, config):
    model = LayerSplitSpeechLM.from_text_model(tiny_text_model(), 2, TINY_SPEECH_VOCAB, IDS, router=router).eval()
    ids, mask = left_pad([[5, 6, 7, 30, 31], [40, 41]])
    for mode in ("prompt", "text_free"):
        cached = generate(model, ids, mask, config, answer_mode=mode)
        uncached = generate(model, ids, mask, SamplingConfig(**{**vars(config), "use_cache": False}), answer_mode=mode)
        assert torch.equal(cached.grid, uncached.grid)
        assert cached.speech_ids == uncached.speech_ids and cached.text_ids == uncached.text_ids


def test_cached_scripted_switching_equals_uncached():
    model = chain_model(switch_at=12, speech_len=3, stop_at=23)
    ids, mask = left_pad([[5, 6, 7, 8], [10]])
    a = generate(model, ids, mask, GREEDY)
    b = generate(model, ids, mask, SamplingConfig(greedy=True, max_new_tokens=40, use_cache=False))
    assert torch.equal(a.grid, b.grid) and a.speech_ids[0] == [2, 3, 4]


def test_modality_routed_router_generates_without_a_cache():
    model = chain_model(switch_at=10, speech_len=2, stop_at=21, router=ModalityRoutedRouter())
    result = generate(model, torch.tensor([[8, 9]]), config=GREEDY)
    assert result.speech_ids == [[2, 3]] and result.text_ids == [[10, 20, 21]]


def test_seeded_sampling_is_reproducible():
    model = LayerSplitSpeechLM.from_text_model(tiny_text_model(), 2, TINY_SPEECH_VOCAB, IDS).eval()
    prompt = torch.tensor([[5, 6, 7]])
    a = generate(model, prompt, config=SamplingConfig(seed=11, max_new_tokens=25), answer_mode="text_free")
    b = generate(model, prompt, config=SamplingConfig(seed=11, max_new_tokens=25), answer_mode="text_free")
    c = generate(model, prompt, config=SamplingConfig(seed=12, max_new_tokens=25), answer_mode="text_free")
    assert torch.equal(a.grid, b.grid) and not torch.equal(a.grid, c.grid)


@pytest.mark.parametrize("chunk_size", [1, 2])
def test_stream_speech_yields_the_answer_codes_in_chunks(chunk_size):
    model = chain_model(switch_at=10, speech_len=5, stop_at=22)
    prompt = torch.tensor([[5, 6, 7]])
    chunks = list(stream_speech(model, prompt, config=GREEDY, chunk_size=chunk_size))
    expected = generate(model, prompt, config=GREEDY, answer_mode="text_free").speech_ids[0]
    assert [c for chunk in chunks for c in chunk] == expected == [2, 3, 4, 5, 6]
    assert all(len(c) == chunk_size for c in chunks[:-1])
    with pytest.raises(ValueError, match="one sample"):
        next(stream_speech(model, torch.tensor([[5], [6]])))
