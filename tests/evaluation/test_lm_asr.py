"""Does the LM read speech: its greedy transcripts follow the ASR layout, and the speech gain is 0 exactly when the
speech cannot reach the text (all speech ids embed alike) and not otherwise."""

import torch

from moss_components.data.pretrain_tasks import build_asr_prompt
from moss_components.evaluation.lm_asr import asr_text_loss, lm_asr_figures, lm_transcribe
from moss_components.evaluation.spoken_qa import left_pad
from moss_components.generation import SamplingConfig, generate
from moss_components.model import LayerSplitSpeechLM
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import ConfigTrunk

CONFIG = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
CODES = 16


def _model():
    torch.manual_seed(0)
    trunk = ConfigTrunk(CONFIG, tokenizer="char")
    tok = trunk.load_tokenizer()
    ids = SpeechSpecialIds.from_tokenizer(tok, CODES)
    return LayerSplitSpeechLM.from_text_model(trunk.load(), 1, ids.speech_vocab_size, ids).eval(), tok


def _pairs(n=4, same_length=False):
    g = torch.Generator().manual_seed(1)
    texts = ["paris is the capital of france", "two plus two is four", "the sky is blue", "rome"]
    return [(texts[i % 4], torch.randint(0, CODES, (8 if same_length else 5 + 3 * i,), generator=g)) for i in range(n)]


def test_transcripts_continue_the_asr_prompt_and_batching_does_not_change_them():
    model, tok = _model()
    speech = [s for _, s in _pairs()]
    batched = lm_transcribe(model, tok, speech, batch_size=4, max_new_tokens=6)
    config = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=6)
    for s, text in zip(speech, batched):
        grid, mask = left_pad([build_asr_prompt(s, model.special_ids)], 0, model.special_ids.speech_pad)
        alone = generate(model, grid, mask, config).text_ids[0]
        assert text == tok.decode(alone, skip_special_tokens=True).strip()


def test_speech_gain_is_zero_when_the_speech_cannot_reach_the_text():
    model, tok = _model()
    pairs = _pairs(same_length=True)  # so that only the ids differ
    figures = lm_asr_figures(model, tok, pairs, max_new_tokens=4)
    assert figures["lm_asr_n"] == 4 and 0.0 <= figures["lm_asr_cer"] and abs(figures["lm_asr_speech_gain"]) > 1e-4
    own = asr_text_loss(model, tok, pairs[0][1], pairs[0][0])
    assert own > 0
    with torch.no_grad():
        model.speech_embed.weight[:CODES] = model.speech_embed.weight[0]  # every code embeds alike
    blind = lm_asr_figures(model, tok, pairs, max_new_tokens=4)
    assert abs(blind["lm_asr_speech_gain"]) < 1e-5, blind


def test_no_items_gives_no_figures():
    model, tok = _model()
    assert lm_asr_figures(model, tok, []) == {"lm_asr_cer": None, "lm_asr_speech_gain": None, "lm_asr_n": 0}
