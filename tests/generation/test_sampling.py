"""Sampling against transformers' own logits processors (repetition penalty, temperature, top-k, top-p)."""

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from moss_components.generation import SamplingConfig, process_logits, sample_next


def hf_chain(config: SamplingConfig) -> LogitsProcessorList:
    return LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(config.repetition_penalty),
            TemperatureLogitsWarper(config.temperature),
            TopKLogitsWarper(config.top_k),
            TopPLogitsWarper(config.top_p),
        ]
    )


@pytest.mark.parametrize(
    "config",
    [SamplingConfig(), SamplingConfig(temperature=1.3, top_p=0.5, top_k=50, repetition_penalty=1.5)],
    ids=["moss-defaults", "other"],
)
def test_processing_equals_transformers_processors(config):
    logits = torch.randn(4, 97) * 3
    history = torch.randint(0, 97, (4, 12))
    seen = torch.zeros(4, 97, dtype=torch.bool).scatter_(1, history, True)
    expected = hf_chain(config)(history, logits.clone())
    got = process_logits(logits, seen, config)
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    torch.testing.assert_close(got[~got.isinf()], expected[~expected.isinf()])


def test_defaults_are_the_papers():
    c = SamplingConfig()
    assert (c.temperature, c.top_p, c.top_k, c.repetition_penalty, c.max_new_tokens, c.greedy) == (
        0.6, 0.95, 20, 1.1, 500, False
    )  # fmt: skip


def test_greedy_and_top_k_1_agree_and_respect_the_penalty():
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    seen = torch.tensor([[True, False, False]])
    greedy = SamplingConfig(greedy=True, repetition_penalty=1.1)
    assert sample_next(logits, seen, greedy, None).item() == 1  # 2.0 / 1.1 < 1.9
    top1 = SamplingConfig(top_k=1, repetition_penalty=1.1)
    assert sample_next(logits, seen, top1, torch.Generator().manual_seed(0)).item() == 1


def test_seeded_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, 3)
    config = SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0)
    seen = torch.zeros(4000, 3, dtype=torch.bool)
    draws = sample_next(logits, seen, config, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03, rtol=0)
    again = sample_next(logits, seen, config, torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(temperature=0), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(repetition_penalty=0.5), "repetition_penalty"),
        (dict(max_new_tokens=0), "max_new_tokens"),
    ],
)
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**bad)
