"""Tutorial 04: what the speech tokenizer's codebook size and frame rate do to the speech LM built on it.

Four variants of the semantic tokenizer (configs/tokenizer/tiny.yaml): 256, 512 and 1,024 codes at 12.5 Hz
(``pool: 4``), and 512 codes at 25 Hz (``pool: 2``). Each variant retrains tokenizer -> speech_ids -> PT-1 -> PT-2 ->
SFT on top of a finished base run (its corpus, text LLM and ASR judge are reused), with the same steps for every
variant. Measured per variant:

- tokenizer CER: the tokenizer's own CTC head reading the quantized ids of unseen-voice test speech (the tokenizer
  alone is trained with extra seeds too, for the CER's spread);
- speech NLL per second: the PT-2 model's speech loss summed over a clip's ids / the clip's seconds (nats/s), so
  that 12.5 Hz and 25 Hz ids compare fairly (the log of the perplexity of one second of speech), beside the
  entropy of the codes per second;
- spoken cloze and spoken QA, speech in -> text out (S->T; T->T as a control), of the SFT model. S->S would need a
  decoder trained per tokenizer (the base run's decoder reads the base tokenizer's ids), which this budget leaves
  out;
- sequence-length cost: speech ids per second of speech, and the CPU time of one training step on the same clips.

    python tutorials/04_tokenizer_choices.py --budget smoke|full [--base DIR] [--out DIR]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import csv
import json
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm
from transformers import AutoTokenizer

from moss_components.checkpoints import load_moss_speech
from moss_components.cli.evaluate_codec import evaluate_codec
from moss_components.cli.pipeline import PRESETS, pipeline
from moss_components.data.manifest import read_manifest
from moss_components.data.packing import collate_padded
from moss_components.data.pretrain_tasks import build_speech_only
from moss_components.data.speech_cache import SpeechCache, cache_paths
from moss_components.evaluation.cloze import cloze_figures
from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.run_report import load_qa_items
from moss_components.evaluation.spoken_qa import answer_questions, summarize
from moss_components.generation import SamplingConfig

REPO = Path(__file__).resolve().parents[1]
NAME = "04_tokenizer_choices"
STAGES = ["tokenizer", "speech_ids", "pt1", "pt2", "sft"]
TOKENIZER = "tokenizer:model.init_args.tokenizer.init_args"


@dataclass(frozen=True)
class Variant:
    """One tokenizer: ``codebook_size`` codes, ``pool`` x the 50 Hz front end (4 -> 12.5 Hz, 2 -> 25 Hz)."""

    codebook_size: int
    pool: int

    @property
    def frame_rate(self) -> float:
        return 50.0 / self.pool

    @property
    def name(self) -> str:
        return f"{self.codebook_size}@{self.frame_rate:g}Hz"

    @property
    def folder(self) -> str:
        return f"cb{self.codebook_size}_{self.frame_rate:g}hz"

    def overrides(self, steps: dict[str, int], batch_sizes: dict[str, int]) -> list[str]:
        """``pipeline`` overrides: the tokenizer's shape, the LM's speech vocabulary, equal steps everywhere."""
        out = [
            f"{TOKENIZER}.quantizer.init_args.codebook_size={self.codebook_size}",
            f"{TOKENIZER}.pool={self.pool}",
        ]
        for stage in ("pt1", "pt2", "sft"):  # the speech vocabulary must match the codebook (codes + end + pad)
            out.append(f"{stage}:model.init_args.num_speech_codes={self.codebook_size}")
        for stage, n in steps.items():
            out.append(f"{stage}:trainer.max_steps={n}")  # also drops the preset's CPU-time budget
        for stage, n in batch_sizes.items():
            out.append(f"{stage}:data.init_args.batch_size={n}")
        return out


VARIANTS = (Variant(256, 4), Variant(512, 4), Variant(1024, 4), Variant(512, 2))


@dataclass(frozen=True)
class Budget:
    """Sizes of one budget; every variant gets the same.

    Args:
        preset: the pipeline preset of the base run and the variants.
        base: the default base run (built with ``pipeline(preset=preset, out=base)`` when unfinished).
        variants: the tokenizers compared; ``reference`` names the one step times are divided by.
        steps: optimizer steps per retrained stage.
        batch_sizes: per-stage batch overrides (smoke only; empty keeps the configs' sizes).
        codec_items: unseen-voice test utterances for the tokenizer CER.
        nll_clips: test clips for the speech NLL per second.
        qa_items: test questions per QA figure (None: all seen-fact questions).
        cloze_items: spoken and text cloze items (whole pairs; None: all).
        tokenizer_seeds: extra seeds of the tokenizer stage alone (seed 0 is the variant's own run), for the CER's
            spread.
        timing_clips, timing_reps: clips per timed training step, and timed repetitions per variant.
    """

    preset: str
    base: str
    variants: tuple[Variant, ...]
    reference: str
    steps: dict[str, int]
    batch_sizes: dict[str, int] = field(default_factory=dict)
    codec_items: int = 100
    nll_clips: int = 300
    qa_items: int | None = 150
    cloze_items: int | None = 200
    tokenizer_seeds: tuple[int, ...] = (1,)
    timing_clips: int = 8
    timing_reps: int = 5


BUDGETS = {
    "smoke": Budget(
        preset="smoke",
        base="runs/tutorials/base-smoke",
        variants=(Variant(256, 4), Variant(512, 2)),  # both axes, in half the time of all four
        reference="256@12.5Hz",
        steps=dict.fromkeys(("tokenizer", "pt1", "pt2", "sft"), 2),
        batch_sizes={"tokenizer": 4, "pt1": 2, "pt2": 2, "sft": 2},
        codec_items=4,
        nll_clips=8,
        qa_items=4,
        cloze_items=8,
        timing_clips=2,
        timing_reps=1,
    ),
    "full": Budget(
        preset="tiny",
        base="runs/demo",
        variants=VARIANTS,
        reference="512@12.5Hz",
        steps={"tokenizer": 400, "pt1": 60, "pt2": 150, "sft": 100},
        qa_items=100,
        tokenizer_seeds=(1, 2),
    ),
}


# ---------------------------------------------------------------------------------------------------------- figures


def speech_seconds(layout: RunLayout, split: str = "test") -> tuple[list[str], dict[str, float]]:
    """Read-speech clip ids of ``split`` present in the variant's id cache, and each clip's duration in seconds."""
    cache = SpeechCache(cache_paths(layout.corpus / "read" / f"{split}.jsonl", layout.speech_ids)[0])
    rows = read_manifest(layout.corpus / "read" / f"{split}.jsonl", required=("id", "duration"))
    seconds = {r["id"]: float(r["duration"]) for r in rows if r["id"] in cache}
    return sorted(seconds), seconds


def speech_grids(layout: RunLayout, model, clip_ids: list[str]) -> dict:
    """A padded batch of speech-only documents (``<sos> s1..sn <eos_s>``) of ``clip_ids``."""
    cache = SpeechCache(cache_paths(layout.corpus / "read" / "test.jsonl", layout.speech_ids)[0])
    docs = [build_speech_only(cache[k] if cache[k].ndim == 1 else cache[k][0], model.special_ids) for k in clip_ids]
    return collate_padded(docs, model.special_ids)


@torch.no_grad()
def speech_nll_per_second(layout: RunLayout, stage: str, max_clips: int, batch_size: int = 16) -> dict:
    """Speech NLL of the ``stage`` model on read test clips: summed over each clip's ids (end-of-speech left out),
    divided by the clips' seconds (nats/s); also the mean per id (nats/id) and ids per second."""
    model = load_moss_speech(layout.export(stage)).eval()
    clip_ids, seconds = speech_seconds(layout)
    clip_ids = random.Random(0).sample(clip_ids, min(max_clips, len(clip_ids)))
    total, ids, secs = 0.0, 0, 0.0
    for i in range(0, len(clip_ids), batch_size):
        chunk = clip_ids[i : i + batch_size]
        batch = speech_grids(layout, model, chunk)
        out = model(batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
        target = F.pad(batch["labels"][:, 1:, 1], (0, 1), value=-100)  # position t predicts t + 1
        target = target.masked_fill(target == model.special_ids.speech_end_of_speech, -100)
        nll = F.cross_entropy(out.speech_logits.float().transpose(1, 2), target, ignore_index=-100, reduction="sum")
        total += float(nll)
        ids += int((target != -100).sum())
        secs += sum(seconds[k] for k in chunk)
    return {
        "nats_per_second": total / secs,
        "nats_per_id": total / ids,
        "ids_per_second": ids / secs,
        "clips": len(clip_ids),
    }


def spoken_qa(layout: RunLayout, max_items: int | None, max_new_tokens: int) -> dict:
    """S->T and T->T accuracy of the SFT model on seen-fact test questions (the report's item selection)."""
    model = load_moss_speech(layout.export("sft")).eval()
    tokenizer = AutoTokenizer.from_pretrained(layout.export("sft"), local_files_only=True)
    items = [it for it in load_qa_items(layout, "test") if not it.tags["heldout"]]
    if max_items is not None and len(items) > max_items:
        items = random.Random(0).sample(items, max_items)
    sampling = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    out = {}
    for mode in ("s2t", "t2t"):
        summary = summarize(answer_questions(model, tokenizer, items, mode, sampling=sampling))
        acc, n = summary["accuracy"], summary["n"]
        out[f"{mode}_accuracy"], out[f"{mode}_n"] = acc, n
        out[f"{mode}_stderr"] = math.sqrt(acc * (1 - acc) / n)  # binomial standard error over questions
    return out


@torch.no_grad()
def cloze(layout: RunLayout, max_items: int | None) -> dict:
    """Spoken cloze of the SFT model (right vs wrong spoken answer to a spoken question, chance 0.5), with the text
    cloze as a control; see ``moss_components.evaluation.cloze``."""
    model = load_moss_speech(layout.export("sft")).eval()
    tokenizer = AutoTokenizer.from_pretrained(layout.export("sft"), local_files_only=True)
    out = cloze_figures(layout, model, tokenizer, max_items=max_items)
    for kind in ("spoken", "text"):
        acc, n = out[f"{kind}_cloze_accuracy"], out[f"{kind}_cloze_n"]
        out[f"{kind}_cloze_stderr"] = math.sqrt(acc * (1 - acc) / n) if n else None
    return out


def training_step_seconds(layouts: dict[str, RunLayout], clips: int, reps: int) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds of one forward + backward of each variant's PT-2 model on the same ``clips`` test
    clips (equal seconds of speech). CPU time (``time.process_time``) is the figure to compare on a shared machine:
    with one thread it is the step's compute, whatever else runs. Variants are timed in turn, rep by rep."""
    models, batches = {}, {}
    for name, layout in layouts.items():
        models[name] = load_moss_speech(layout.export("pt2")).train()
        clip_ids = speech_seconds(layout)[0][:clips]  # the same clips: ids are sorted, caches hold the same keys
        batches[name] = speech_grids(layout, models[name], clip_ids)
    cpu: dict[str, list[float]] = {name: [] for name in layouts}
    wall: dict[str, list[float]] = {name: [] for name in layouts}
    for rep in range(reps + 1):  # rep 0 warms up
        for name, model in models.items():
            b = batches[name]
            c0, t0 = time.process_time(), time.perf_counter()
            out = model(b["input_ids"], attention_mask=b["attention_mask"], position_ids=b["position_ids"],
                        labels=b["labels"])  # fmt: skip
            out.loss.backward()
            model.zero_grad(set_to_none=True)
            if rep:
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - t0)
    return {name: {"cpu": statistics.median(cpu[name]), "wall": statistics.median(wall[name])} for name in layouts}


def last_metrics(stage_dir: Path) -> list[dict]:
    """Rows of the newest CSV log of a stage (``STAGE/logs/version_N/metrics.csv``)."""
    logs = sorted(stage_dir.glob("logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    return list(csv.DictReader(logs[-1].open())) if logs else []


def curve(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
    return [p[0] for p in pts], [p[1] for p in pts]


# ---------------------------------------------------------------------------------------------------------- driver


def cached(path: Path, compute, threads: int) -> dict:
    """``compute()`` once, kept as JSON at ``path``: a rerun of the script only computes what is missing."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compute(), indent=2))
        torch.set_num_threads(threads)  # evaluate_codec sets its own
    return json.loads(path.read_text())


def codec_figures(layout: RunLayout, budget: Budget, folder: Path, threads: int) -> dict:
    """Tokenizer CER and code usage on unseen-voice read test speech (``evaluate_codec`` without a decoder). The
    report goes under ``folder``: a variant's own ``codec_eval/`` is a link into the base run."""
    return evaluate_codec(
        tokenizer=str(layout.export("tokenizer")),
        manifest=str(layout.corpus / "read" / "test.jsonl"),
        out=str(folder),
        max_utterances=budget.codec_items,
        examples=0,
        num_threads=threads,
    )


def run_variant(variant: Variant, budget: Budget, base: Path, out: Path, threads: int) -> dict:
    """Train the variant (resumable) and measure it; figures are cached under ``OUT/figures/<variant>/``."""
    layout = RunLayout(out / variant.folder)
    overrides = variant.overrides(budget.steps, budget.batch_sizes)
    pipeline(preset=budget.preset, out=str(layout.root), base=str(base), stages=STAGES, overrides=overrides)
    folder = out / "figures" / variant.folder
    codec = cached(folder / "codec.json", lambda: codec_figures(layout, budget, folder / "codec", threads), threads)
    nll = cached(folder / "nll.json", lambda: speech_nll_per_second(layout, "pt2", budget.nll_clips), threads)
    qa = cached(folder / "qa.json", lambda: spoken_qa(layout, budget.qa_items, PRESETS[budget.preset].max_new_tokens),
                threads)  # fmt: skip
    # the tokenizer alone, again with other seeds: how much of a CER difference is the seed's
    cers = {0: codec["tokenizer_cer"]}
    for seed in budget.tokenizer_seeds:
        again = RunLayout(out / f"{variant.folder}_seed{seed}")
        tokenizer_only = [o for o in overrides if o.startswith("tokenizer:")]
        pipeline(preset=budget.preset, out=str(again.root), base=str(base), stages=["tokenizer"], seed=seed,
                 overrides=tokenizer_only)  # fmt: skip
        seed_dir = folder / f"codec_seed{seed}"
        compute = partial(codec_figures, again, budget, seed_dir, threads)
        cers[seed] = cached(seed_dir / "codec.json", compute, threads)["tokenizer_cer"]
    return {
        "variant": variant.name,
        "codebook_size": variant.codebook_size,
        "frame_rate_hz": variant.frame_rate,
        "tokenizer_cer": codec["tokenizer_cer"],  # seed 0: the tokenizer the LM stages used
        "tokenizer_cer_by_seed": cers,
        "tokenizer_cer_mean": statistics.fmean(cers.values()),
        "codebook_usage": codec["codebook_usage"],
        "codebook_perplexity": codec["codebook_perplexity"],
        "codec_utterances": codec["utterances"],
        **{f"speech_{k}": v for k, v in nll.items()},
        # the entropy of the test ids' code distribution, per second: what a context-blind LM would score
        "code_entropy_nats_per_second": math.log(codec["codebook_perplexity"]) * nll["ids_per_second"],
        **qa,
        **cached(folder / "cloze.json", lambda: cloze(layout, budget.cloze_items), threads),
        "stage_wall_seconds": {s: json.loads(layout.record(s).read_text())["wall_seconds"] for s in STAGES},
    }


def check_figures(rows: list[dict]) -> None:
    """Fail loudly on a figure outside its valid range rather than plot it."""
    for r in rows:
        for key in ("tokenizer_cer", "codebook_usage", "s2t_accuracy", "t2t_accuracy", "spoken_cloze_accuracy"):
            if r[key] is None or not 0 <= r[key] <= (10 if key == "tokenizer_cer" else 1):
                raise ValueError(f"{r['variant']}: {key} = {r[key]} is out of range")
        for seed, cer in r["tokenizer_cer_by_seed"].items():
            if not 0 <= cer <= 10:
                raise ValueError(f"{r['variant']}: tokenizer CER of seed {seed} = {cer} is out of range")
        for key in ("speech_nats_per_second", "code_entropy_nats_per_second", "speech_ids_per_second", "step_seconds"):
            if not (math.isfinite(r[key]) and r[key] > 0):
                raise ValueError(f"{r['variant']}: {key} = {r[key]} is not a positive number")


def markdown_table(rows: list[dict]) -> str:
    seeds = " / ".join(str(s) for s in rows[0]["tokenizer_cer_by_seed"])
    head = (f"| variant | tokenizer CER (seed {seeds}) | codes used | speech NLL (nats/s) | code entropy (nats/s) | "
            "NLL nats/id | spoken cloze | S->T acc | T->T acc | ids/s | train step, CPU ms (ratio) |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        cers = " / ".join(f"{c:.3f}" for c in r["tokenizer_cer_by_seed"].values())
        lines.append(
            f"| {r['variant']} | {cers} | {r['codebook_usage']:.2f} | {r['speech_nats_per_second']:.1f} | "
            f"{r['code_entropy_nats_per_second']:.1f} | {r['speech_nats_per_id']:.2f} | "
            f"{r['spoken_cloze_accuracy']:.3f} ± {r['spoken_cloze_stderr']:.3f} | "
            f"{r['s2t_accuracy']:.3f} ± {r['s2t_stderr']:.3f} | {r['t2t_accuracy']:.3f} ± {r['t2t_stderr']:.3f} | "
            f"{r['speech_ids_per_second']:.1f} | {1000 * r['step_seconds']:.0f} ({r['step_ratio']:.2f}) |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], layouts: dict[str, RunLayout], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    colors = ["#4c72b0" if r["frame_rate_hz"] == 12.5 else "#dd8452" for r in rows]
    panels = [
        ("tokenizer CER, mean of seeds (dots: each seed)", [r["tokenizer_cer_mean"] for r in rows], None),
        ("speech NLL per second, nats/s (PT-2)", [r["speech_nats_per_second"] for r in rows], None),
        ("spoken cloze (SFT; chance 0.5, ± s.e.)", [r["spoken_cloze_accuracy"] for r in rows],
         [r["spoken_cloze_stderr"] for r in rows]),
        ("S->T spoken QA accuracy (± s.e.)", [r["s2t_accuracy"] for r in rows], [r["s2t_stderr"] for r in rows]),
        ("LM training step on the same clips, CPU ms", [1000 * r["step_seconds"] for r in rows], None),
    ]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (title, values, err) in zip(axes, panels):
        ax.bar(names, values, yerr=err, color=colors, capsize=4)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[2].axhline(0.5, color="grey", ls="--", lw=1)
    for x, r in enumerate(rows):
        cers = list(r["tokenizer_cer_by_seed"].values())
        axes[0].plot([x] * len(cers), cers, "k.", ms=6)
        axes[1].plot([x - 0.4, x + 0.4], [r["code_entropy_nats_per_second"]] * 2, "k-", lw=2)
    axes[1].set_title("speech NLL per second, nats/s (PT-2);\nblack: entropy of the codes", fontsize=10)
    for x, r in enumerate(rows):
        axes[-1].annotate(f"{r['speech_ids_per_second']:.1f} ids/s", (x, 0), ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    summary = folder / "tokenizer_choices.png"
    fig.savefig(summary, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for r in rows:
        layout = layouts[r["variant"]]
        axes[0].plot(*curve(last_metrics(layout.stage_dir("tokenizer")), "train/ctc_loss"), label=r["variant"])
        axes[1].plot(*curve(last_metrics(layout.stage_dir("pt1")), "train/speech_loss"), label=r["variant"])
    axes[0].set(title="tokenizer: CTC loss", xlabel="step")
    axes[1].set(title="PT-1: speech loss per id (nats; not comparable across rates)", xlabel="step")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    curves = folder / "training_curves.png"
    fig.savefig(curves, dpi=90)
    plt.close(fig)
    return [summary, curves]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--base", help="a finished pipeline run of the budget's preset (default: built if missing)")
    parser.add_argument("--out", help=f"where the variant runs go (default runs/tutorials/{NAME}/<budget>)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    out = Path(args.out or f"runs/tutorials/{NAME}/{args.budget}")
    t0 = time.time()
    if args.base:
        base = Path(args.base)
        if not RunLayout(base).record("sft").is_file():
            raise FileNotFoundError(
                f"--base {base} is not a finished pipeline run (no {RunLayout(base).record('sft')})"
            )
    else:
        base = Path(budget.base)
        pipeline(preset=budget.preset, out=str(base))  # resumable: a no-op once finished

    rows, layouts = [], {}
    for variant in tqdm(budget.variants, desc="variants", unit="variant"):
        rows.append(run_variant(variant, budget, base, out, args.threads))
        layouts[variant.name] = RunLayout(out / variant.folder)
    step = training_step_seconds(layouts, budget.timing_clips, budget.timing_reps)
    for r in rows:
        r["step_seconds"] = step[r["variant"]]["cpu"]
        r["step_wall_seconds"] = step[r["variant"]]["wall"]
        r["step_ratio"] = step[r["variant"]]["cpu"] / step[budget.reference]["cpu"]
    check_figures(rows)

    results_dir = out / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "budget": args.budget,
        "base": str(base),
        "threads": args.threads,
        "settings": asdict(budget),
        "step_ratio_reference": budget.reference,
        "variants": rows,
        "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(time.process_time(), 1),  # this process only: a rerun counts only what it redid
        "not_measured": "S->S: needs a decoder trained per tokenizer (the base run's decoder reads base ids)",
    }
    (results_dir / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, layouts, results_dir)
    if args.budget == "full":
        committed = REPO / "tutorials" / "results" / NAME
        committed.mkdir(parents=True, exist_ok=True)
        (committed / "results.json").write_text(json.dumps(results, indent=2))
        plot(rows, layouts, committed)
    print(markdown_table(rows))
    print(f"wall time {results['wall_seconds'] / 60:.1f} min on {args.threads} thread(s)")
    return results


if __name__ == "__main__":
    main()
