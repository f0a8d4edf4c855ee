"""Build the built-in spoken corpus: a text corpus, read speech and spoken QA, synthesized with eSpeak NG.

Layout of ``DIR``::

    corpus.json                    summary: counts, hours, voices, assistant voice, held-out fact ids, seed, preset
    facts.jsonl                    every fact (questions, statements, answer, heldout flag) for evaluation
    text/{train,validation}.txt    the facts as statements and as text QA (all facts, held-out ones included)
    read/{train,validation,test}.jsonl   read speech manifests (see manifest.py)
    qa/{train,validation,test}.jsonl     spoken QA manifests
    wav/...                        16 kHz mono 16-bit WAVs

Splits that test something real:

- ``test`` asks every fact twice: once in a voice never heard in training (``unseen_voice``) and once in a training
  voice; ``read/test`` is spoken by unseen voices only.
- Held-out facts (``heldout``, ~10% per category) have no question, statement or QA audio in any training or
  validation speech; their text is in ``text/train.txt``. Only the bare assistant answer ("the answer is paris",
  which carries no fact without its question) and neutral mentions of place names are read in training, so the
  model can *say* every answer without ever having heard the fact.

The plan (what to say, in which voice) is drawn from ``random.Random(seed)`` before any audio is made, and eSpeak
and soxr are deterministic, so a seed gives the same corpus on any number of workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from moss_components.data.espeak import VoiceSpec
from moss_components.data.facts import Fact, load_facts, mention_sentences, select_heldout
from moss_components.data.manifest import write_manifest
from moss_components.data.voices import ASSISTANT_VOICE, VoicePool, train_pool, unseen_pool

SAMPLE_RATE = 16000
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CorpusPreset:
    """How much of everything to synthesize.

    Args:
        questions_per_fact: spoken questions per seen fact in ``qa/train`` (each a fresh voice and phrasing).
        statements_per_fact: spoken statements per seen fact in ``read/train``.
        mentions_per_sentence: readings of each neutral mention sentence in ``read/train``.
        validation_per_fact: spoken questions and statements per seen fact in the validation split.
        test_unseen_per_fact / test_seen_per_fact: questions per fact (all facts) in ``qa/test`` in unseen /
            training voices.
        heldout_fraction: share of each category held out of all speech training data.
        max_facts: keep only this many facts (spread over categories), for tests.
        wide_voices: training voices from 71 eSpeak variants instead of 15 (426 voices instead of 90); the unseen
            pool is the same.
    """

    questions_per_fact: int = 6
    statements_per_fact: int = 4
    mentions_per_sentence: int = 2
    validation_per_fact: int = 1
    test_unseen_per_fact: int = 1
    test_seen_per_fact: int = 1
    heldout_fraction: float = 0.1
    max_facts: int | None = None
    wide_voices: bool = False


PRESETS = {
    "tiny": CorpusPreset(),
    "small": CorpusPreset(
        questions_per_fact=60,
        statements_per_fact=50,
        mentions_per_sentence=15,
        validation_per_fact=6,
        test_unseen_per_fact=3,
        test_seen_per_fact=2,
    ),
    # tiny's utterances in 426 training voices instead of 90: a tokenizer that reads unseen voices better
    "tiny-wide": CorpusPreset(wide_voices=True),
    # A handful of utterances for tests: 12 facts, one of everything.
    "micro": CorpusPreset(questions_per_fact=1, statements_per_fact=1, max_facts=12, heldout_fraction=0.1),
}


@dataclass(frozen=True)
class Job:
    """One utterance to render: ``text`` spoken by ``voice`` into ``DIR/audio``."""

    audio: str
    text: str
    voice: VoiceSpec


def spoken_form(text: str, question: bool) -> str:
    """What eSpeak is given for transcript ``text``."""
    # Punctuation only steers eSpeak's intonation; transcripts stay without it.
    return text + ("?" if question else ".")


def _subset_facts(facts: list[Fact], max_facts: int) -> list[Fact]:
    """Round-robin over categories so a small subset still has every category."""
    by_cat: dict[str, list[Fact]] = {}
    for f in facts:
        by_cat.setdefault(f.category, []).append(f)
    out: list[Fact] = []
    while len(out) < max_facts and any(by_cat.values()):
        for cat in list(by_cat):
            if by_cat[cat] and len(out) < max_facts:
                out.append(by_cat[cat].pop(0))
    return out


class _Planner:
    """Draws the whole corpus plan (manifests + render jobs) from one seeded RNG."""

    def __init__(self, preset: CorpusPreset, seed: int) -> None:
        self.p, self.rng = preset, random.Random(seed)
        facts = load_facts()
        if preset.max_facts is not None:
            facts = _subset_facts(facts, preset.max_facts)
        self.facts = facts
        self.heldout = select_heldout(facts, preset.heldout_fraction, seed)
        self.seen = [f for f in facts if f.id not in self.heldout]
        self.train_voices, self.unseen_voices = train_pool(preset.wide_voices), unseen_pool()
        self.jobs: dict[str, Job] = {}
        self.counter = 0

    def _job(self, folder: str, text: str, voice: VoiceSpec, question: bool) -> tuple[str, Job]:
        self.counter += 1
        uid = f"{folder.replace('/', '-')}-{self.counter:06d}"
        job = Job(f"wav/{folder}/{uid}.wav", spoken_form(text, question), voice)
        self.jobs[uid] = job
        return uid, job

    def _read(self, split: str, kind: str, text: str, pool: VoicePool, fact: Fact | None, unseen: bool) -> dict:
        voice = pool.sample(self.rng)
        uid, job = self._job(f"read/{split}", text, voice, question=False)
        return self._read_record(uid, job, text, kind, fact, unseen)

    @staticmethod
    def _read_record(uid: str, job: Job, text: str, kind: str, fact: Fact | None, unseen: bool) -> dict:
        rec = {"id": uid, "audio": job.audio, "text": text, "voice": job.voice.name, "duration": None}
        rec.update(sample_rate=SAMPLE_RATE, kind=kind, rate=job.voice.rate, pitch=job.voice.pitch)
        rec.update(fact_id=fact.id if fact else None, unseen_voice=unseen)
        return rec

    def _qa(self, split: str, fact: Fact, pool: VoicePool, unseen: bool, answers: dict[str, Job]) -> dict:
        question = self.rng.choice(fact.questions)
        uid, job = self._job(f"qa/{split}", question, pool.sample(self.rng), question=True)
        ans = answers[fact.id]
        return {
            "id": uid,
            "fact_id": fact.id,
            "category": fact.category,
            "question_text": question,
            "answer_text": fact.answer_text,
            "answer": fact.answer,
            "question_audio": job.audio,
            "answer_audio": ans.audio,
            "question_voice": job.voice.name,
            "answer_voice": ans.voice.name,
            "question_duration": None,
            "answer_duration": None,
            "sample_rate": SAMPLE_RATE,
            "heldout": fact.id in self.heldout,
            "unseen_voice": unseen,
        }

    def plan(self) -> tuple[dict[str, dict[str, list[dict]]], list[str], list[str]]:
        """Return ``({"read"|"qa": {split: records}}, text_train_lines, text_validation_lines)``."""
        p, rng = self.p, self.rng
        # One assistant answer per fact, shared by every QA line that asks it.
        answers: dict[str, Job] = {}
        answer_reads = []
        for f in self.facts:
            uid = f"answer-{f.id}"
            job = Job(f"wav/answers/{uid}.wav", spoken_form(f.answer_text, False), ASSISTANT_VOICE)
            self.jobs[uid] = job
            answers[f.id] = job
            # fact_id is recorded, but the bare answer carries no fact without its question (module docstring).
            answer_reads.append(self._read_record(uid, job, f.answer_text, "answer", f, False))
        man: dict[str, dict[str, list[dict]]] = {"read": {}, "qa": {}}

        qa_train = [
            self._qa("train", f, self.train_voices, False, answers)
            for f in self.seen
            for _ in range(p.questions_per_fact)
        ]
        qa_val = [
            self._qa("validation", f, self.train_voices, False, answers)
            for f in self.seen
            for _ in range(p.validation_per_fact)
        ]
        qa_test = [
            self._qa("test", f, self.unseen_voices, True, answers)
            for f in self.facts
            for _ in range(p.test_unseen_per_fact)
        ]
        qa_test += [
            self._qa("test", f, self.train_voices, False, answers)
            for f in self.facts
            for _ in range(p.test_seen_per_fact)
        ]
        man["qa"] = {"train": qa_train, "validation": qa_val, "test": qa_test}

        def statements(split: str, facts: list[Fact], n: int, pool: VoicePool, unseen: bool) -> list[dict]:
            return [
                self._read(split, "statement", rng.choice(f.statements), pool, f, unseen)
                for f in facts
                for _ in range(n)
            ]

        def question_reads(qa: list[dict]) -> list[dict]:
            # The QA questions are read speech too (same WAV), so the tokenizer hears question intonation.
            out = []
            for q in qa:
                rec = {"id": f"read-{q['id']}", "audio": q["question_audio"], "text": q["question_text"]}
                rec.update(voice=q["question_voice"], duration=None, sample_rate=SAMPLE_RATE, kind="question")
                rec.update(fact_id=q["fact_id"], unseen_voice=q["unseen_voice"])
                out.append(rec)
            return out

        mentions = [
            self._read("train", "mention", s, self.train_voices, None, False)
            for s in mention_sentences()
            if self.p.max_facts is None
            for _ in range(p.mentions_per_sentence)
        ]
        read_train = statements("train", self.seen, p.statements_per_fact, self.train_voices, False)
        read_train += mentions + answer_reads + question_reads(qa_train)
        read_val = statements("validation", self.seen, p.validation_per_fact, self.train_voices, False)
        read_val += question_reads(qa_val)
        read_test = statements("test", self.facts, 1, self.unseen_voices, True)
        read_test += [r for r in question_reads(qa_test) if r["unseen_voice"]]
        man["read"] = {"train": read_train, "validation": read_val, "test": read_test}

        # Text corpus: every fact (held-out included) as statements and as text QA.
        lines = []
        for f in self.facts:
            lines += [s + "." for s in f.statements]
            lines += [f"{q}? {f.answer_text}." for q in f.questions]
        rng.shuffle(lines)
        n_val = max(1, len(lines) // 10)
        # The facts are a closed world: validation lines are a sample of the same lines (the text LLM must know
        # every fact), so validation loss measures memorization, which is what the pipeline needs.
        return man, lines, rng.sample(lines, n_val)


SHARD_SIZE = 500


def _render_shard(args: tuple[list[tuple[str, Job]], str]) -> list[tuple[str, int]]:
    """Render one shard of jobs in a fresh process; return ``[(uid, num_samples at 16 kHz)]``.

    eSpeak's output depends on what the process synthesized before (its internal state survives
    ``espeak_Terminate``) and on its noise generators (seeded per utterance from the id). A fresh process rendering
    the same jobs in the same order with the same seeds gives identical audio. So
    shards are fixed by the plan alone and each runs in its own process (``maxtasksperchild=1``): the corpus is
    the same for any number of workers. A shard whose files all exist is skipped (resume); otherwise it is redone
    whole, to keep eSpeak's state sequence.
    """
    import soundfile as sf

    from moss_components.data.espeak import EspeakSynth

    jobs, root = args
    paths = [Path(root) / job.audio for _, job in jobs]
    if all(p.is_file() for p in paths):
        return [(uid, sf.info(str(p)).frames) for (uid, _), p in zip(jobs, paths)]
    synth = EspeakSynth()
    out = []
    for (uid, job), path in zip(jobs, paths):
        wav = synth.synthesize_float(job.text, job.voice, SAMPLE_RATE, seed=zlib.crc32(uid.encode()))
        tmp = path.with_name(path.stem + ".tmp.wav")
        sf.write(str(tmp), wav, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, path)  # atomic: a killed build leaves no half-written WAV
        out.append((uid, len(wav)))
    return out


def build_corpus(
    out: str | os.PathLike,
    preset: str | CorpusPreset = "tiny",
    seed: int = 0,
    workers: int | None = None,
    max_facts: int | None = None,
    progress: bool = True,
) -> dict:
    """Synthesize the corpus into ``out`` and return the ``corpus.json`` summary (see the module docstring).

    Args:
        preset: ``"tiny"``, ``"small"``, ``"micro"`` (tests) or a :class:`CorpusPreset`.
        seed: the corpus is a deterministic function of ``(preset, seed)``.
        workers: synthesis processes (default: CPU count). eSpeak is a process-global singleton, hence processes.
        max_facts: keep only this many facts (overrides the preset's), for quick tests.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        preset_name, spec = preset, PRESETS[preset]
    else:
        preset_name, spec = "custom", preset
    if max_facts is not None:
        spec = replace(spec, max_facts=max_facts)
    root = Path(out)
    planner = _Planner(spec, seed)
    man, text_train, text_val = planner.plan()
    for job in planner.jobs.values():
        (root / job.audio).parent.mkdir(parents=True, exist_ok=True)

    workers = workers or os.cpu_count() or 1
    items = list(planner.jobs.items())
    shards = [(items[i : i + SHARD_SIZE], str(root)) for i in range(0, len(items), SHARD_SIZE)]
    samples: dict[str, int] = {}
    # spawn: a forked child would inherit the parent's eSpeak state, if the parent ever synthesized.
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(workers, len(shards)), maxtasksperchild=1) as pool:
        bar = tqdm(total=len(items), desc="synth-data", unit="utt", disable=not progress)
        for done in pool.imap_unordered(_render_shard, shards):
            samples.update(done)
            bar.update(len(done))
        bar.close()
    by_audio = {planner.jobs[uid].audio: n / SAMPLE_RATE for uid, n in samples.items()}

    hours: dict[str, dict[str, float]] = {"read": {}, "qa": {}}
    for split, recs in man["read"].items():
        for r in recs:
            r["duration"] = round(by_audio[r["audio"]], 4)
        hours["read"][split] = round(sum(r["duration"] for r in recs) / 3600, 4)
    for split, recs in man["qa"].items():
        for r in recs:
            r["question_duration"] = round(by_audio[r["question_audio"]], 4)
            r["answer_duration"] = round(by_audio[r["answer_audio"]], 4)
        hours["qa"][split] = round(sum(r["question_duration"] + r["answer_duration"] for r in recs) / 3600, 4)
    for kind in ("read", "qa"):
        for split, recs in man[kind].items():
            write_manifest(root / kind / f"{split}.jsonl", recs)
    (root / "text").mkdir(parents=True, exist_ok=True)
    (root / "text" / "train.txt").write_text("\n".join(text_train) + "\n")
    (root / "text" / "validation.txt").write_text("\n".join(text_val) + "\n")
    with open(root / "facts.jsonl", "w") as f:
        for fact in planner.facts:
            f.write(json.dumps({**fact.to_dict(), "heldout": fact.id in planner.heldout}) + "\n")

    summary = {
        "format_version": FORMAT_VERSION,
        "preset": preset_name,
        "preset_spec": asdict(spec),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "counts": {
            "read": {s: len(r) for s, r in man["read"].items()},
            "qa": {s: len(r) for s, r in man["qa"].items()},
            "text": {"train": len(text_train), "validation": len(text_val)},
            "wav_files": len(planner.jobs),
            "facts": len(planner.facts),
            "heldout_facts": len(planner.heldout),
        },
        "hours": hours,
        "audio_hours_total": round(sum(by_audio.values()) / 3600, 4),
        "voices": {"train": planner.train_voices.names, "unseen": planner.unseen_voices.names},
        "assistant_voice": asdict(ASSISTANT_VOICE) | {"name": ASSISTANT_VOICE.name},
        "heldout_fact_ids": sorted(planner.heldout),
        "build_seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
    }
    (root / "corpus.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def format_summary(summary: dict) -> str:
    """A short human-readable table of a ``corpus.json`` summary."""
    c, h = summary["counts"], summary["hours"]
    lines = [f"corpus: preset {summary['preset']}, seed {summary['seed']}, built in {summary['build_seconds']} s"]
    lines.append(f"{'split':<12}{'read utts':>10}{'read h':>9}{'qa pairs':>10}{'qa h':>8}")
    for s in ("train", "validation", "test"):
        lines.append(f"{s:<12}{c['read'][s]:>10}{h['read'][s]:>9.3f}{c['qa'][s]:>10}{h['qa'][s]:>8.3f}")
    lines.append(
        f"text lines: {c['text']['train']} train, {c['text']['validation']} validation; "
        f"facts: {c['facts']} ({c['heldout_facts']} held out); WAV files: {c['wav_files']}; "
        f"audio: {summary['audio_hours_total']:.3f} h"
    )
    lines.append(
        f"voices: {len(summary['voices']['train'])} training, {len(summary['voices']['unseen'])} unseen; "
        f"assistant: {summary['assistant_voice']['name']} (rate {summary['assistant_voice']['rate']}, "
        f"pitch {summary['assistant_voice']['pitch']})"
    )
    return "\n".join(lines)
