"""SFT dialogues and evaluation prompts with the text tokenizer's own chat template.

The system prompt selects the modality combination (MOSS-Speech's recipe):

===============  ===========================  ==========================================================
mode             user turn                    assistant turn
===============  ===========================  ==========================================================
``t2t``          text question                text answer
``s2t``          spoken question              text answer
``t2s``          text question                text-free spoken answer (the prompt ends in start-of-speech)
``s2s``          spoken question              text-free spoken answer (the prompt ends in start-of-speech)
``t2s_guided``   text question                text answer, then the same answer spoken
``s2s_guided``   spoken question              text answer, then the same answer spoken
===============  ===========================  ==========================================================

The prompts above are the defaults. A model can be trained with its own (``SpeechLMModule(system_prompts=...)``,
e.g. the tiny preset's three-character tags, which cost 3 tokens instead of ~45 in a character vocabulary); they are
saved with its weights (``LayerSplitSpeechLM.system_prompts``), and evaluation and chat prompt it with them.

The conversation is rendered with ``tokenizer.apply_chat_template`` around placeholder contents and cut at the
placeholders, so any HF chat template works (ChatML of the built-in char tokenizer, SmolLM2, Qwen). Loss falls on
the assistant turn only: its content and the template text that closes it (``<|im_end|>`` in ChatML).
:func:`build_sft_prompt` gives exactly the prefix :func:`build_sft_example` trains on, for generation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from moss_components.data.grid import Segment, build_grid, speech_segment, text_segment
from moss_components.special_ids import SpeechSpecialIds

SYSTEM_PROMPTS = {
    "t2t": "read the question and answer in text.",
    "s2t": "listen to the question and answer in text.",
    "t2s": "read the question and answer in speech.",
    "s2s": "listen to the question and answer in speech.",
    "t2s_guided": "read the question and answer in text, then in speech.",
    "s2s_guided": "listen to the question and answer in text, then in speech.",
}
SFT_MODES = tuple(SYSTEM_PROMPTS)
_USER, _ASSISTANT = "\u27e6USER\u27e7", "\u27e6ASSISTANT\u27e7"


def resolve_system_prompts(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The system prompt of every mode: :data:`SYSTEM_PROMPTS` with ``overrides`` (mode -> prompt) over them.

    The prompt is all that tells the modes apart, so every prompt must be non-empty and different from the others.
    """
    prompts = dict(SYSTEM_PROMPTS)
    for mode, prompt in (overrides or {}).items():
        if mode not in SYSTEM_PROMPTS:
            raise ValueError(f"system prompt for unknown SFT mode {mode!r}; expected modes from {SFT_MODES}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"system prompt of mode {mode!r} is {prompt!r}; expected a non-empty string")
        prompts[mode] = prompt
    seen: dict[str, str] = {}
    for mode, prompt in prompts.items():
        if prompt in seen:
            raise ValueError(f"modes {seen[prompt]!r} and {mode!r} share the system prompt {prompt!r}; each needs one")
        seen[prompt] = mode
    return prompts


def mode_io(mode: str) -> tuple[str, str, bool]:
    """``(input modality, output modality, text_guided)`` of an SFT mode."""
    if mode not in SYSTEM_PROMPTS:
        raise ValueError(f"SFT mode {mode!r}; expected one of {SFT_MODES}")
    return ("speech" if mode[0] == "s" else "text", "speech" if mode[2] == "s" else "text", mode.endswith("_guided"))


def chat_pieces(tokenizer, system: str) -> tuple[str, str, str]:
    """The template text ``(before the user content, between user and assistant contents, after the assistant)``."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"{type(tokenizer).__name__} has no chat_template; SFT needs a chat tokenizer")
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": _USER},
        {"role": "assistant", "content": _ASSISTANT},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    if rendered.count(_USER) != 1 or rendered.count(_ASSISTANT) != 1:
        raise ValueError("the chat template does not render each message content exactly once")
    before, rest = rendered.split(_USER)
    between, after = rest.split(_ASSISTANT)
    return before, between, after


def _text(tokenizer, s: str, loss: bool) -> list[Segment]:
    return [text_segment(tokenizer, s, loss=loss)] if s else []


def _user_and_prompt(
    tokenizer,
    special: SpeechSpecialIds,
    mode: str,
    question_text: str | None,
    question_speech: torch.Tensor | None,
    system: str,
) -> list[Segment]:
    src, out, guided = mode_io(mode)
    before, between, _ = chat_pieces(tokenizer, system)
    segs = _text(tokenizer, before, False)
    if src == "speech":
        if question_speech is None:
            raise ValueError(f"mode {mode!r} needs question speech ids")
        segs.append(speech_segment(question_speech, loss=False))
    else:
        if not question_text:
            raise ValueError(f"mode {mode!r} needs a question text")
        segs += _text(tokenizer, question_text, False)
    return segs + _text(tokenizer, between, False)


def build_sft_prompt(
    tokenizer,
    special: SpeechSpecialIds,
    mode: str,
    question_text: str | None = None,
    question_speech: torch.Tensor | None = None,
    system_prompts: Mapping[str, str] | None = None,
) -> torch.Tensor:
    """The generation prompt ``(L, 2)`` of a mode: system + user turn + the assistant's opening template text, and
    start-of-speech for the text-free spoken modes (``t2s``, ``s2s``). ``system_prompts``: the model's own
    (``model.system_prompts``); None: :data:`SYSTEM_PROMPTS`."""
    _, out, guided = mode_io(mode)
    system = resolve_system_prompts(system_prompts)[mode]
    segs = _user_and_prompt(tokenizer, special, mode, question_text, question_speech, system)
    inp, _ = build_grid(segs, special)
    if out == "speech" and not guided:
        inp = torch.cat([inp, torch.tensor([[special.text_start_of_speech, special.speech_pad]])])
    return inp


def build_sft_example(
    tokenizer,
    special: SpeechSpecialIds,
    mode: str,
    question_text: str | None = None,
    question_speech: torch.Tensor | None = None,
    answer_text: str | None = None,
    answer_speech: torch.Tensor | None = None,
    system_prompts: Mapping[str, str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SFT dialogue ``(input_ids (L, 2), labels (L, 2))``; its first ``len(build_sft_prompt(...))`` positions
    are the prompt and carry no labels. ``system_prompts`` as in :func:`build_sft_prompt`."""
    _, out, guided = mode_io(mode)
    system = resolve_system_prompts(system_prompts)[mode]
    _, _, after = chat_pieces(tokenizer, system)
    segs = _user_and_prompt(tokenizer, special, mode, question_text, question_speech, system)
    if out == "text" or guided:
        if not answer_text:
            raise ValueError(f"mode {mode!r} needs an answer text")
        segs += _text(tokenizer, answer_text, True)
    if out == "speech":
        if answer_speech is None:
            raise ValueError(f"mode {mode!r} needs answer speech ids")
        # Text-free: start-of-speech is part of the prompt; text-guided: the model opens speech itself.
        segs.append(speech_segment(answer_speech, loss=True, open_loss=guided))
    segs += _text(tokenizer, after, True)
    return build_grid(segs, special)
