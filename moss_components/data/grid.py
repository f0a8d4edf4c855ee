"""The two-channel grid of one document, built from text and speech segments, and read back.

A document is a list of :class:`Segment` s. :func:`build_grid` lays them out as MOSS-Speech does:

- a text segment is ``n`` text positions: channel 0 = text ids, channel 1 = ``speech_pad``;
- a speech segment is one text position holding ``text_start_of_speech`` (channel 1 = ``speech_pad``), then one
  speech position per id (channel 0 = ``text_modality_pad``, channel 1 = the id), then one speech position holding
  ``speech_end_of_speech``.

Labels are **unshifted** (the label at ``t`` is the token at ``t``; the model shifts) and per channel: channel 0 is
labelled only at text positions (start-of-speech included), channel 1 only at speech positions (end-of-speech
included); everything else is ``-100``. A segment's ``loss`` flag says whether its positions are labelled; a speech
segment's opening token follows ``open_loss`` (default: ``loss``), so a prompt can end in start-of-speech without
training on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moss_components.special_ids import SpeechSpecialIds

IGNORE_INDEX = -100


@dataclass
class Segment:
    """A run of one modality.

    Args:
        kind: ``"text"`` or ``"speech"``.
        ids: ``(n,)`` long: text ids (``"text"``) or speech codes (``"speech"``).
        loss: label these positions.
        open_loss: label the start-of-speech token of a speech segment (``None``: same as ``loss``).
        close: end a speech segment with end-of-speech (``False`` for a truncated one, or a prompt cut inside).
    """

    kind: str
    ids: torch.Tensor
    loss: bool = True
    open_loss: bool | None = None
    close: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("text", "speech"):
            raise ValueError(f"segment kind {self.kind!r}; expected 'text' or 'speech'")
        self.ids = torch.as_tensor(self.ids, dtype=torch.long).reshape(-1)

    def __len__(self) -> int:
        return len(self.ids) + (0 if self.kind == "text" else 1 + int(self.close))


def text_segment(tokenizer, text: str, loss: bool = True, eos: bool = False) -> Segment:
    """Tokenize ``text`` with any HF tokenizer (no special tokens added); ``eos`` appends ``tokenizer.eos_token_id``."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if eos:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no eos_token_id; set tokenizer.eos_token")
        ids.append(int(tokenizer.eos_token_id))
    return Segment("text", torch.tensor(ids, dtype=torch.long), loss=loss)


def speech_segment(ids: torch.Tensor, loss: bool = True, open_loss: bool | None = None, close: bool = True) -> Segment:
    """A speech segment of ``(n,)`` codes (one codebook)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.ndim != 1:
        raise ValueError(f"speech ids must be (n,) for the grid (one codebook), got shape {tuple(ids.shape)}")
    return Segment("speech", ids, loss=loss, open_loss=open_loss, close=close)


def build_grid(segments: list[Segment], special: SpeechSpecialIds) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay segments out as ``(input_ids (L, 2), labels (L, 2))`` long (see the module docstring)."""
    inputs, labels = [], []
    ign = IGNORE_INDEX
    for seg in segments:
        n = len(seg.ids)
        if seg.kind == "text":
            inp = torch.stack([seg.ids, torch.full((n,), special.speech_pad)], dim=1)
            lab = torch.full((n, 2), ign)
            if seg.loss:
                lab[:, 0] = seg.ids
        else:
            if n and (int(seg.ids.min()) < 0 or int(seg.ids.max()) >= special.num_speech_codes):
                raise ValueError(
                    f"speech id {int(seg.ids.max())} outside the codes [0, {special.num_speech_codes}): "
                    "a cache made by another tokenizer?"
                )
            codes = torch.cat([seg.ids, torch.tensor([special.speech_end_of_speech])]) if seg.close else seg.ids
            m = len(codes)
            inp = torch.empty((m + 1, 2), dtype=torch.long)
            inp[0] = torch.tensor([special.text_start_of_speech, special.speech_pad])
            inp[1:, 0] = special.text_modality_pad
            inp[1:, 1] = codes
            lab = torch.full((m + 1, 2), ign)
            if seg.loss if seg.open_loss is None else seg.open_loss:
                lab[0, 0] = special.text_start_of_speech
            if seg.loss:
                lab[1:, 1] = codes
        inputs.append(inp)
        labels.append(lab)
    if not inputs:
        return torch.empty((0, 2), dtype=torch.long), torch.empty((0, 2), dtype=torch.long)
    return torch.cat(inputs), torch.cat(labels)


def speech_positions(input_ids: torch.Tensor, special: SpeechSpecialIds) -> torch.Tensor:
    """``(..., L)`` bool: positions whose embedding comes from the speech table (channel 0 is the modality pad)."""
    return input_ids[..., 0] == special.text_modality_pad


def parse_grid(input_ids: torch.Tensor, special: SpeechSpecialIds) -> list[tuple[str, torch.Tensor]]:
    """Read a ``(L, 2)`` grid back into ``[("text", ids) | ("speech", codes)]`` (markers removed).

    The inverse of :func:`build_grid` up to segment merging: adjacent text segments come back as one.
    """
    out: list[tuple[str, list[int]]] = []
    is_speech = speech_positions(input_ids, special).tolist()
    text_ch, speech_ch = input_ids[:, 0].tolist(), input_ids[:, 1].tolist()
    for t, sp in enumerate(is_speech):
        if sp:
            if speech_ch[t] == special.speech_end_of_speech:
                continue
            if not out or out[-1][0] != "speech":
                out.append(("speech", []))
            out[-1][1].append(speech_ch[t])
        elif text_ch[t] == special.text_start_of_speech:
            out.append(("speech", []))
        else:
            if not out or out[-1][0] != "text":
                out.append(("text", []))
            out[-1][1].append(text_ch[t])
    return [(k, torch.tensor(v, dtype=torch.long)) for k, v in out]


def check_grid(input_ids: torch.Tensor, labels: torch.Tensor, special: SpeechSpecialIds) -> None:
    """Raise ``ValueError`` where a grid breaks the layout rules (used by tests and ``bench data``)."""
    sp = speech_positions(input_ids, special)
    if (input_ids[~sp, 1] != special.speech_pad).any():
        raise ValueError("a text position has a speech id other than speech_pad")
    if (labels[sp, 0] != IGNORE_INDEX).any() or (labels[~sp, 1] != IGNORE_INDEX).any():
        raise ValueError("a label sits on the wrong channel (text labels only at text positions, speech at speech)")
    both = labels != IGNORE_INDEX
    if (labels[both] != input_ids[both]).any():
        raise ValueError("labels must be unshifted: the label at t is the token at t")
