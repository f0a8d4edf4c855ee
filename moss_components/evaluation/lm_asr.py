"""Does the speech LM read speech? Its own transcription of read speech, scored two ways.

- ``lm_asr_cer``: the LM is given ``<sos> speech <eos_s>`` (the ASR layout of PT-1 / PT-2) and greedily continues in
  text; the transcript's character error rate against the reference.
- ``lm_asr_speech_gain``: the ASR text loss (nats per text token, teacher-forced) of each transcript after *another*
  utterance's speech minus after its own. Near 0 means the LM predicts transcripts from its text prior alone and
  ignores the speech, which no amount of SFT on spoken questions can make up for.

Both use ``read/{split}`` (test: voices never heard in training).
"""

from __future__ import annotations

import random

import torch

from moss_components.asr.ctc_vocab import cer, normalize_text
from moss_components.data.pretrain_tasks import build_asr, build_asr_prompt
from moss_components.evaluation.spoken_qa import left_pad
from moss_components.generation import SamplingConfig, generate


@torch.no_grad()
def lm_transcribe(model, tokenizer, speech: list[torch.Tensor], batch_size: int = 16, max_new_tokens: int = 120):
    """Greedy transcripts of ``(T,)`` speech-id sequences by the speech LM (the ASR layout of pretraining)."""
    special = model.special_ids
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    config = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    out = []
    for i in range(0, len(speech), batch_size):
        prompts = [build_asr_prompt(s, special) for s in speech[i : i + batch_size]]
        grid, mask = left_pad(prompts, pad, special.speech_pad)
        result = generate(model, grid, mask, config)
        out += [tokenizer.decode(t, skip_special_tokens=True).strip() for t in result.text_ids]
    return out


@torch.no_grad()
def asr_text_loss(model, tokenizer, speech: torch.Tensor, text: str) -> float:
    """Teacher-forced text loss (nats per token) of ``text`` after ``speech`` in the ASR layout."""
    inp, lab = build_asr(speech, text, tokenizer, model.special_ids)
    return float(model(inp[None], labels=lab[None]).text_loss)


def lm_asr_figures(
    model,
    tokenizer,
    pairs: list[tuple[str, torch.Tensor]],
    max_items: int | None = 64,
    seed: int = 0,
    max_new_tokens: int = 120,
) -> dict:
    """``{"lm_asr_cer", "lm_asr_speech_gain", "lm_asr_n"}`` over ``[(transcript, speech ids (T,))]``.

    The speech gain pairs item ``i``'s transcript with item ``i + 1``'s speech (cyclically), so it needs 2 items.
    """
    if max_items is not None and len(pairs) > max_items:
        pairs = random.Random(seed).sample(pairs, max_items)
    if not pairs:
        return {"lm_asr_cer": None, "lm_asr_speech_gain": None, "lm_asr_n": 0}
    texts = [normalize_text(t) for t, _ in pairs]
    hyps = lm_transcribe(model, tokenizer, [s for _, s in pairs], max_new_tokens=max_new_tokens)
    gain = None
    if len(pairs) > 1:
        own = [asr_text_loss(model, tokenizer, s, t) for t, s in zip(texts, (s for _, s in pairs))]
        other = [asr_text_loss(model, tokenizer, pairs[(i + 1) % len(pairs)][1], t) for i, t in enumerate(texts)]
        gain = sum(other) / len(other) - sum(own) / len(own)
    return {"lm_asr_cer": cer([normalize_text(h) for h in hyps], texts), "lm_asr_speech_gain": gain,
            "lm_asr_n": len(pairs)}  # fmt: skip
