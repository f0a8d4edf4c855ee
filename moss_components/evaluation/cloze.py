"""Cloze accuracy in speech and in text: does the model give the right ending a higher likelihood than a wrong one?

The paper's speech StoryCloze (and text StoryCloze) ask a pretrained model which of two endings of a story is more
likely. Here the stories are the corpus' facts, and the wrong ending is a different answer of the same category
("paris" against "berlin"), chosen once per fact so that the text and the speech items of a fact share it. Facts
come in pairs that swap their endings (:func:`pair_facts`), so a model that ignores the context scores exactly 0.5
on them, whatever its taste for short or frequent endings.

- **Text cloze** (:func:`text_cloze_accuracy`): a statement of the fact split before its answer, plain text through
  the text head: ``"the capital of france is"`` + ``" paris"`` against ``" berlin"``. It runs on the base text LLM
  too, so speech training can be compared with the LLM it started from.
- **Spoken cloze** (:func:`spoken_cloze_accuracy`): the corpus reads each statement whole, and no wrong statement is
  ever spoken, so there is no statement audio to split or to contrast. What it does have is every answer spoken on
  its own by the assistant voice ("the answer is paris"). So the spoken context is a test question's audio, and the
  endings are the right and a wrong spoken answer, laid out as a text-free spoken dialogue (the ``s2s`` SFT layout:
  the user speaks, the assistant answers in speech). Both endings are in the same voice with the same carrier phrase,
  so they differ only in the answer word. The score is the answer's speech ids and its end-of-speech.

Beside them, :func:`speech_nll`: nats per token of held-out read speech (:func:`load_statement_speech`) as speech-only
documents, the speech side's perplexity, which moves long before a small model gets cloze items right.

An item is right when the right ending's *total* log-likelihood is strictly higher (ties count as wrong); chance is
0.5 (exactly, for a context-blind model on paired items). Under the no-split router the probabilities are those
of its joint softmax over text and speech ids.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from moss_components.data.grid import IGNORE_INDEX
from moss_components.data.manifest import read_manifest
from moss_components.data.pretrain_tasks import build_speech_only
from moss_components.data.sft import build_sft_example
from moss_components.data.speech_cache import SpeechCache, cache_paths
from moss_components.evaluation.run_layout import RunLayout

__all__ = [
    "SpeechClozeItem",
    "TextClozeItem",
    "cloze_accuracy",
    "cloze_figures",
    "load_cloze_items",
    "load_statement_speech",
    "pair_facts",
    "sample_by_pair",
    "sequence_logprobs",
    "speech_nll",
    "spoken_cloze_accuracy",
    "spoken_cloze_scores",
    "text_cloze_accuracy",
    "text_cloze_scores",
    "wrong_answers",
]


@dataclass(frozen=True)
class TextClozeItem:
    """``context`` + ``" " + right`` against ``context`` + ``" " + wrong`` (words without punctuation).

    ``pair``: the facts whose answers are swapped between their two items (see :func:`pair_facts`).
    """

    fact_id: str
    context: str
    right: str
    wrong: str
    pair: str = ""


@dataclass
class SpeechClozeItem:
    """A spoken question ``(T,)`` ids and two spoken answers ``(T_r,)``, ``(T_w,)`` ids of one codebook."""

    id: str
    fact_id: str
    question: torch.Tensor
    right: torch.Tensor
    wrong: torch.Tensor
    pair: str = ""
    tags: dict = field(default_factory=dict)


def pair_facts(facts: list[dict], seed: int = 0) -> dict[str, str | None]:
    """Fact id -> its partner: a fact of the same category with a different answer, or None (an odd one out).

    Each fact's wrong ending is its partner's answer, so the two items of a pair swap their endings: a model that
    ignores the context gets exactly one of the two right, and a bias for short or frequent endings cancels out.
    Pairs are drawn per category from a seeded shuffle (independent of the order of ``facts``).
    """
    by_category: dict[str, list[dict]] = defaultdict(list)
    for f in sorted(facts, key=lambda f: f["id"]):
        by_category[f["category"]].append(f)
    partner: dict[str, str | None] = {}
    for category, members in sorted(by_category.items()):
        random.Random(f"cloze-{seed}-{category}").shuffle(members)
        waiting: list[dict] = []
        for f in members:
            match = next((g for g in waiting if g["answer"] != f["answer"]), None)
            if match is None:
                waiting.append(f)
            else:
                waiting.remove(match)
                partner[f["id"]], partner[match["id"]] = match["id"], f["id"]
        partner.update({g["id"]: None for g in waiting})
    return partner


def wrong_answers(facts: list[dict], seed: int = 0) -> dict[str, str]:
    """Fact id -> the wrong ending: its partner's answer (:func:`pair_facts`), or for an odd one out a different
    answer of its category drawn from its own seeded generator. A category with one distinct answer gives none."""
    by_id = {f["id"]: f for f in facts}
    answers: dict[str, set[str]] = defaultdict(set)
    for f in facts:
        answers[f["category"]].add(f["answer"])
    out = {}
    for fact_id, partner in pair_facts(facts, seed).items():
        f = by_id[fact_id]
        others = sorted(answers[f["category"]] - {f["answer"]})
        if partner is not None:
            out[fact_id] = by_id[partner]["answer"]
        elif others:
            out[fact_id] = random.Random(f"cloze-{seed}-{fact_id}").choice(others)
    return out


def _pair_key(fact_id: str, partner: str | None) -> str:
    return "|".join(sorted({fact_id, partner or fact_id}))


def _split_statement(fact: dict) -> str | None:
    """The context of the first statement that ends with the answer as a whole word, or None."""
    for s in fact["statements"]:
        if s.endswith(" " + fact["answer"]):
            return s[: -len(fact["answer"]) - 1]
    return None


def load_cloze_items(
    layout: RunLayout | str | Path, split: str = "test", seed: int = 0
) -> tuple[list[TextClozeItem], list[SpeechClozeItem]]:
    """The cloze items of a run's corpus: one text item per fact asked in ``qa/{split}``, one spoken item per line.

    Reads ``corpus/facts.jsonl``, ``corpus/qa/{split}.jsonl`` and the speech-id cache of that manifest. Lines without
    cached ids, and facts without a wrong answer or an answer-final statement, are left out and counted in a message.
    """
    layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
    facts = {f["id"]: f for f in map(json.loads, (layout.corpus / "facts.jsonl").read_text().splitlines())}
    wrong, partner = wrong_answers(list(facts.values()), seed), pair_facts(list(facts.values()), seed)
    manifest = layout.corpus / "qa" / f"{split}.jsonl"
    cache = SpeechCache(cache_paths(manifest, layout.speech_ids)[0])
    lines = read_manifest(manifest, required=("id", "fact_id", "answer"))
    # the spoken answer of each answer word (every line of a fact shares one answer recording)
    spoken_answer: dict[str, torch.Tensor] = {}
    for r in lines:
        key = f"{r['id']}:answer"
        if key in cache and r["answer"] not in spoken_answer:
            spoken_answer[r["answer"]] = cache[key]
    text_items, speech_items, skipped = [], [], 0
    for fact_id in dict.fromkeys(r["fact_id"] for r in lines):
        context = _split_statement(facts[fact_id])
        if fact_id in wrong and context is not None:
            pair = _pair_key(fact_id, partner[fact_id])
            text_items.append(TextClozeItem(fact_id, context, facts[fact_id]["answer"], wrong[fact_id], pair))
    for r in lines:
        q, w = f"{r['id']}:question", spoken_answer.get(wrong.get(r["fact_id"], ""))
        if q not in cache or r["answer"] not in spoken_answer or w is None:
            skipped += 1
            continue
        tags = {"heldout": bool(r.get("heldout")), "unseen_voice": bool(r.get("unseen_voice"))}
        pair = _pair_key(r["fact_id"], partner[r["fact_id"]])
        speech_items.append(SpeechClozeItem(r["id"], r["fact_id"], cache[q], spoken_answer[r["answer"]], w, pair, tags))
    if skipped:
        print(f"{skipped} lines of {manifest} make no spoken cloze item (ids not cached, or no wrong answer)")
    return text_items, speech_items


def _is_grid_model(model) -> bool:
    return getattr(model, "special_ids", None) is not None


@torch.no_grad()
def sequence_logprobs(
    model, inputs: list[torch.Tensor], labels: list[torch.Tensor], pad_id: int = 0, batch_size: int = 16
) -> torch.Tensor:
    """``(N,)`` float64: per sequence, the summed log-probability of its labelled tokens.

    Args:
        model: a split speech LM (``(B, L, 2)`` grids; its ``text_logits`` / ``speech_logits``, joint under a
            ``joint_softmax`` router) or a Hugging Face causal LM (``(B, L)`` text; ``.logits``, channel 0 only).
        inputs: ``(L_i, 2)`` grids; labels: ``(L_i, 2)`` unshifted labels (the label at t is the token at t), -100
            where not scored. Sequences are right-padded, so positions stay ``0..L_i-1``.
    """
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs for {len(labels)} label tensors")
    grid = _is_grid_model(model)
    speech_pad = model.special_ids.speech_pad if grid else 0
    joint = grid and getattr(getattr(model, "router", None), "joint_softmax", False)
    out = []
    for i in range(0, len(inputs), batch_size):
        chunk_in, chunk_lab = inputs[i : i + batch_size], labels[i : i + batch_size]
        width = max(x.shape[0] for x in chunk_in)
        ids = torch.empty(len(chunk_in), width, 2, dtype=torch.long)
        ids[..., 0], ids[..., 1] = pad_id, speech_pad
        lab = torch.full((len(chunk_in), width, 2), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(len(chunk_in), width, dtype=torch.long)
        for b, (x, y) in enumerate(zip(chunk_in, chunk_lab)):
            ids[b, : len(x)], lab[b, : len(y)], mask[b, : len(x)] = x, y, 1
        if grid:
            o = model(input_ids=ids, attention_mask=mask)
            text_lp, speech_lp = o.text_logits.float(), o.speech_logits.float()
            if joint:
                both = torch.cat([text_lp, speech_lp], -1).log_softmax(-1)
                text_lp, speech_lp = both[..., : text_lp.shape[-1]], both[..., text_lp.shape[-1] :]
            else:
                text_lp, speech_lp = text_lp.log_softmax(-1), speech_lp.log_softmax(-1)
            heads = [(text_lp, 0), (speech_lp, 1)]
        else:
            heads = [(model(input_ids=ids[..., 0], attention_mask=mask).logits.float().log_softmax(-1), 0)]
        total = torch.zeros(len(chunk_in), dtype=torch.float64)
        for logp, channel in heads:
            target = lab[:, 1:, channel]  # position t - 1 predicts the token at t
            scored = target != IGNORE_INDEX
            picked = logp[:, :-1].gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total += (picked * scored).double().sum(1)
        out.append(total)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def cloze_accuracy(right: torch.Tensor, wrong: torch.Tensor) -> float:
    """Fraction of items whose right ending scores strictly higher than the wrong one."""
    if right.shape != wrong.shape or right.numel() == 0:
        raise ValueError(f"need equal, non-empty score vectors, got {tuple(right.shape)} and {tuple(wrong.shape)}")
    return (right > wrong).double().mean().item()


def _text_sequence(tokenizer, context: str, ending: str, speech_pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, 2)`` text grid of ``context + " " + ending`` and labels on the ending's tokens only."""
    # tokenized apart, so a subword tokenizer cannot merge a token across the boundary
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(context_ids + tokenizer(" " + ending, add_special_tokens=False)["input_ids"])
    inp = torch.stack([ids, torch.full_like(ids, speech_pad)], dim=1)
    lab = torch.full_like(inp, IGNORE_INDEX)
    lab[len(context_ids) :, 0] = ids[len(context_ids) :]
    return inp, lab


def _score(model, pairs: list[tuple[torch.Tensor, torch.Tensor]], tokenizer, batch_size: int) -> torch.Tensor:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return sequence_logprobs(model, [p[0] for p in pairs], [p[1] for p in pairs], pad, batch_size)


@torch.no_grad()
def text_cloze_scores(
    model, tokenizer, items: list[TextClozeItem], batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(right, wrong)`` ``(N,)`` log-likelihoods of the endings of ``items`` under the text head (or ``.logits``)."""
    speech_pad = model.special_ids.speech_pad if _is_grid_model(model) else 0
    right = [_text_sequence(tokenizer, it.context, it.right, speech_pad) for it in items]
    wrong = [_text_sequence(tokenizer, it.context, it.wrong, speech_pad) for it in items]
    return _score(model, right, tokenizer, batch_size), _score(model, wrong, tokenizer, batch_size)


def text_cloze_accuracy(model, tokenizer, items: list[TextClozeItem], batch_size: int = 32) -> float:
    """Share of ``items`` whose right ending the model finds more likely, in plain text (see the module docstring).

    ``model``: a split speech LM (text head) or a Hugging Face causal LM (e.g. the base text LLM).
    """
    if not items:
        raise ValueError("text_cloze_accuracy needs at least one item")
    return cloze_accuracy(*text_cloze_scores(model, tokenizer, items, batch_size))


def _spoken_grid(model, tokenizer, question: torch.Tensor, answer: torch.Tensor):
    inp, lab = build_sft_example(
        tokenizer, model.special_ids, "s2s", question_speech=question, answer_speech=answer,
        system_prompts=model.system_prompts,
    )  # fmt: skip
    lab[:, 0] = IGNORE_INDEX  # score the spoken answer (ids + end-of-speech), not the template text after it
    return inp, lab


@torch.no_grad()
def spoken_cloze_scores(
    model, tokenizer, items: list[SpeechClozeItem], batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(right, wrong)`` ``(N,)`` log-likelihoods of the spoken answers of ``items`` (s2s dialogue layout)."""
    if not _is_grid_model(model):
        raise TypeError(f"spoken cloze needs a speech LM with special_ids, got {type(model).__name__}")
    right = [_spoken_grid(model, tokenizer, it.question, it.right) for it in items]
    wrong = [_spoken_grid(model, tokenizer, it.question, it.wrong) for it in items]
    return _score(model, right, tokenizer, batch_size), _score(model, wrong, tokenizer, batch_size)


def spoken_cloze_accuracy(model, tokenizer, items: list[SpeechClozeItem], batch_size: int = 16) -> float:
    """Share of ``items`` whose right spoken answer the model finds more likely, text-free (module docstring)."""
    if not items:
        raise ValueError("spoken_cloze_accuracy needs at least one item")
    return cloze_accuracy(*spoken_cloze_scores(model, tokenizer, items, batch_size))


def load_read_speech(
    layout: RunLayout | str | Path, split: str = "test", kinds: tuple[str, ...] | None = None
) -> list[tuple[str, torch.Tensor]]:
    """``[(text, speech ids (T,))]`` of ``read/{split}`` (test: voices unseen in training), of the given ``kind``s
    (``statement``, ``question`` ...; None: all) with cached ids."""
    layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
    manifest = layout.corpus / "read" / f"{split}.jsonl"
    cache = SpeechCache(cache_paths(manifest, layout.speech_ids)[0])
    records = read_manifest(manifest, required=("id", "text"))
    return [(r["text"], cache[r["id"]]) for r in records
            if (kinds is None or r.get("kind") in kinds) and r["id"] in cache]  # fmt: skip


def load_statement_speech(layout: RunLayout | str | Path, split: str = "test") -> list[tuple[str, torch.Tensor]]:
    """The read statements of ``read/{split}``: see :func:`load_read_speech`."""
    return load_read_speech(layout, split, ("statement",))


@torch.no_grad()
def speech_nll(model, speech: list[torch.Tensor], batch_size: int = 16) -> float:
    """Nats per token of ``speech`` (``(T_i,)`` ids each) as speech-only documents ``<sos> ids <eos_s>``: the ids
    and the end-of-speech are scored, the opening start-of-speech is given."""
    if not speech:
        raise ValueError("speech_nll needs at least one utterance")
    grids = [build_speech_only(ids, model.special_ids) for ids in speech]
    total = sequence_logprobs(model, [g for g, _ in grids], [y for _, y in grids], batch_size=batch_size).sum()
    count = sum(int((y[1:] != IGNORE_INDEX).sum()) for _, y in grids)
    return -total.item() / count


def sample_by_pair(items: list, limit: int | None, seed: int = 0) -> list:
    """At most ``limit`` items, drawn a whole pair at a time (so swapped endings stay balanced); all when None."""
    if limit is None or len(items) <= limit:
        return items
    groups: dict[str, list] = defaultdict(list)
    for it in items:
        groups[it.pair].append(it)
    chosen: list = []
    for key in random.Random(seed).sample(sorted(groups), len(groups)):
        if len(chosen) + len(groups[key]) <= limit:
            chosen += groups[key]
    return chosen


@torch.no_grad()
def cloze_figures(
    layout: RunLayout | str | Path,
    model,
    tokenizer,
    split: str = "test",
    max_items: int | None = None,
    seed: int = 0,
    base=None,
) -> dict:
    """The report's cloze figures for ``model``: ``spoken_cloze_accuracy``, ``text_cloze_accuracy`` (with ``_n``)
    and ``text_cloze_accuracy_base`` of the run's base text LLM (``base``: that model already loaded, else loaded).

    ``max_items`` caps each item list (a seeded sample of whole pairs); the base LLM is asked the same text items.
    """
    from transformers import AutoModelForCausalLM

    layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
    text_items, speech_items = load_cloze_items(layout, split, seed)
    text_items, speech_items = (
        sample_by_pair(text_items, max_items, seed),
        sample_by_pair(speech_items, max_items, seed),
    )
    out: dict = {"spoken_cloze_accuracy": None, "text_cloze_accuracy": None, "text_cloze_accuracy_base": None}
    if speech_items:
        out["spoken_cloze_accuracy"] = spoken_cloze_accuracy(model, tokenizer, speech_items)
    if text_items:
        out["text_cloze_accuracy"] = text_cloze_accuracy(model, tokenizer, text_items)
        if base is None:
            base = AutoModelForCausalLM.from_pretrained(layout.text_llm, local_files_only=True).eval()
        out["text_cloze_accuracy_base"] = text_cloze_accuracy(base, tokenizer, text_items)
    out["spoken_cloze_n"], out["text_cloze_n"] = len(speech_items), len(text_items)
    return out
