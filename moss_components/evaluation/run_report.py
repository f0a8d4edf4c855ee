"""The figures of a pipeline run (``report.json``): spoken QA in four modality combinations, text ability before
and after speech training, spoken and text cloze accuracy (``cloze.py``), whether the LM reads speech at all
(``lm_asr.py``), and the ASR judge's own error rate.

Everything is loaded from the run directory (see :class:`RunLayout`); nothing is trained here.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from moss_components.asr import cer, load_recognizer
from moss_components.checkpoints import load_moss_speech
from moss_components.data.audio_io import load_audio
from moss_components.data.manifest import read_manifest
from moss_components.data.speech_cache import SpeechCache, cache_paths
from moss_components.decoders import load_decoder
from moss_components.evaluation.answers import accuracy
from moss_components.evaluation.cloze import cloze_figures, load_read_speech
from moss_components.evaluation.lm_asr import lm_asr_figures
from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.speech_output import SpeechOutput
from moss_components.evaluation.spoken_qa import QAItem, answer_questions, summarize
from moss_components.evaluation.text_metrics import text_logits_equal, text_perplexity
from moss_components.generation import SamplingConfig
from moss_components.vocoders import load_vocoder

# report key -> (SFT mode, which items)
QA_FIGURES = {
    "s2s_text_free_accuracy": ("s2s", "seen"),
    "s2s_text_guided_accuracy": ("s2s_guided", "seen"),
    "s2t_accuracy": ("s2t", "seen"),
    "t2t_accuracy": ("t2t", "seen"),
    "unseen_voice_s2s_accuracy": ("s2s", "unseen_voice"),
    "heldout_fact_s2s_accuracy": ("s2s", "heldout"),
}


def load_qa_items(layout: RunLayout, split: str) -> list[QAItem]:
    """The spoken QA lines of ``split`` with their cached speech ids (lines without cached ids are counted out)."""
    manifest = layout.corpus / "qa" / f"{split}.jsonl"
    cache = SpeechCache(cache_paths(manifest, layout.speech_ids)[0])
    items, missing = [], 0
    for r in read_manifest(manifest, required=("id", "question_text", "answer")):
        q, a = f"{r['id']}:question", f"{r['id']}:answer"
        if q not in cache:
            missing += 1
            continue
        tags = {"heldout": bool(r.get("heldout")), "unseen_voice": bool(r.get("unseen_voice"))}
        tags["category"] = r.get("category", "")
        items.append(QAItem(r["id"], r["question_text"], r["answer"], cache[q], cache[a] if a in cache else None, tags))
    if missing:
        print(f"{missing} QA lines of {manifest} have no cached speech ids and are left out")
    return items


def chance_level(items: list[QAItem], all_items: list[QAItem]) -> float:
    """Accuracy of guessing an answer of the right category uniformly: mean of 1 / (distinct answers)."""
    answers = defaultdict(set)
    for it in all_items:
        answers[it.tags["category"]].add(it.answer)
    return sum(1 / len(answers[it.tags["category"]]) for it in items) / max(len(items), 1)


def _subset(items: list[QAItem], which: str, limit: int | None, seed: int) -> list[QAItem]:
    if which == "seen":
        chosen = [it for it in items if not it.tags["heldout"]]
    else:
        chosen = [it for it in items if it.tags[which]]
    if limit is not None and len(chosen) > limit:
        chosen = random.Random(seed).sample(chosen, limit)
    return chosen


# reference answers decoded, vocoded and judged per run: each costs a full decode, and 150 give +-4 points
REFERENCE_ANSWERS = 150


def answer_candidates(layout: RunLayout) -> list[str]:
    """Every spoken answer sentence of the corpus (``facts.jsonl``, held-out facts included): the closed set the
    judge chooses from (``spoken_qa``'s module docstring)."""
    path = layout.corpus / "facts.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the judge needs the corpus' answer sentences")
    return sorted({r["answer_text"] for r in read_manifest(path, required=("answer_text",))})


@torch.no_grad()
def reference_answer_figures(speech: SpeechOutput, items: list[QAItem], candidates: list[str]) -> dict:
    """The spoken-answer path's ceiling on S->S: the reference answers' own ids through decoder, vocoder and judge
    (closed-set judging, and ``_open``: greedy).

    A model whose ids match the reference exactly scores this, not 1.0; S->S far below S->T with a high
    ``ids_exact_match`` points at the codec, not the LM.
    """
    items = [it for it in items if it.answer_speech is not None]
    if not items:
        return {"s2s_reference_ids_accuracy": None}
    greedy, closed = speech.transcribe_greedy_and_closed(speech.speak([it.answer_speech.tolist() for it in items]),
                                                         candidates)  # fmt: skip
    expected = [it.answer for it in items]
    return {
        "s2s_reference_ids_accuracy": accuracy(closed, expected),
        "s2s_reference_ids_accuracy_open": accuracy(greedy, expected),
        "s2s_reference_ids_n": len(items),
    }


@torch.no_grad()
def evaluate_run(
    root: str | Path,
    split: str = "test",
    max_items: int | None = 200,
    batch_size: int = 16,
    seed: int = 0,
    max_new_tokens: int = 120,
) -> tuple[dict, dict]:
    """Compute the report's figures for the run at ``root``.

    Returns ``(figures, details)``: the ``report.json`` numbers, and per-mode answers for examples and plots.
    """
    layout = RunLayout(root)
    model = load_moss_speech(layout.speech_lm).eval()
    tokenizer = AutoTokenizer.from_pretrained(layout.speech_lm, local_files_only=True)
    judge = load_recognizer(layout.export("judge")).eval()
    speech = SpeechOutput(load_decoder(layout.decoder).eval(), load_vocoder(layout.vocoder).eval(), judge)
    items = load_qa_items(layout, split)
    candidates = answer_candidates(layout)

    figures: dict = {"split": split, "speech_lm": str(layout.speech_lm.relative_to(layout.root))}
    details: dict = {}
    answered: dict[tuple[str, str], list] = {}
    for key, (mode, which) in QA_FIGURES.items():
        subset = _subset(items, which, max_items, seed)
        if not subset:
            figures[key] = None
            continue
        sampling = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
        answers = answer_questions(model, tokenizer, subset, mode, speech, sampling, batch_size=batch_size,
                                   answer_candidates=candidates)  # fmt: skip
        summary = summarize(answers)
        figures[key] = summary["accuracy"]
        if "accuracy_open" in summary:
            figures[f"{key}_open"] = summary["accuracy_open"]
        figures[f"{key}_n"] = summary["n"]
        if "ids_exact_match" in summary:
            figures[key.replace("accuracy", "ids_exact_match")] = summary["ids_exact_match"]
        if key == "s2t_accuracy":  # the S->T target's own population: seen facts, voices never heard in training
            figures["unseen_voice_s2t_accuracy"] = summary.get("accuracy[unseen_voice=True]")
            figures["unseen_voice_s2t_accuracy_n"] = summary.get("n[unseen_voice=True]", 0)
        answered[(mode, which)] = answers
        details[key] = answers
    heldout = _subset(items, "heldout", max_items, seed)
    figures["heldout_fact_chance"] = chance_level(heldout, items) if heldout else None

    # the judge on the reference answers: the fixed assistant voice, as the s2s answers should sound
    by_id = {r["id"]: r for r in read_manifest(layout.corpus / "qa" / f"{split}.jsonl")}
    wavs, texts, judged = [], [], _subset(items, "seen", 64, seed)
    for it in judged:
        wavs.append(load_audio(layout.corpus / by_id[it.id]["answer_audio"], judge.sample_rate))
        texts.append(by_id[it.id]["answer_text"])
    figures["judge_cer_assistant_voice"] = None
    if wavs:  # the judge's CER, and its own ceiling: the real answer recordings, heard right
        greedy, closed = speech.transcribe_greedy_and_closed(wavs, candidates)
        expected = [it.answer for it in judged]
        figures["judge_cer_assistant_voice"] = cer(greedy, texts)
        figures["judge_reference_audio_accuracy"] = accuracy(closed, expected)
        figures["judge_reference_audio_accuracy_open"] = accuracy(greedy, expected)
    seen = _subset(items, "seen", max_items, seed)[:REFERENCE_ANSWERS]
    figures.update(reference_answer_figures(speech, seen, candidates))

    figures.update(text_figures(layout))
    figures.update(cloze_figures(layout, model, tokenizer, split, max_items, seed))
    asr_items = None if max_items is None else min(max_items, 64)
    figures.update(lm_asr_figures(model, tokenizer, load_read_speech(layout, split), asr_items, seed))
    return figures, details


def _validation_text(layout: RunLayout, limit: int = 256) -> list[str]:
    lines = (layout.corpus / "text" / "validation.txt").read_text().splitlines()
    return [line for line in lines if line.strip()][:limit]


@torch.no_grad()
def text_figures(layout: RunLayout) -> dict:
    """Text perplexity of the text LLM, after PT-1 and after SFT, and whether PT-1 left the text path unchanged."""
    lines = _validation_text(layout)
    tokenizer = AutoTokenizer.from_pretrained(layout.text_llm, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(layout.text_llm, local_files_only=True).eval()
    out: dict = {"text_ppl_base": text_perplexity(base, tokenizer, lines)}
    for stage in ("pt1", "pt2", "sft"):
        if (layout.export(stage) / "config.json").is_file():
            model = load_moss_speech(layout.export(stage)).eval()
            out[f"text_ppl_after_{stage}"] = text_perplexity(model, tokenizer, lines)
            if stage == "pt1":
                out["text_path_unchanged"] = text_logits_equal(model, base, tokenizer, lines)
    return out
