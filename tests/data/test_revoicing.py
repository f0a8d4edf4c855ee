import random

import pytest
import torch

from moss_components.data.random_variants import VARIANT_SLOT
from moss_components.data.revoicing import Revoicer
from moss_components.data.voices import UNSEEN_LANGUAGES, UNSEEN_VARIANTS, train_pool


def test_revoiced_speech_is_the_text_in_a_training_voice(espeak_calls):
    revoice = Revoicer("wide", sample_rate=16000)
    rng = random.Random(0)
    clips = [revoice("the capital of france is paris", rng) for _ in range(20)]
    question = revoice("what is the capital of france", rng, question=True)
    assert [t for t, _ in espeak_calls] == ["the capital of france is paris."] * 20 + ["what is the capital of france?"]
    names = set(train_pool(wide=True).names)
    voices = [v for _, v in espeak_calls]
    assert all(v.name in names for v in voices) and len({v.name for v in voices}) > 10
    assert not any(v.variant in UNSEEN_VARIANTS or v.language in UNSEEN_LANGUAGES for v in voices)
    for wav in clips + [question]:
        assert wav.dtype == torch.float32 and wav.ndim == 1 and wav.abs().max() <= 1.0
        assert 0.8 < wav.numel() / 16000 < 4.0  # ~2 s of speech at 135-200 words per minute
        assert wav.pow(2).mean().sqrt() > 0.01  # not silence
    assert len({w.numel() for w in clips}) > 10  # voices and rates differ


def test_random_timbres_share_the_slot_variant(espeak_calls):
    rng = random.Random(0)
    for share, expected in ((1.0, 20), (0.0, 0)):
        espeak_calls.clear()
        revoice = Revoicer("tiny", random_timbres=share)
        for _ in range(20):
            revoice("a tomato is red", rng)
        assert sum(v.variant == VARIANT_SLOT for _, v in espeak_calls) == expected
    assert all(v.language in train_pool().languages for _, v in espeak_calls)


def test_revoicer_rejects_an_unknown_pool_and_a_share_outside_0_1():
    with pytest.raises(ValueError, match="voices 'unseen': expected 'tiny', 'wide' or a VoicePool"):
        Revoicer("unseen")
    with pytest.raises(ValueError, match="random_timbres 2: expected a share in"):
        Revoicer("wide", random_timbres=2)


def test_revoicing_a_corpus_of_other_voices_is_refused():
    rows = [{"voice": "en-us+m3"}, {"voice": "speaker-17"}, {"voice": "speaker-17"}, {}]
    with pytest.raises(
        ValueError,
        match=r"3 of 4 rows of corpus/train.jsonl have other voices \(most often "
        r"'speaker-17', 2 rows\); set revoice 0",
    ):
        Revoicer.check_corpus(rows, "corpus/train.jsonl")
    Revoicer.check_corpus([{"voice": "en-us+m3"}, {"voice": "en-gb-scotland+Alex"}], "built-in")
