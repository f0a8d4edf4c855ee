"""A run directory with tiny random parts, saved the way the pipeline saves them, for chat and bench tests.

The speech LM is a real tiny ``LayerSplitSpeechLM`` whose greedy next token is scripted by the last input token
(as in tests/generation/scripted.py): with embeddings scaled up, the final hidden state points along the last
token's embedding, and head rows built from those directions pick the next token. So the answer is known:

- text-guided: after the prompt's closing newline it writes "paris", then start-of-speech;
- both modes: the speech answer is codes 2, 3, ..., ``LAST_CODE``, then end-of-speech, then ``<|im_end|>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from moss_components.asr import CTCRecognizer
from moss_components.checkpoints import save_moss_speech
from moss_components.decoders import FlowMatchingDecoder
from moss_components.evaluation.run_layout import RunLayout
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import script_next_tokens, tiny_text_model
from moss_components.quantizers import CosineVQ
from moss_components.special_ids import SpeechSpecialIds
from moss_components.text.char_tokenizer import build_char_tokenizer
from moss_components.tokenizers import SemanticVQTokenizer
from moss_components.tokenizers.pretrained import save_pretrained
from moss_components.vocoders import VocosVocoder

CODES = 64
FIRST_CODE, LAST_CODE = 2, 21  # a 20-id answer: five decoder chunks of 4 ids (+ 2 look-ahead)
TEXT_ANSWER = "paris"


def scripted_speech_lm(tokenizer) -> tuple[LayerSplitSpeechLM, SpeechSpecialIds]:
    ids = SpeechSpecialIds.from_tokenizer(tokenizer, CODES)
    vocab = tokenizer.get_vocab()
    base = tiny_text_model("qwen3", num_layers=3, hidden_size=64, seed=7, vocab_size=len(tokenizer))
    model = LayerSplitSpeechLM.from_text_model(base, 1, ids.speech_vocab_size, ids).eval()
    text_next = {vocab["\n"]: vocab[TEXT_ANSWER[0]]}
    for a, b in zip(TEXT_ANSWER, TEXT_ANSWER[1:]):
        text_next[vocab[a]] = vocab[b]
    text_next[vocab[TEXT_ANSWER[-1]]] = ids.text_start_of_speech
    speech_next = {c: c + 1 for c in range(FIRST_CODE, LAST_CODE)}
    speech_next[LAST_CODE] = ids.speech_end_of_speech
    script_next_tokens(model, text_next, speech_next, vocab["<|im_end|>"], FIRST_CODE)
    return model, ids


def make_run(root: Path, judge: bool = True) -> RunLayout:
    """Write tokenizer, decoder, vocoder, judge and an SFT export under ``root``; returns its layout."""
    torch.manual_seed(0)
    layout = RunLayout(root)
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, quantizer=CosineVQ(64, CODES))
    save_pretrained(tok.eval(), layout.export("tokenizer"))
    dec = FlowMatchingDecoder(
        codebook_size=CODES,
        dim=32,
        heads=2,
        encoder_depth=1,
        estimator_depth=1,
        steps=2,
        chunk_tokens=4,
        lookahead_tokens=2,
    )
    save_pretrained(dec.eval(), layout.decoder)
    save_pretrained(VocosVocoder(dim=32, depth=2).eval(), layout.vocoder)
    if judge:
        save_pretrained(CTCRecognizer(n_mels=32, dim=32, depth=1, heads=2, head_depth=1).eval(), layout.export("judge"))
    text_tokenizer = build_char_tokenizer()
    model, _ = scripted_speech_lm(text_tokenizer)
    save_moss_speech(model, layout.export("sft"))
    text_tokenizer.save_pretrained(layout.export("sft"))
    return layout


def write_question(path: Path, rate: int = 16000, seconds: float = 1.0, channels: int = 1, subtype: str = "FLOAT"):
    """A chirp-like test question: ``channels`` channels at ``rate`` Hz."""
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    data = np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    sf.write(str(path), data.astype(np.float32), rate, subtype=subtype)
    return path
