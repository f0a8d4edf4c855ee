"""Batching grids: padding, and sequence packing with document boundaries.

Padded batch (``packing=False``)::

    input_ids       (B, L, 2) long   documents left-aligned; padding is [pad_id, speech_pad] at text positions
    labels          (B, L, 2) long   -100 at padding
    attention_mask  (B, L)    long   1 = real token, 0 = padding
    position_ids    (B, L)    long   0..L-1 per row

Packed batch (``packing=True``): each row holds several whole documents, back to back, then padding::

    input_ids, labels   as above
    position_ids    (B, L)    long   restart at 0 at every document; the padding tail counts 0.. as its own block
    document_ids    (B, L)    long   0, 1, ... per document within the row; the padding tail has its own id
    num_documents   (B,)      long   real documents per row (``document_ids >= num_documents[:, None]`` is padding)
    cu_seqlens      (D + 1,)  int32  boundaries of every document (and padding tail) in the flattened (B * L)
                                     tokens, for varlen attention kernels
    max_seqlen      int              longest document (or tail) length

A packed batch has **no** ``attention_mask``: transformers 5.x (``masking_utils.create_causal_mask``) detects packed
documents from restarting ``position_ids`` only when ``attention_mask`` is None, and then masks block-diagonally,
so no token attends across documents. For an explicit mask use :func:`block_causal_mask`.
"""

from __future__ import annotations

import torch

from moss_components.data.grid import IGNORE_INDEX
from moss_components.special_ids import SpeechSpecialIds

Doc = tuple[torch.Tensor, torch.Tensor]  # (input_ids (n, 2), labels (n, 2))


def _empty(b: int, length: int, special: SpeechSpecialIds, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    inp = torch.empty((b, length, 2), dtype=torch.long)
    inp[..., 0], inp[..., 1] = pad_id, special.speech_pad
    return inp, torch.full((b, length, 2), IGNORE_INDEX, dtype=torch.long)


def collate_padded(docs: list[Doc], special: SpeechSpecialIds, pad_id: int = 0) -> dict:
    """One document per row, padded to the longest (see the module docstring)."""
    length = max(len(d[0]) for d in docs)
    inp, lab = _empty(len(docs), length, special, pad_id)
    mask = torch.zeros((len(docs), length), dtype=torch.long)
    for row, (i, lb) in enumerate(docs):
        inp[row, : len(i)], lab[row, : len(i)], mask[row, : len(i)] = i, lb, 1
    pos = torch.arange(length).expand(len(docs), length).clone()
    return {"input_ids": inp, "labels": lab, "attention_mask": mask, "position_ids": pos}


def pack_greedy(lengths: list[int], max_length: int) -> list[list[int]]:
    """First-fit-decreasing bins of document indices, each bin's total length ``<= max_length``."""
    too_long = [n for n in lengths if n > max_length]
    if too_long:
        raise ValueError(f"document of {too_long[0]} tokens does not fit max_length={max_length}; truncate first")
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for b, r in enumerate(room):
            if lengths[i] <= r:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(max_length - lengths[i])
    return bins


def collate_packed(
    rows: list[list[Doc]], special: SpeechSpecialIds, length: int | None = None, pad_id: int = 0
) -> dict:
    """Rows of whole documents into a packed batch (see the module docstring).

    Args:
        rows: ``rows[b]`` is the list of documents of row ``b``, in order.
        length: row length ``L`` (default: the longest row).
    """
    totals = [sum(len(d[0]) for d in row) for row in rows]
    length = length or max(totals)
    if max(totals) > length:
        raise ValueError(f"a packed row holds {max(totals)} tokens > row length {length}")
    inp, lab = _empty(len(rows), length, special, pad_id)
    pos = torch.zeros((len(rows), length), dtype=torch.long)
    doc = torch.zeros((len(rows), length), dtype=torch.long)
    seqlens: list[int] = []
    for b, row in enumerate(rows):
        t = 0
        for k, (i, lb) in enumerate(row):
            n = len(i)
            inp[b, t : t + n], lab[b, t : t + n] = i, lb
            pos[b, t : t + n], doc[b, t : t + n] = torch.arange(n), k
            seqlens.append(n)
            t += n
        if t < length:  # the padding tail is a block of its own
            pos[b, t:], doc[b, t:] = torch.arange(length - t), len(row)
            seqlens.append(length - t)
    cu = torch.zeros(len(seqlens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(seqlens, dtype=torch.int32), 0)
    return {
        "input_ids": inp,
        "labels": lab,
        "position_ids": pos,
        "document_ids": doc,
        "num_documents": torch.tensor([len(row) for row in rows], dtype=torch.long),
        "cu_seqlens": cu,
        "max_seqlen": int(max(seqlens)),
    }


def block_causal_mask(document_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(B, 1, L, L)`` additive mask (0 = attend, -inf = not): causal within a document, nothing across."""
    same = document_ids[:, :, None] == document_ids[:, None, :]
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    allowed = same & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=document_ids.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
