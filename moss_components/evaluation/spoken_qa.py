"""Spoken question answering, scored the way the paper does: the answer's content must be right.

Each test question is put to the model in one of the SFT modes (the system prompt selects it). A text answer is
matched directly; a spoken answer is decoded to audio, transcribed by an ASR judge that is not the model under
test, and then matched. For the fixed assistant voice the generated speech ids are also compared with the ids of
the reference answer's audio (exact match).

The judge is a character CTC model: it hears "delhi" and may write "delly", which no normalization matches. Given
``answer_candidates`` (every answer sentence the corpus has, "the answer is new delhi" ...), it transcribes a spoken
answer as the most likely of them (closed-vocabulary recognition, the role a lexicon and language model play in a
full ASR system), and that transcript is scored; the open, greedy transcript is scored beside it
(``correct_open``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from moss_components.data.sft import build_sft_prompt, mode_io
from moss_components.evaluation.answers import answer_is_correct
from moss_components.evaluation.speech_output import SpeechOutput
from moss_components.generation import SamplingConfig, generate
from moss_components.model import LayerSplitSpeechLM


@dataclass
class QAItem:
    """One question. ``question_speech`` ``(T,)`` ids is needed for spoken-question modes."""

    id: str
    question_text: str
    answer: str
    question_speech: torch.Tensor | None = None
    answer_speech: torch.Tensor | None = None
    tags: dict = field(default_factory=dict)


@dataclass
class QAAnswer:
    item: QAItem
    mode: str
    text: str
    speech_ids: list[int]
    transcript: str | None
    correct: bool
    ids_exact_match: bool | None
    open_transcript: str | None = None  # spoken answers under closed-set judging: the judge's greedy transcript
    correct_open: bool | None = None


def left_pad(prompts: list[torch.Tensor], text_pad: int, speech_pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_i, 2)`` prompts -> a left-padded ``(B, L, 2)`` grid and its ``(B, L)`` attention mask."""
    width = max(p.shape[0] for p in prompts)
    grid = torch.empty(len(prompts), width, 2, dtype=torch.long)
    grid[..., 0], grid[..., 1] = text_pad, speech_pad
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for b, p in enumerate(prompts):
        grid[b, width - p.shape[0] :] = p
        mask[b, width - p.shape[0] :] = 1
    return grid, mask


@torch.no_grad()
def answer_questions(
    model: LayerSplitSpeechLM,
    tokenizer,
    items: list[QAItem],
    mode: str,
    speech: SpeechOutput | None = None,
    sampling: SamplingConfig | None = None,
    batch_size: int = 16,
    progress: bool = True,
    answer_candidates: list[str] | None = None,
) -> list[QAAnswer]:
    """Ask every item in ``mode`` (``t2t``, ``s2t``, ``t2s``, ``s2s``, ``t2s_guided``, ``s2s_guided``) and score it.

    Spoken answers need ``speech`` (decoder, vocoder and judge); with ``answer_candidates`` the judge picks the most
    likely of those sentences (module docstring). Greedy decoding without repetition penalty unless ``sampling``
    says otherwise.
    """
    _, out_modality, _ = mode_io(mode)
    if out_modality == "speech" and (speech is None or speech.judge is None):
        raise ValueError(f"mode {mode!r} answers in speech: pass speech=SpeechOutput(decoder, vocoder, judge)")
    sampling = sampling or SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=120)
    special = model.special_ids
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    answers: list[QAAnswer] = []
    for i in tqdm(range(0, len(items), batch_size), desc=f"qa {mode}", disable=not progress, leave=False):
        chunk = items[i : i + batch_size]
        prompts = [
            build_sft_prompt(tokenizer, special, mode, it.question_text, it.question_speech, model.system_prompts)
            for it in chunk
        ]
        grid, mask = left_pad(prompts, pad, special.speech_pad)
        result = generate(model, grid, mask, sampling)
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in result.text_ids]
        transcripts: list[str | None] = [None] * len(chunk)
        open_transcripts: list[str | None] = [None] * len(chunk)
        if out_modality == "speech":
            wavs = speech.speak(result.speech_ids)
            if answer_candidates is None:
                transcripts = speech.transcribe(wavs)
            else:
                open_transcripts, transcripts = speech.transcribe_greedy_and_closed(wavs, answer_candidates)
        for it, text, sp, tr, open_tr in zip(chunk, texts, result.speech_ids, transcripts, open_transcripts):
            said = tr if out_modality == "speech" else text
            exact = None
            if out_modality == "speech" and it.answer_speech is not None:
                exact = sp == it.answer_speech.tolist()
            answer = QAAnswer(it, mode, text, sp, tr, answer_is_correct(said, it.answer), exact)
            if open_tr is not None:
                answer.open_transcript, answer.correct_open = open_tr, answer_is_correct(open_tr, it.answer)
            answers.append(answer)
    return answers


def summarize(answers: list[QAAnswer]) -> dict:
    """Accuracy overall and per tag value (e.g. ``heldout``, ``unseen_voice``), plus the ids exact-match rate and,
    under closed-set judging, the accuracy of the judge's open transcripts (``accuracy_open``)."""
    if not answers:
        raise ValueError("no answers to summarize")
    out = {"n": len(answers), "accuracy": sum(a.correct for a in answers) / len(answers)}
    opened = [a.correct_open for a in answers if a.correct_open is not None]
    if opened:
        out["accuracy_open"] = sum(opened) / len(opened)
    exact = [a.ids_exact_match for a in answers if a.ids_exact_match is not None]
    if exact:
        out["ids_exact_match"] = sum(exact) / len(exact)
    for tag in sorted({k for a in answers for k in a.item.tags}):
        for value in sorted({a.item.tags.get(tag) for a in answers}, key=str):
            group = [a for a in answers if a.item.tags.get(tag) == value]
            out[f"accuracy[{tag}={value}]"] = sum(a.correct for a in group) / len(group)
            out[f"n[{tag}={value}]"] = len(group)
    return out
