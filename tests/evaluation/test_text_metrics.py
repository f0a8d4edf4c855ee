import math

import pytest
import torch

from moss_components.evaluation.text_metrics import text_logits_equal, text_perplexity
from moss_components.model import LayerSplitSpeechLM
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import ConfigTrunk

CONFIG = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
LINES = ["paris is the capital of france.", "two plus two is four.", "the sky is blue."]


def _setup():
    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    base = trunk.load()
    ids = SpeechSpecialIds.from_tokenizer(tok, 16)
    split = LayerSplitSpeechLM.from_text_model(trunk.load(), 2, ids.speech_vocab_size, ids).eval()
    return tok, base, split


def test_perplexity_matches_transformers_own_loss():
    tok, base, split = _setup()
    # one line at a time: transformers' mean loss over its tokens is the per-line reference
    for line in LINES:
        ids = torch.tensor([tok(line)["input_ids"]])
        reference = math.exp(base(input_ids=ids, labels=ids).loss.item())
        assert text_perplexity(base, tok, [line]) == pytest.approx(reference, rel=1e-5)
        assert text_perplexity(split, tok, [line]) == pytest.approx(reference, rel=1e-5)


def test_padding_does_not_change_perplexity():
    tok, base, _ = _setup()
    together = text_perplexity(base, tok, LINES, batch_size=3)
    total, count = 0.0, 0
    for line in LINES:
        n = len(tok(line)["input_ids"]) - 1
        total += math.log(text_perplexity(base, tok, [line])) * n
        count += n
    assert together == pytest.approx(math.exp(total / count), rel=1e-5)


def test_text_logits_equal_detects_a_changed_text_path():
    tok, base, split = _setup()
    assert text_logits_equal(split, base, tok, LINES)
    with torch.no_grad():
        split.text_layers[0].mlp.down_proj.weight[0, 0] += 1e-3
    assert not text_logits_equal(split, base, tok, LINES)
