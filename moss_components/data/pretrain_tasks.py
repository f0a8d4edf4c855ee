"""Grid builders of the pretraining tasks (PT-1, PT-2): small pure functions, one document each.

Every builder returns ``(input_ids (L, 2), labels (L, 2))`` long, unshifted labels (see ``grid.py``). Text is
tokenized with any HF tokenizer; speech ids are ``(n,)`` codes of one codebook.

=================  ==========================================================  =====================================
task               layout                                                      loss on
=================  ==========================================================  =====================================
speech-only        ``<sos> s1..sn <eos_s>``                                    speech ids and end-of-speech
interleaved        sentences alternating modality: ``t1 <sos> s2 <eos_s> t3``  everything (both channels)
asr                ``<sos> s1..sn <eos_s> transcript <eos_t>``                 transcript and text eos
tts                ``transcript <sos> s1..sn <eos_s>``                         start-of-speech, speech, end-of-speech
text (replay)      ``text <eos_t>``                                            everything
=================  ==========================================================  =====================================
"""

from __future__ import annotations

import torch

from moss_components.data.grid import Segment, build_grid, speech_segment, text_segment
from moss_components.special_ids import SpeechSpecialIds

PRETRAIN_TASKS = ("speech", "interleaved", "asr", "tts", "text")


def build_speech_only(speech_ids: torch.Tensor, special: SpeechSpecialIds) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech continuation: one speech segment; the opening token is the document's first (nothing predicts it)."""
    return build_grid([speech_segment(speech_ids, loss=True, open_loss=False)], special)


def build_asr(
    speech_ids: torch.Tensor, text: str, tokenizer, special: SpeechSpecialIds
) -> tuple[torch.Tensor, torch.Tensor]:
    """Speech -> text: the transcript (and text eos) follow the speech; loss on the text only."""
    return build_grid([speech_segment(speech_ids, loss=False), text_segment(tokenizer, text, eos=True)], special)


def build_tts(
    text: str, speech_ids: torch.Tensor, tokenizer, special: SpeechSpecialIds
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text -> speech: the speech (opened by start-of-speech, closed by end-of-speech) follows the transcript."""
    return build_grid([text_segment(tokenizer, text, loss=False), speech_segment(speech_ids, loss=True)], special)


def build_interleaved(
    sentences: list[tuple[str, torch.Tensor]],
    modalities: list[str],
    tokenizer,
    special: SpeechSpecialIds,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment-level alternation across sentences: sentence ``i`` appears as ``modalities[i]`` ("text"/"speech").

    Text sentences are joined with a space (the next one starts with " "); the document ends with text eos when its
    last sentence is text. Loss on everything but the first token.
    """
    if len(sentences) != len(modalities):
        raise ValueError(f"{len(sentences)} sentences but {len(modalities)} modalities")
    segs: list[Segment] = []
    for i, ((text, speech), mod) in enumerate(zip(sentences, modalities)):
        if mod == "text":
            segs.append(text_segment(tokenizer, (" " if i else "") + text, eos=i == len(sentences) - 1))
        elif mod == "speech":
            segs.append(speech_segment(speech, loss=True))
        else:
            raise ValueError(f"modality {mod!r}; expected 'text' or 'speech'")
    inp, lab = build_grid(segs, special)
    lab[0] = -100  # nothing predicts the first token
    return inp, lab


def build_text(text: str, tokenizer, special: SpeechSpecialIds) -> tuple[torch.Tensor, torch.Tensor]:
    """Text replay (PT-2): plain text and text eos, loss on all of it."""
    return build_grid([text_segment(tokenizer, text, eos=True)], special)


def alternating_modalities(n: int, start: str) -> list[str]:
    """``["text", "speech", "text", ...]`` of length ``n`` starting with ``start``."""
    other = {"text": "speech", "speech": "text"}[start]
    return [start if i % 2 == 0 else other for i in range(n)]


def build_asr_prompt(speech_ids: torch.Tensor, special: SpeechSpecialIds) -> torch.Tensor:
    """``(L, 2)`` prompt of :func:`build_asr` (the speech, closed): the model continues with the transcript."""
    return build_grid([speech_segment(speech_ids, loss=False)], special)[0]


def build_tts_prompt(text: str, tokenizer, special: SpeechSpecialIds) -> torch.Tensor:
    """``(L, 2)`` prompt of :func:`build_tts` (the text, then start-of-speech): the model continues with speech."""
    inp = build_grid([text_segment(tokenizer, text, loss=False)], special)[0]
    return torch.cat([inp, torch.tensor([[special.text_start_of_speech, special.speech_pad]])])
