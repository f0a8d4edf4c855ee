"""Tutorial 06, latency and streaming: what chunked decoding costs in quality and buys in time to first audio.

Two measurements on a finished pipeline run:

1. Resynthesis quality against chunk size and look-ahead. Test-split read speech of voices unseen in training:
   ``wav -> speech tokenizer -> ids -> chunked flow-matching decoder -> vocoder -> ASR judge``, CER against the
   transcript. A chunk of ``c`` ids is emitted once ``L`` more ids have arrived (``L`` = look-ahead); the decoder was
   trained with ``chunk_tokens`` = 8 and a 3-id look-ahead convolution. A chunk's frames depend on the ids up to
   its end plus 3, so ``L`` = 3 is exact (the library's ``DecoderStream``); ``L`` < 3 emits sooner and decodes the
   missing look-ahead ids as the end of the utterance. A chunk size other than 8 changes the decoder's
   chunk-causal attention masks at inference only (its weights were trained with 8).
2. ``chat --stream`` against one-shot decoding on test-split spoken questions: time to the first audio chunk, total
   time and real-time factor (``SpokenChat.answer``, the call ``moss-speech chat`` makes), for each chunk size,
   and the streamed-vs-one-shot audio difference.

Timings are wall-clock on one thread of a shared 2-core machine: each is the median of repeats.

    python tutorials/06_latency_streaming.py --budget smoke|full [--base DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "tutorials" / "results" / "06_latency_streaming"

# chunks: ids per chunk (80 ms each at 12.5 Hz); lookaheads: ids waited for past a chunk's end (3: the decoder's
# own, exact); clips x seeds: read test clips x decoder noise draws; questions x repeats: chat answers timed;
# synth_repeats: timings of the first chunk; max_new_tokens: the longest answer. smoke: a reduced grid.
BUDGETS = {
    "smoke": {
        "chunks": (2, 8),
        "lookaheads": (0, 3),
        "clips": 1,
        "seeds": 1,
        "questions": 1,
        "repeats": 1,
        "synth_repeats": 1,
        "max_new_tokens": 12,
    },
    "full": {
        "chunks": (1, 2, 4, 8, 16),
        "lookaheads": (0, 1, 2, 3),
        "clips": 24,
        "seeds": 2,
        "questions": 4,
        "repeats": 3,
        "synth_repeats": 3,
        "max_new_tokens": 50,
    },
}
WHOLE = 1_000_000  # a chunk longer than any utterance: one-shot decoding with full context
SNR_CAP_DB = 150.0  # identical signals (JSON has no infinity)


def base_run(budget: str, base: str | None) -> Path:
    """The finished pipeline run the tutorial builds on (made here, resumably, when ``--base`` is not given)."""
    from moss_components.cli.pipeline import pipeline

    if base is not None:
        root = Path(base)
        if not (root / "stages" / "evaluate.json").is_file():
            raise SystemExit(f"--base {base!r} is not a finished pipeline run (no stages/evaluate.json)")
        return root
    preset, out = ("smoke", "runs/tutorials/base-smoke") if budget == "smoke" else ("tiny", "runs/demo")
    pipeline(preset=preset, out=str(REPO / out))
    return REPO / out


def spread(rows: list[dict], n: int) -> list[dict]:
    """``n`` rows evenly spaced over ``rows`` (spreads voices and sentences instead of taking the first few)."""
    if len(rows) < n:
        raise SystemExit(f"need {n} test-split items of unseen voices, the base corpus has {len(rows)}")
    return [rows[i * len(rows) // n] for i in range(n)]


def snr_db(reference, other) -> float:
    """``10 log10(|ref|^2 / |ref - other|^2)`` in dB, capped at ``SNR_CAP_DB`` for identical signals."""
    if reference.shape != other.shape:
        raise ValueError(f"cannot compare audio of {reference.numel()} and {other.numel()} samples")
    noise = float(((reference - other) ** 2).sum())
    if noise == 0.0:
        return SNR_CAP_DB
    return min(SNR_CAP_DB, 10 * math.log10(max(float((reference**2).sum()), 1e-20) / noise))


class LookaheadStream:
    """Speech ids in, audio out, one id at a time, like the library's ``SpeechStream``, except that a chunk of
    ``decoder.chunk_tokens`` ids is emitted once ``lookahead`` ids past its end have arrived (``SpeechStream`` waits
    for the decoder's own ``lookahead_tokens``; with that value the two give the same audio, which every run checks).

    Each chunk decodes the ids received so far (the look-ahead ids not yet received are decoded as the end of the
    utterance) and keeps its own frames; the mel goes on through the library's exact ``VocoderStream``.

    Args:
        memo: prefix length -> decoded mel, shared by streams over the same ids, chunk size and seed.
    """

    def __init__(self, decoder, vocoder, lookahead: int, seed: int, memo: dict | None = None) -> None:
        from moss_components.chat import VocoderStream

        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0 ids, got {lookahead}")
        self.decoder, self.lookahead, self.seed = decoder, lookahead, seed
        self.memo = {} if memo is None else memo
        self.vocoder = VocoderStream(vocoder)
        self.ids: list[int] = []
        self.done = 0  # ids whose frames were emitted

    def _emit(self, upto: int):
        import torch

        have = len(self.ids)
        if have not in self.memo:
            self.memo[have] = self.decoder.decode(torch.tensor([self.ids]), seed=self.seed)
        fpt = self.decoder.frames_per_token
        mel = self.memo[have][..., self.done * fpt : upto * fpt]
        self.done = upto
        return self.vocoder.push(mel)[0]

    def push(self, speech_id: int):
        """One new id -> ``(T,)`` audio samples that became final (``T`` may be 0)."""
        import torch

        self.ids.append(int(speech_id))
        c = self.decoder.chunk_tokens
        ready = max(0, (len(self.ids) - self.lookahead) // c) * c
        return self._emit(ready) if ready > self.done else torch.zeros(0)

    def flush(self):
        """End of the ids: the rest of the audio."""
        import torch

        head = self._emit(len(self.ids)) if len(self.ids) > self.done else torch.zeros(0)
        return torch.cat([head, self.vocoder.flush()[0]]).clamp(-1, 1)

    def run(self, ids: list[int]):
        """All ``ids`` pushed one by one: the whole audio."""
        import torch

        return torch.cat([*(self.push(i) for i in ids), self.flush()]).clamp(-1, 1)


def bootstrap_cer(
    edits: list[float], chars: list[int], ref_edits: list[float] | None = None, seed: int = 0, draws: int = 2000
) -> tuple[float, float]:
    """90% interval of the corpus CER (total edits / total characters) over clips drawn with replacement; with
    ``ref_edits`` (the same clips under a reference setting), of the paired difference CER - CER_ref."""
    import numpy as np

    e, c = np.asarray(edits, dtype=float), np.asarray(chars, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(e), size=(draws, len(e)))
    stats = e[idx].sum(1) / c[idx].sum(1)
    if ref_edits is not None:
        stats = stats - np.asarray(ref_edits, dtype=float)[idx].sum(1) / c[idx].sum(1)
    return float(np.quantile(stats, 0.05)), float(np.quantile(stats, 0.95))


def resynthesis(bot, base: Path, n_clips: int, n_seeds: int, chunks, lookaheads) -> dict:
    """CER and the audio difference from one-shot decoding for every (chunk, look-ahead), on read test speech."""
    import torch
    from tqdm import tqdm

    from moss_components.asr import cer, normalize_text
    from moss_components.chat import SpeechStream, read_question_audio
    from moss_components.data.manifest import read_manifest

    dec, voc = bot.output.decoder, bot.output.vocoder
    rate = bot.speech_tokenizer.sample_rate
    rows = read_manifest(base / "corpus" / "read" / "test.jsonl", required=("audio", "text"))
    rows = spread([r for r in rows if r.get("unseen_voice")], n_clips)
    clips = []
    for row in rows:
        wav = read_question_audio(base / "corpus" / row["audio"], rate)
        ids = bot.question_ids(wav, rate).tolist()
        clips.append(
            {"id": row["id"], "voice": row["voice"], "text": normalize_text(row["text"]), "wav": wav, "ids": ids}
        )
    # decoder noise: clip k, draw s uses seed k + 1000 s, the same for every setting (paired comparisons); a clip's
    # edits are summed over its draws, so the bootstrap over clips carries the noise's spread too
    seeds = [[k + 1000 * s for s in range(n_seeds)] for k in range(len(clips))]
    chars = [len(c["text"]) * n_seeds for c in clips]

    def edits(wav, clip) -> float:
        return cer(bot.output.transcribe([wav]), [clip["text"]]) * len(clip["text"])

    original = [edits(c["wav"], c) * n_seeds for c in clips]
    trained = (dec.chunk_tokens, dec.lookahead_tokens)
    per = {(c, la): {"edits": [0.0] * len(clips), "snr": [], "max_abs": []} for c in chunks for la in lookaheads}
    whole_edits = [0.0] * len(clips)
    bar = tqdm(total=len(clips) * n_seeds * (len(chunks) + 1), desc="resynthesis", unit="clip x chunk")
    try:
        dec.chunk_tokens = WHOLE
        for k, clip in enumerate(clips):
            for seed in seeds[k]:
                audio = voc(dec.decode(torch.tensor([clip["ids"]]), seed=seed))[0].clamp(-1, 1)
                whole_edits[k] += edits(audio, clip)
                bar.update(1)
        for c in chunks:
            dec.chunk_tokens = c
            for k, clip in enumerate(clips):
                for seed in seeds[k]:
                    memo: dict = {}
                    one_shot = LookaheadStream(dec, voc, len(clip["ids"]), seed, memo).run(clip["ids"])
                    for la in lookaheads:
                        wav = LookaheadStream(dec, voc, la, seed, memo).run(clip["ids"])
                        p = per[(c, la)]
                        p["edits"][k] += edits(wav, clip)
                        p["snr"].append(snr_db(one_shot, wav))
                        p["max_abs"].append(float((one_shot - wav).abs().max()))
                    bar.update(1)
        # at the decoder's own look-ahead, LookaheadStream is the library's SpeechStream: check it on one clip
        dec.chunk_tokens = trained[0]
        ids = clips[0]["ids"]
        with SpeechStream(dec, voc, seed=0) as stream:
            theirs = torch.cat([*(stream.push([i]) for i in ids), stream.flush()])
        ours = LookaheadStream(dec, voc, dec.lookahead_tokens, 0).run(ids)
        if theirs.shape != ours.shape:
            raise RuntimeError(f"LookaheadStream gave {ours.numel()} samples, SpeechStream {theirs.numel()}")
        check = float((theirs - ours).abs().max())
    finally:
        dec.chunk_tokens = trained[0]
        bar.close()

    ref = per.get(trained)  # the setting chat streams with; None when the grid leaves it out
    points = []
    for (c, la), p in per.items():
        lo, hi = bootstrap_cer(p["edits"], chars)
        point = {
            "chunk_tokens": c,
            "chunk_ms": c * 1000 / bot.speech_tokenizer.frame_rate,
            "lookahead_tokens": la,
            "exact": la >= dec.lookahead_tokens,
            "cer": sum(p["edits"]) / sum(chars),
            "cer_lo": lo,
            "cer_hi": hi,
            "snr_db_vs_one_shot_median": statistics.median(p["snr"]),
            "snr_db_vs_one_shot_min": min(p["snr"]),
            "max_abs_diff_vs_one_shot": max(p["max_abs"]),
        }
        if ref is not None:
            point["delta_cer_vs_trained"] = point["cer"] - sum(ref["edits"]) / sum(chars)
            point["delta_lo"], point["delta_hi"] = bootstrap_cer(p["edits"], chars, ref_edits=ref["edits"])
        points.append(point)
    return {
        "clips": len(clips),
        "decoder_noise_draws_per_clip": n_seeds,
        "clip_ids": [c["id"] for c in clips],
        "voices": sorted({c["voice"] for c in clips}),
        "audio_seconds": round(sum(c["wav"].numel() for c in clips) / rate, 2),
        "ids_per_clip": [len(c["ids"]) for c in clips],
        "decoder_seeds": f"clip k, draw s: seed k + 1000 s (s < {n_seeds}), the same for all settings",
        "trained_setting": {"chunk_tokens": trained[0], "lookahead_tokens": trained[1]},
        "original_audio_cer": sum(original) / sum(chars),
        "one_shot_whole_context_cer": sum(whole_edits) / sum(chars),
        "one_shot_whole_context_cer_90": bootstrap_cer(whole_edits, chars),
        "points": points,
        "check_vs_speech_stream_max_abs_diff": check,
    }


def chat_latency(bot, base: Path, n_questions: int, repeats: int, max_new_tokens: int, chunks, out: Path) -> dict:
    """Time ``SpokenChat.answer`` (what ``moss-speech chat`` runs) streamed at each chunk size and one-shot.

    Each answer is timed twice: wall clock (``ChatTimings``) and the process's CPU time at its first and last audio
    chunk (one thread: what a dedicated core would take, whatever the neighbours do). The CPU time of an LM step is
    that of a one-shot answer less its encode and its decoding + vocoding, both timed alone, per generated id.
    """
    from tqdm import tqdm

    from moss_components.chat import StreamingWavWriter, read_question_audio
    from moss_components.data.manifest import read_manifest
    from moss_components.evaluation.answers import answer_is_correct
    from moss_components.generation import SamplingConfig

    dec = bot.output.decoder
    rate = bot.speech_tokenizer.sample_rate
    rows = read_manifest(base / "corpus" / "qa" / "test.jsonl", required=("question_audio", "question_text"))
    rows = spread([r for r in rows if r.get("unseen_voice")], n_questions)
    wavs = [read_question_audio(base / "corpus" / row["question_audio"], rate) for row in rows]
    # chat's defaults (temperature 0.6, top-p 0.95, top-k 20, repetition penalty 1.1, seed 0): the same answer ids
    # whatever the decoder does, so every setting speaks the same answer
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, seed=0)
    trained_chunk = dec.chunk_tokens
    settings = [("stream", c) for c in chunks] + [("one-shot", c) for c in chunks]
    runs: dict = {}  # (question, kind, chunk) -> [(ChatAnswer, cpu to first chunk, cpu to last chunk)]
    # one untimed answer first: the first call pays for lazy initialisation (allocator, kernels, caches)
    bot.answer(wavs[0], rate, stream=True, sampling=sampling)
    bar = tqdm(total=len(rows) * len(settings) * repeats, desc="chat", unit="answer")
    try:
        for q, wav in enumerate(wavs):
            for _ in range(repeats):
                for kind, c in settings:
                    dec.chunk_tokens = c
                    path = out / "chat" / f"q{q}_{kind}_c{c}.wav"
                    marks: list[float] = []  # process CPU time at each audio chunk
                    with StreamingWavWriter(path, bot.sample_rate) as writer:  # as the CLI does, chunk by chunk

                        def on_chunk(chunk, w=writer, marks=marks):
                            w.write(chunk.audio)
                            marks.append(time.process_time())

                        cpu0 = time.process_time()
                        answer = bot.answer(wav, rate, stream=kind == "stream", sampling=sampling, on_chunk=on_chunk)
                    cpu = (marks[0] - cpu0, marks[-1] - cpu0) if marks else (None, None)
                    runs.setdefault((q, kind, c), []).append((answer, *cpu))
                    bar.update(1)
        dec.chunk_tokens = trained_chunk
        encode_cpu, synth_cpu = [], []  # per question, medians of repeats
        for q, wav in enumerate(wavs):
            ids = runs[(q, "one-shot", trained_chunk if trained_chunk in chunks else chunks[0])][0][0].speech_ids
            e, s = [], []
            for _ in range(repeats):
                t0 = time.process_time()
                bot.question_ids(wav, rate)
                e.append(time.process_time() - t0)
                t0 = time.process_time()
                bot.output.speak([ids], seed=bot.decoder_seed)
                s.append(time.process_time() - t0)
            encode_cpu.append(statistics.median(e))
            synth_cpu.append(statistics.median(s))
    finally:
        dec.chunk_tokens = trained_chunk
        bar.close()

    def median(q, kind, c, get):
        values = [get(*run) for run in runs[(q, kind, c)]]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    questions = []
    shown = trained_chunk if trained_chunk in chunks else chunks[0]  # whose audio the transcript is of
    for q, row in enumerate(rows):
        first = runs[(q, "stream", shown)][0][0]
        if any(a.speech_ids != first.speech_ids for key, rs in runs.items() if key[0] == q for a, _, _ in rs):
            raise RuntimeError(f"question {row['id']}: the answer ids differ between settings (seeded sampling)")
        questions.append(
            {
                "id": row["id"],
                "question_text": row["question_text"],
                "voice": row["question_voice"],
                "answer_ids": len(first.speech_ids),
                "stopped": first.stopped,
                "audio_seconds": first.timings.audio_seconds,
                "transcript": first.transcript,
                "expected_answer": row["answer"],
                "correct": answer_is_correct(first.transcript or "", row["answer"]),
            }
        )
    audio = [q["audio_seconds"] for q in questions]
    per_chunk = []
    for c in chunks:
        entry = {"chunk_tokens": c}
        for kind in ("stream", "one-shot"):
            n = range(len(rows))
            for field in ("first_audio_seconds", "total_seconds", "generation_seconds", "synthesis_seconds"):
                entry[f"{kind}_{field}"] = mean(
                    median(q, kind, c, lambda a, f, t, field=field: getattr(a.timings, field)) for q in n
                )
            entry[f"{kind}_first_audio_cpu_seconds"] = mean(median(q, kind, c, lambda a, f, t: f) for q in n)
            entry[f"{kind}_total_cpu_seconds"] = mean(median(q, kind, c, lambda a, f, t: t) for q in n)
            for clock, get in (("", lambda a, f, t: a.timings.total_seconds), ("_cpu", lambda a, f, t: t)):
                rtf = [median(q, kind, c, get) / audio[q] if audio[q] > 0 else None for q in n]
                entry[f"{kind}_real_time_factor{clock}"] = mean(rtf)
        pairs = [(runs[(q, "stream", c)][0][0].audio, runs[(q, "one-shot", c)][0][0].audio) for q in range(len(rows))]
        entry["stream_vs_one_shot_same_length"] = all(a.numel() == b.numel() for a, b in pairs)
        entry["stream_vs_one_shot_max_abs_diff"] = max(
            float((a - b).abs().max()) if a.numel() else 0.0 for a, b in pairs
        )
        per_chunk.append(entry)
    every = [run for rs in runs.values() for run in rs]
    one_shot = [
        (median(q, "one-shot", shown, lambda a, f, t: t), runs[(q, "one-shot", shown)][0][0].timings.new_tokens)
        for q in range(len(rows))
    ]
    return {
        "questions": questions,
        "repeats": repeats,
        "max_new_tokens": max_new_tokens,
        "sampling": "chat defaults: temperature 0.6, top-p 0.95, top-k 20, repetition penalty 1.1, seed 0",
        "per_chunk": per_chunk,
        # wall clock, medians over every answer (an LM step's includes its share of the prompt's prefill)
        "lm_step_seconds": statistics.median(
            a.timings.generation_seconds / max(a.timings.new_tokens, 1) for a, _, _ in every
        ),
        "encode_seconds": statistics.median(a.timings.encode_seconds for a, _, _ in every),
        # CPU time, means over questions of medians of repeats
        "encode_cpu_seconds": statistics.mean(encode_cpu),
        "one_shot_synthesis_cpu_seconds": statistics.mean(synth_cpu),
        "lm_step_cpu_seconds": statistics.mean(
            (total - e - s) / max(steps, 1) for (total, steps), e, s in zip(one_shot, encode_cpu, synth_cpu) if total
        ),
        "answer_speech_ids": [runs[(q, "stream", shown)][0][0].speech_ids for q in range(len(rows))],
    }


def first_chunk(bot, latency: dict, chunks, lookaheads, repeats: int) -> list[dict]:
    """Time to first audio for every (chunk, look-ahead), on the chat answers' own ids: the answer's ids are pushed
    one by one into a :class:`LookaheadStream` until audio comes out (``ids_waited_for``; the decoder's look-ahead
    and the vocoder's receptive field both hold audio back), timing the pushes (median of ``repeats``). Then

        first audio = encode + ids_waited_for x LM step + synthesis time of those pushes

    in wall clock and in CPU time, with encode and the LM step measured in :func:`chat_latency`. ``chat`` measures
    the whole thing at the decoder's own look-ahead (``chat_measured_*``: compare)."""
    dec, voc = bot.output.decoder, bot.output.vocoder
    per_chunk = {e["chunk_tokens"]: e for e in latency["per_chunk"]}
    trained_chunk = dec.chunk_tokens
    out = []
    try:
        for c in chunks:
            dec.chunk_tokens = c
            for la in lookaheads:
                waited, wall, cpu = [], [], []
                for ids in latency["answer_speech_ids"]:
                    if not ids:
                        continue
                    walls, cpus = [], []
                    for _ in range(repeats):
                        stream = LookaheadStream(dec, voc, la, seed=bot.decoder_seed)
                        t0, c0 = time.perf_counter(), time.process_time()
                        n = 0
                        for i in ids:
                            n += 1
                            if stream.push(i).numel():
                                break
                        else:
                            stream.flush()  # the answer ended before a chunk was ready
                        walls.append(time.perf_counter() - t0)
                        cpus.append(time.process_time() - c0)
                    waited.append(n)
                    wall.append(statistics.median(walls))
                    cpu.append(statistics.median(cpus))
                if not waited:
                    raise SystemExit("every chat answer was empty (no speech ids): nothing to time")
                ids_waited = statistics.mean(waited)
                exact = la == dec.lookahead_tokens
                out.append(
                    {
                        "chunk_tokens": c,
                        "lookahead_tokens": la,
                        "ids_waited_for": ids_waited,
                        "synthesis_seconds": statistics.mean(wall),
                        "synthesis_cpu_seconds": statistics.mean(cpu),
                        "estimate_seconds": latency["encode_seconds"]
                        + ids_waited * latency["lm_step_seconds"]
                        + statistics.mean(wall),
                        "estimate_cpu_seconds": latency["encode_cpu_seconds"]
                        + ids_waited * latency["lm_step_cpu_seconds"]
                        + statistics.mean(cpu),
                        "chat_measured_seconds": per_chunk[c]["stream_first_audio_seconds"] if exact else None,
                        "chat_measured_cpu_seconds": per_chunk[c]["stream_first_audio_cpu_seconds"] if exact else None,
                    }
                )
    finally:
        dec.chunk_tokens = trained_chunk
    return out


def plot(results: dict, out: Path) -> list[Path]:
    """``resynthesis_cer.png`` (CER against chunk size, a line per look-ahead) and ``latency.png`` (first-chunk
    latency and real-time factor against chunk size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs, lat = results["resynthesis"], results["latency"]
    ms = 1000 / results["decoder"]["frame_rate_hz"]
    chunks, lookaheads = results["chunks"], results["lookaheads"]
    paired = all("delta_cer_vs_trained" in p for p in rs["points"])
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(12 if paired else 7, 4.4), squeeze=False)
    panels = [("cer", "cer_lo", "cer_hi", "resynthesis CER (ASR judge)")]
    if paired:
        panels.append(("delta_cer_vs_trained", "delta_lo", "delta_hi", "CER minus CER at the trained setting"))
    for ax, (key, lo, hi, ylabel) in zip(axes[0], panels):
        for j, la in enumerate(lookaheads):
            pts = [p for p in rs["points"] if p["lookahead_tokens"] == la]
            shift = 1 + 0.03 * (j - (len(lookaheads) - 1) / 2)  # small offsets keep the error bars apart
            err = [[p[key] - p[lo] for p in pts], [p[hi] - p[key] for p in pts]]
            label = f"look-ahead {la} ids ({la * ms:.0f} ms)" + (" = trained, exact" if pts[0]["exact"] else "")
            ax.errorbar(
                [p["chunk_ms"] * shift for p in pts],
                [p[key] for p in pts],
                yerr=err,
                marker="o",
                capsize=3,
                label=label,
            )
        ax.axvline(results["decoder"]["trained_chunk_tokens"] * ms, color="gray", lw=0.8, alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks([c * ms for c in chunks], [f"{c}\n{c * ms:.0f} ms" for c in chunks])
        ax.set_xlabel("decoder chunk (ids; grey line: the chunk it was trained with)")
        ax.set_ylabel(ylabel)
    ax = axes[0, 0]
    ax.axhline(rs["one_shot_whole_context_cer"], color="k", ls="--", lw=1, label="one-shot, whole-utterance attention")
    ax.axhline(rs["original_audio_cer"], color="gray", ls=":", lw=1, label="original audio (judge alone)")
    ax.legend(fontsize=8)
    ax.set_title(
        f"{rs['clips']} test clips of unseen voices x {rs['decoder_noise_draws_per_clip']} noise draws "
        "(bars: 90% bootstrap over clips)",
        fontsize=9,
    )
    if paired:
        axes[0, 1].axhline(0, color="k", lw=0.8)
        axes[0, 1].set_title(
            "paired with the trained setting (chunk 8, look-ahead 3): same clips, same noise", fontsize=9
        )
    fig.tight_layout()
    paths = [out / "resynthesis_cer.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    for la in lookaheads:
        pts = [p for p in results["first_chunk"] if p["lookahead_tokens"] == la]
        ax1.plot(
            [p["chunk_tokens"] for p in pts],
            [p["estimate_cpu_seconds"] for p in pts],
            marker=".",
            label=f"look-ahead {la}: CPU time, from measured parts",
        )
    per = lat["per_chunk"]
    cs = [e["chunk_tokens"] for e in per]
    ax1.plot(cs, [e["stream_first_audio_cpu_seconds"] for e in per], "ks", mfc="none", ms=9,
             label="chat --stream, CPU time (look-ahead 3)")  # fmt: skip
    ax1.plot(cs, [e["stream_first_audio_seconds"] for e in per], "o", color="gray", mfc="none",
             label="chat --stream, wall clock (loaded machine)")  # fmt: skip
    ax1.plot(cs, [e["one-shot_first_audio_cpu_seconds"] for e in per], "k--", label="chat one-shot, CPU time")
    ax1.plot(cs, [e["one-shot_first_audio_seconds"] for e in per], ":", color="gray", label="chat one-shot, wall clock")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(cs, [str(c) for c in cs])
    ax1.set_xlabel("decoder chunk (ids, 80 ms each)")
    ax1.set_ylabel("time to first audio chunk (s)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=7)
    ax2.plot(cs, [e["stream_real_time_factor_cpu"] for e in per], "o-", color="C0", label="chat --stream, CPU time")
    ax2.plot(cs, [e["stream_real_time_factor"] for e in per], "o:", color="C0", mfc="none", label="chat --stream, wall")
    ax2.plot(cs, [e["one-shot_real_time_factor_cpu"] for e in per], "s-", color="C1", label="chat one-shot, CPU time")
    ax2.plot(
        cs, [e["one-shot_real_time_factor"] for e in per], "s:", color="C1", mfc="none", label="chat one-shot, wall"
    )
    ax2.axhline(1.0, color="gray", lw=0.8)
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(cs, [str(c) for c in cs])
    ax2.set_xlabel("decoder chunk (ids)")
    ax2.set_ylabel("real-time factor (time / answer audio)")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"{len(lat['questions'])} spoken questions x {lat['repeats']} repeats (medians), one thread; wall clock on a "
        "2-core machine shared with other jobs",
        fontsize=9,
    )
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


def tables(results: dict) -> str:
    rs, lat = results["resynthesis"], results["latency"]
    first = {(p["chunk_tokens"], p["lookahead_tokens"]): p for p in results["first_chunk"]}

    def pair(wall, cpu) -> str:
        return "" if wall is None else f"{wall:.3f} / {cpu:.3f}"

    lines = [
        f"Resynthesis: {rs['clips']} read clips ({rs['audio_seconds']} s) of unseen voices x "
        f"{rs['decoder_noise_draws_per_clip']} decoder noise draws. ASR judge CER on the original audio "
        f"{rs['original_audio_cer']:.3f}; one-shot with whole-utterance attention "
        f"{rs['one_shot_whole_context_cer']:.3f}. Times: wall clock / CPU time, seconds.",
        "",
        "| chunk (ids / ms) | look-ahead (ids) | resynthesis CER [90% CI] | CER - CER(8, 3) [90% CI] | "
        "SNR vs one-shot, median (dB) | ids before first audio | first audio, from parts | "
        "first audio, chat --stream |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in rs["points"]:
        f = first[(p["chunk_tokens"], p["lookahead_tokens"])]
        delta = "n/a"
        if "delta_cer_vs_trained" in p:
            delta = f"{p['delta_cer_vs_trained']:+.3f} [{p['delta_lo']:+.3f}, {p['delta_hi']:+.3f}]"
        lines.append(
            f"| {p['chunk_tokens']} / {p['chunk_ms']:.0f} | {p['lookahead_tokens']}{' (exact)' if p['exact'] else ''}"
            f" | {p['cer']:.3f} [{p['cer_lo']:.3f}, {p['cer_hi']:.3f}] | {delta} | "
            f"{p['snr_db_vs_one_shot_median']:.1f} | {f['ids_waited_for']:.1f} | "
            f"{pair(f['estimate_seconds'], f['estimate_cpu_seconds'])} | "
            f"{pair(f['chat_measured_seconds'], f['chat_measured_cpu_seconds'])} |"
        )
    lines += [
        "",
        f"chat: {len(lat['questions'])} questions x {lat['repeats']} repeats (median of repeats, mean over questions), "
        f"answers of {', '.join(str(q['answer_ids']) for q in lat['questions'])} ids. Wall clock / CPU time.",
        "",
        "| chunk (ids) | first audio, stream (s) | total, stream (s) | RTF, stream | first audio = total, one-shot (s) "
        "| RTF, one-shot | max abs diff, stream vs one-shot |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in lat["per_chunk"]:
        lines.append(
            f"| {e['chunk_tokens']} | {pair(e['stream_first_audio_seconds'], e['stream_first_audio_cpu_seconds'])} | "
            f"{pair(e['stream_total_seconds'], e['stream_total_cpu_seconds'])} | "
            f"{pair(e['stream_real_time_factor'], e['stream_real_time_factor_cpu'])} | "
            f"{pair(e['one-shot_total_seconds'], e['one-shot_total_cpu_seconds'])} | "
            f"{pair(e['one-shot_real_time_factor'], e['one-shot_real_time_factor_cpu'])} | "
            f"{e['stream_vs_one_shot_max_abs_diff']:.2e} |"
        )
    return "\n".join(lines)


def repo_relative(obj):
    """``obj`` with every path string under the repository written relative to it (committed results stay portable)."""
    if isinstance(obj, dict):
        return {k: repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [repo_relative(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(f"{REPO}/"):
        return obj[len(f"{REPO}/") :]
    return obj


def resumable(path: Path, settings: dict, compute) -> dict:
    """``compute()``, saved to ``path`` with ``settings``; a rerun with the same settings reads it back instead."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            print(f"reusing {path} (same settings)")
            return saved["result"]
    result = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "result": result}, indent=2))
    tmp.replace(path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--base", help="a finished pipeline run (default: made or reused by the budget)")
    parser.add_argument("--out", help="output directory (default: runs/tutorials/06_latency_streaming/<budget>)")
    args = parser.parse_args()

    import torch

    from moss_components.chat import SpokenChat, vocoder_context_frames

    torch.set_num_threads(1)  # timings are for one thread; CPU time is then what one dedicated core would take
    torch.set_grad_enabled(False)  # inference only (a vocoder's forward would otherwise record a graph)
    budget = BUDGETS[args.budget]
    t_start = time.perf_counter()
    base = base_run(args.budget, args.base).resolve()
    out = Path(args.out or REPO / "runs" / "tutorials" / "06_latency_streaming" / args.budget).resolve()
    out.mkdir(parents=True, exist_ok=True)

    bot = SpokenChat.from_run(base)
    dec = bot.output.decoder
    settings = {"base": str(base), **{k: list(v) if isinstance(v, tuple) else v for k, v in budget.items()}}
    results = {
        "budget": args.budget,
        "base": str(base),
        "threads": 1,
        "chunks": list(budget["chunks"]),
        "lookaheads": list(budget["lookaheads"]),
        "machine": "2 CPU cores shared with other jobs; wall clock and process CPU time, medians of repeats",
        "decoder": {
            "trained_chunk_tokens": dec.chunk_tokens,
            "lookahead_tokens": dec.lookahead_tokens,
            "frames_per_token": dec.frames_per_token,
            "frame_rate_hz": bot.speech_tokenizer.frame_rate,
            "euler_steps": dec.steps,
            "guidance": dec.guidance,
            # mel frames (20 ms each) on each side that the vocoder needs: audio waits for them too
            "vocoder_context_frames": vocoder_context_frames(bot.output.vocoder),
        },
    }
    walls = {}
    t0 = time.perf_counter()
    results["resynthesis"] = resumable(
        out / "resynthesis.json",
        settings,
        lambda: resynthesis(bot, base, budget["clips"], budget["seeds"], budget["chunks"], budget["lookaheads"]),
    )
    walls["resynthesis"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lat = results["latency"] = resumable(
        out / "chat.json",
        settings,
        lambda: chat_latency(
            bot, base, budget["questions"], budget["repeats"], budget["max_new_tokens"], budget["chunks"], out
        ),
    )
    walls["chat"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["first_chunk"] = first_chunk(bot, lat, budget["chunks"], budget["lookaheads"], budget["synth_repeats"])
    walls["first_chunk"] = time.perf_counter() - t0
    results["plots"] = [str(p) for p in plot(results, out)]
    walls["total"] = time.perf_counter() - t_start
    results["wall_seconds"] = {k: round(v, 1) for k, v in walls.items()}
    results["cpu_seconds_total"] = round(time.process_time(), 1)
    (out / "results.json").write_text(json.dumps(repo_relative(results), indent=2))
    table = tables(results)
    print("\n" + table)
    if args.budget == "full":
        import shutil

        RESULTS.mkdir(parents=True, exist_ok=True)
        for path in results["plots"]:
            shutil.copy(path, RESULTS / Path(path).name)
        (RESULTS / "results.json").write_text(json.dumps(repo_relative(results), indent=2))
        (RESULTS / "table.md").write_text(table + "\n")
        print(f"\nwrote {RESULTS}")
    print(f"wall time: {walls['total']:.0f} s (CPU {results['cpu_seconds_total']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
