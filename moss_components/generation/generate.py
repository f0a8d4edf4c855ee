"""Batched generation with MOSS-Speech's modality state machine, cached or not, and a streaming iterator.

Each sample is in text mode or speech mode. Text mode samples the text head; the start-of-speech text token switches
the sample to speech mode. Speech mode samples the speech head (ids that are neither codes nor end-of-speech are
masked) and writes the modality pad in the text channel; end-of-speech switches back to text. A sample stops on one
of ``special_ids.text_eos`` or after ``max_new_tokens``. The mode of the first step is the prompt's: a prompt ending
in start-of-speech (or inside a speech segment) asks for a text-free spoken answer, one ending in text lets the model
answer in text first (text-guided) and switch to speech when it emits start-of-speech.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from moss_components.generation.sampling import SamplingConfig, sample_next
from moss_components.model.layer_split import LayerSplitSpeechLM

__all__ = ["GenerationResult", "GenerationStep", "add_start_of_speech", "generate", "generate_steps", "stream_speech"]


@dataclass
class GenerationStep:
    """What one decoding step produced, for every sample.

    Attributes:
        text: ``(B,)`` text id chosen, -1 where the sample was in speech mode or had finished.
        speech: ``(B,)`` speech id chosen (end-of-speech included), -1 elsewhere.
        finished: ``(B,)`` bool, the sample has stopped (this step's token included when it was an EOS).
    """

    text: torch.Tensor
    speech: torch.Tensor
    finished: torch.Tensor


@dataclass
class GenerationResult:
    """The answer of each sample.

    Attributes:
        text_ids: per sample, the text ids generated in text mode (start-of-speech and EOS left out).
        speech_ids: per sample, the speech codes generated (end-of-speech left out).
        grid: ``(B, L_prompt + T, 2)`` prompt and answer (finished samples padded with an EOS / speech pad).
        attention_mask: ``(B, L_prompt + T)``.
        new_tokens: ``(B,)`` answer length of each sample (its EOS included).
        stopped_on_eos: ``(B,)`` bool, False where ``max_new_tokens`` ran out first.
    """

    text_ids: list[list[int]]
    speech_ids: list[list[int]]
    grid: torch.Tensor
    attention_mask: torch.Tensor
    new_tokens: torch.Tensor
    stopped_on_eos: torch.Tensor
    steps: list[GenerationStep] = field(default_factory=list, repr=False)


def add_start_of_speech(
    model: LayerSplitSpeechLM, prompt_grid: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append start-of-speech to every (left-padded) prompt (the text-free answer mode), unless all end with it."""
    ids = model.special_ids
    batch = prompt_grid.shape[0]
    if attention_mask is not None and bool((prompt_grid[:, -1, 0] == ids.text_start_of_speech).all()):
        return prompt_grid, attention_mask
    column = torch.tensor([ids.text_start_of_speech, ids.speech_pad], device=prompt_grid.device).expand(batch, 1, 2)
    if attention_mask is None:
        attention_mask = torch.ones(prompt_grid.shape[:2], dtype=torch.long, device=prompt_grid.device)
        if bool((prompt_grid[:, -1, 0] == ids.text_start_of_speech).all()):
            return prompt_grid, attention_mask
    ones = torch.ones(batch, 1, dtype=attention_mask.dtype, device=attention_mask.device)
    return torch.cat([prompt_grid, column], dim=1), torch.cat([attention_mask, ones], dim=1)


def _as_grid(model: LayerSplitSpeechLM, prompt: torch.Tensor) -> torch.Tensor:
    if prompt.dim() == 2:
        return torch.stack([prompt, torch.full_like(prompt, model.special_ids.speech_pad)], dim=-1)
    if prompt.dim() != 3 or prompt.shape[-1] != 2:
        raise ValueError(f"prompt must be (B, L) text ids or a (B, L, 2) grid, got shape {tuple(prompt.shape)}")
    return prompt


def _seen(ids: torch.Tensor, valid: torch.Tensor, vocab: int) -> torch.Tensor:
    """``(B, V)`` bool: which ids occur at the valid positions of ``ids (B, L)``."""
    counts = torch.zeros(ids.shape[0], vocab, dtype=torch.long, device=ids.device)
    # counting, not scattering bools: an invalid position may share an index with a valid one
    counts.scatter_add_(1, ids.clamp(0, vocab - 1), valid.long())
    return counts > 0


def _speech_mask(model: LayerSplitSpeechLM, device) -> torch.Tensor:
    """``(V_speech,)`` bool of ids that speech mode may sample: the codes and end-of-speech."""
    ids = model.special_ids
    allowed = torch.zeros(model.speech_vocab_size, dtype=torch.bool, device=device)
    allowed[: ids.num_speech_codes] = True
    allowed[ids.speech_end_of_speech] = True
    # the pad is masked whatever its id: the release's pad 512 lies inside the code range, where it would be
    # ambiguous with the text positions' filler
    allowed[ids.speech_pad] = False
    return allowed


@torch.no_grad()
def generate_steps(
    model: LayerSplitSpeechLM,
    prompt_grid: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: SamplingConfig | None = None,
    answer_mode: Literal["prompt", "text_free"] = "prompt",
) -> Iterator[tuple[GenerationStep, torch.Tensor, torch.Tensor]]:
    """Decode step by step; yields ``(step, grid_so_far, attention_mask_so_far)`` after every step.

    Args:
        model: the speech LM (put in eval mode by the caller; dropout would make steps random).
        prompt_grid: ``(B, L, 2)`` grid or ``(B, L)`` text ids, left-padded.
        attention_mask: ``(B, L)`` 1 for real tokens, 0 for left padding; None = no padding.
        config: sampling settings (MOSS-Speech's defaults when None).
        answer_mode: ``"prompt"`` starts in the mode the prompt implies; ``"text_free"`` appends start-of-speech.
    """
    config = config or SamplingConfig()
    ids = model.special_ids
    grid = _as_grid(model, prompt_grid)
    device = grid.device
    if attention_mask is None:
        attention_mask = torch.ones(grid.shape[:2], dtype=torch.long, device=device)
    if answer_mode == "text_free":
        grid, attention_mask = add_start_of_speech(model, grid, attention_mask)
    elif answer_mode != "prompt":
        raise ValueError(f"answer_mode must be 'prompt' or 'text_free', got '{answer_mode}'")
    batch = grid.shape[0]
    generator = None
    if config.seed is not None:
        generator = torch.Generator(device=device).manual_seed(config.seed)

    text_ids, speech_ids, speech_positions = model.split_grid(grid)
    real = attention_mask.bool()
    seen_text = _seen(text_ids, real & ~speech_positions, model.text_vocab_size)
    seen_speech = _seen(speech_ids, real & speech_positions, model.speech_vocab_size)
    speech_mode = model.predicts_speech(text_ids, speech_ids, speech_positions)[:, -1]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    eos = torch.tensor(ids.text_eos or [-1], device=device)
    speech_allowed = _speech_mask(model, device)
    text_blocked = torch.zeros(model.text_vocab_size, dtype=torch.bool, device=device)
    text_blocked[ids.text_modality_pad] = True

    use_cache = config.use_cache and model.router.supports_cache
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache = None
    step_input, step_positions = grid, positions
    for _ in range(config.max_new_tokens):
        if use_cache:
            out = model(
                step_input,
                attention_mask=attention_mask,
                position_ids=step_positions,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
        else:
            out = model(grid, attention_mask=attention_mask, position_ids=positions)
        text_logits = out.text_logits[:, -1].float().masked_fill(text_blocked, float("-inf"))
        speech_logits = out.speech_logits[:, -1].float().masked_fill(~speech_allowed, float("-inf"))
        # every row is sampled in both heads (one batched call each); the mode picks which one is kept
        next_text = sample_next(text_logits, seen_text, config, generator)
        next_speech = sample_next(speech_logits, seen_speech, config, generator)

        live = ~finished
        in_speech = speech_mode & live
        in_text = ~speech_mode & live
        text_out = torch.where(in_text, next_text, torch.full_like(next_text, -1))
        speech_out = torch.where(in_speech, next_speech, torch.full_like(next_speech, -1))
        # the new grid column: text mode -> (token, speech pad); speech mode -> (modality pad, token);
        # finished -> (first EOS, speech pad), which no later step reads
        col_text = torch.where(speech_mode, torch.full_like(next_text, ids.text_modality_pad), next_text)
        col_speech = torch.where(speech_mode, next_speech, torch.full_like(next_speech, ids.speech_pad))
        col_text = torch.where(finished, torch.full_like(col_text, int(eos[0].clamp(min=0))), col_text)
        col_speech = torch.where(finished, torch.full_like(col_speech, ids.speech_pad), col_speech)
        column = torch.stack([col_text, col_speech], dim=-1).unsqueeze(1)

        seen_text.scatter_(
            1, next_text.unsqueeze(1), in_text.unsqueeze(1) | seen_text.gather(1, next_text.unsqueeze(1))
        )
        seen_speech.scatter_(
            1, next_speech.unsqueeze(1), in_speech.unsqueeze(1) | seen_speech.gather(1, next_speech.unsqueeze(1))
        )
        finished = finished | (in_text & torch.isin(next_text, eos))
        speech_mode = torch.where(in_text & (next_text == ids.text_start_of_speech), True, speech_mode)
        speech_mode = torch.where(in_speech & (next_speech == ids.speech_end_of_speech), False, speech_mode)

        grid = torch.cat([grid, column], dim=1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        step_positions = positions[:, -1:] + 1
        positions = torch.cat([positions, step_positions], dim=1)
        step_input = column
        yield GenerationStep(text_out, speech_out, finished.clone()), grid, attention_mask
        if finished.all():
            break


def generate(
    model: LayerSplitSpeechLM,
    prompt_grid: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: SamplingConfig | None = None,
    answer_mode: Literal["prompt", "text_free"] = "prompt",
) -> GenerationResult:
    """Generate answers for a left-padded batch; see :func:`generate_steps` for the arguments."""
    ids = model.special_ids
    prompt = _as_grid(model, prompt_grid)
    batch = prompt.shape[0]
    text: list[list[int]] = [[] for _ in range(batch)]
    speech: list[list[int]] = [[] for _ in range(batch)]
    new_tokens = torch.zeros(batch, dtype=torch.long)
    steps: list[GenerationStep] = []
    grid, mask = prompt, attention_mask
    if mask is None:
        mask = torch.ones(prompt.shape[:2], dtype=torch.long, device=prompt.device)
    done = torch.zeros(batch, dtype=torch.bool)
    for step, grid_so_far, mask_so_far in generate_steps(model, prompt, attention_mask, config, answer_mode):
        grid, mask = grid_so_far, mask_so_far
        steps.append(step)
        for b, (t, s) in enumerate(zip(step.text.tolist(), step.speech.tolist())):
            if t >= 0 or s >= 0:
                new_tokens[b] += 1
            if t >= 0 and t != ids.text_start_of_speech and t not in ids.text_eos:
                text[b].append(t)
            if s >= 0 and s != ids.speech_end_of_speech:
                speech[b].append(s)
        done = step.finished.cpu()
    return GenerationResult(text, speech, grid, mask, new_tokens, done, steps)


def stream_speech(
    model: LayerSplitSpeechLM,
    prompt_grid: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: SamplingConfig | None = None,
    answer_mode: Literal["prompt", "text_free"] = "text_free",
    chunk_size: int = 1,
) -> Iterator[list[int]]:
    """Yield the speech codes of a single-sample answer as they are generated, ``chunk_size`` at a time.

    A shorter chunk is flushed at end-of-speech and at the end. Feed each chunk to a streaming speech decoder.
    """
    prompt = _as_grid(model, prompt_grid)
    if prompt.shape[0] != 1:
        raise ValueError(f"stream_speech takes one sample, got a batch of {prompt.shape[0]}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    end = model.special_ids.speech_end_of_speech
    pending: list[int] = []
    for step, _, _ in generate_steps(model, prompt, attention_mask, config, answer_mode):
        code = int(step.speech[0])
        if code >= 0 and code != end:
            pending.append(code)
        if pending and (len(pending) >= chunk_size or code == end):
            yield pending
            pending = []
    if pending:
        yield pending
