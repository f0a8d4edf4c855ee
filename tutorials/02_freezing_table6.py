"""Tutorial 02: freezing and splitting, the paper's Table 6 at tiny scale.

Five ways to go on after PT-1 (the text LLM frozen, only the speech parts trained), each retrained from the same
base run with the same steps, data and seed, then fine-tuned (SFT) the same way. PT-1 itself is retrained once for
the four split variants and once for the no-split one, with the same steps, so that every variant starts from a
PT-1 of the same budget:

- FP-Full       PT-2 keeps the whole text LLM frozen (only the speech parts learn);
- FP-Shared     PT-2 keeps the shared trunk (and the text embedding) frozen, both branches learn;
- FP-Layerwise  PT-2 thaws the text LLM back to front (head, text branch, shared layers, embedding);
- NF            PT-2 trains everything (the base run's own PT-2);
- NF-NoSplit    no split at all: one stack, speech ids appended to the vocabulary (its own PT-1 trains the speech
                embedding and head with the LLM frozen), then PT-2 trains everything.

Each is scored on spoken cloze and text cloze (moss_components.evaluation.cloze), text perplexity against the base
text LLM, and spoken QA (S->S text-free, S->T, T->T).

    .venv/bin/python tutorials/02_freezing_table6.py --budget smoke   # ~1 min, on the smoke run
    .venv/bin/python tutorials/02_freezing_table6.py --budget full    # on runs/demo (make demo), ~30 CPU-min
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from moss_components.asr import load_recognizer
from moss_components.checkpoints import load_moss_speech
from moss_components.cli.pipeline import pipeline
from moss_components.decoders import load_decoder
from moss_components.evaluation.cloze import (
    cloze_figures,
    load_cloze_items,
    load_statement_speech,
    speech_nll,
    text_cloze_accuracy,
)
from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.run_report import load_qa_items, text_figures
from moss_components.evaluation.speech_output import SpeechOutput
from moss_components.evaluation.spoken_qa import answer_questions
from moss_components.evaluation.spoken_qa import summarize as summarize_answers
from moss_components.generation import SamplingConfig
from moss_components.vocoders import load_vocoder

NAME = "02_freezing_table6"
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "tutorials" / "results" / NAME


@dataclass(frozen=True)
class Budget:
    """One budget for every variant of the comparison.

    Args:
        preset: the pipeline preset of the base run and of the variants.
        base: the default base run (built with ``pipeline(preset=...)`` when missing).
        pt1_steps: steps of the two PT-1 runs (the split one the four split variants share, and NF-NoSplit's).
        pt2_steps, sft_steps: steps of every variant's PT-2 and SFT.
        eval_items: spoken QA questions per mode (S->S, S->T, T->T), the same questions for every variant.
        max_new_tokens: the longest generated answer.
        cloze_items: spoken and text cloze items (whole pairs; None: every test item).
        seeds: training seeds of the retrained stages (the corpus and the base stages are the base run's).
        spread_seeds: PT-2 is also retrained with these seeds (from the same PT-1) for the seed spread of the
            figures measured after PT-2.
    """

    preset: str
    base: str
    pt1_steps: int
    pt2_steps: int
    sft_steps: int
    eval_items: int
    max_new_tokens: int
    cloze_items: int | None
    seeds: tuple[int, ...]
    spread_seeds: tuple[int, ...] = ()


BUDGETS = {
    # smoke: 2 steps a stage, like the smoke base run itself (a wiring check, no quality)
    "smoke": Budget("smoke", "runs/tutorials/base-smoke", 2, 2, 2, 2, 8, None, (0,), (1,)),
    "full": Budget("tiny", "runs/demo", 80, 300, 50, 48, 48, 300, (0,), (1, 2)),
}

VARIANTS = ("FP-Full", "FP-Shared", "FP-Layerwise", "NF", "NF-NoSplit")
# the paper's Table 6 (speech StoryCloze, MMLU), see /work/shared/moss_speech_facts.md
PAPER = {"FP-Full": (63.12, 66.50), "FP-Shared": (63.50, 67.26), "FP-Layerwise": (62.64, 68.82),
         "NF": (56.60, 62.11), "NF-NoSplit": (55.80, 60.97)}  # fmt: skip
THAW_UNITS_6_LAYERS = 8  # pretrained_thaw_order of the tiny 6-layer LLM: head+norm, 6 layers, embedding


def stage_overrides(stage: str, steps: int) -> list[str]:
    """Exactly ``steps`` optimizer steps, and a warm-up of a tenth of them (the configs' are sized for thousands)."""
    return [f"{stage}:trainer.max_steps={steps}", f"{stage}:model.init_args.warmup_steps={max(1, steps // 10)}"]


def variant_plan(variant: str, budget: Budget) -> tuple[list[str], list[str]]:
    """``(stages, overrides)`` of ``pipeline`` for one variant (the split variants take PT-1 from their base)."""
    freezing = {
        "FP-Full": "{class_path: moss_components.freezing.FreezeFull}",
        "FP-Shared": "{class_path: moss_components.freezing.FreezeShared}",
        # every unit thawed by 8/9 of the run, whatever the number of steps
        "FP-Layerwise": "{class_path: moss_components.freezing.FreezeLayerwise, init_args: {thaw_every_steps: "
        f"{max(1, budget.pt2_steps // (THAW_UNITS_6_LAYERS + 1))}}}}}",
        "NF": "{class_path: moss_components.freezing.NoFreeze}",
        "NF-NoSplit": "{class_path: moss_components.freezing.NoFreeze}",
    }[variant]
    steps = {"pt1": budget.pt1_steps, "pt2": budget.pt2_steps, "sft": budget.sft_steps}
    stages = ["pt1", "pt2", "sft"] if variant == "NF-NoSplit" else ["pt2", "sft"]
    overrides = [f"pt2:model.init_args.freezing={freezing}"]
    for stage in stages:
        overrides += stage_overrides(stage, steps[stage])
        if variant == "NF-NoSplit":
            overrides.append(f"{stage}:model.init_args.router={{class_path: moss_components.routers.NoSplitRouter}}")
    return stages, overrides


@torch.no_grad()
def score_pt2(run: Path) -> dict:
    """The figures of the pretrained model (after PT-2), as the paper's Table 6 measures: text cloze, text
    perplexity over the base LLM's, speech NLL of the test statements."""
    layout = RunLayout(run)
    tokenizer = AutoTokenizer.from_pretrained(layout.export("pt2"), local_files_only=True)
    pt2 = load_moss_speech(layout.export("pt2")).eval()
    text_items, _ = load_cloze_items(layout)
    text = text_figures(layout)
    return {
        "text_cloze_accuracy_after_pt2": text_cloze_accuracy(pt2, tokenizer, text_items),
        "text_ppl_ratio_after_pt2": text["text_ppl_after_pt2"] / text["text_ppl_base"],
        "speech_nll_after_pt2": speech_nll(pt2, [ids for _, ids in load_statement_speech(layout)]),
    }


@torch.no_grad()
def score_variant(run: Path, budget: Budget) -> dict:
    """The figures of one variant: cloze, speech NLL and text perplexity, and spoken QA on a subset of the test
    questions (held-out facts left out, as in the report's S->S figure), asked greedily."""
    layout = RunLayout(run)
    tokenizer = AutoTokenizer.from_pretrained(layout.export("sft"), local_files_only=True)
    sft = load_moss_speech(layout.export("sft")).eval()
    out = cloze_figures(layout, sft, tokenizer, max_items=budget.cloze_items)
    out.update(score_pt2(run))
    out["speech_nll_after_sft"] = speech_nll(sft, [ids for _, ids in load_statement_speech(layout)])
    text = text_figures(layout)
    out["text_ppl_base"] = text["text_ppl_base"]
    out["text_ppl_ratio_after_sft"] = text["text_ppl_after_sft"] / text["text_ppl_base"]

    judge = load_recognizer(layout.export("judge")).eval()
    speech = SpeechOutput(load_decoder(layout.decoder).eval(), load_vocoder(layout.vocoder).eval(), judge)
    items = [it for it in load_qa_items(layout, "test") if not it.tags["heldout"]]
    items = random.Random(0).sample(items, min(budget.eval_items, len(items)))
    sampling = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=budget.max_new_tokens)
    for key, mode in (("s2s_text_free_accuracy", "s2s"), ("s2t_accuracy", "s2t"), ("t2t_accuracy", "t2t")):
        summary = summarize_answers(answer_questions(sft, tokenizer, items, mode, speech, sampling))
        out[key], out[f"{key}_n"] = summary["accuracy"], summary["n"]
    return out


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion ``p`` over ``n`` items."""
    if n == 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when one side is constant."""

    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        r = [0.0] * len(x)
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else None


# accuracy -> the figure that counts its items
ACCURACY_COUNTS = {
    "spoken_cloze_accuracy": "spoken_cloze_n",
    "text_cloze_accuracy": "text_cloze_n",
    "text_cloze_accuracy_after_pt2": "text_cloze_n",
    "s2s_text_free_accuracy": "s2s_text_free_accuracy_n",
    "s2t_accuracy": "s2t_accuracy_n",
    "t2t_accuracy": "t2t_accuracy_n",
}


def summarize(per_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Per variant: the mean over seeds of every figure, the seeds' spread and 95% intervals of the accuracies."""
    out = {}
    for variant, runs in per_seed.items():
        row: dict = {}
        for key in runs[0]:
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = sum(values) / len(values) if values else None
            if len(values) > 1:
                row[f"{key}_seed_std"] = float(torch.tensor(values, dtype=torch.float64).std())
        for key, n_key in ACCURACY_COUNTS.items():
            if row[key] is not None:
                row[f"{key}_ci95"] = wilson(row[key], sum(r.get(n_key) or 0 for r in runs))
        out[variant] = row
    return out


COLUMNS = [
    ("spoken cloze (SFT)", "spoken_cloze_accuracy"),
    ("speech NLL (PT-2)", "speech_nll_after_pt2"),
    ("text cloze (PT-2)", "text_cloze_accuracy_after_pt2"),
    ("text cloze (SFT)", "text_cloze_accuracy"),
    ("text ppl / base (PT-2)", "text_ppl_ratio_after_pt2"),
    ("text ppl / base (SFT)", "text_ppl_ratio_after_sft"),
    ("S->S", "s2s_text_free_accuracy"),
    ("S->T", "s2t_accuracy"),
    ("T->T", "t2t_accuracy"),
]


# (our figure, paper column, its name, +1 when higher is better for ours too, -1 when lower is)
ORDERING = [
    ("spoken_cloze_accuracy", 0, "speech StoryCloze", 1),
    ("speech_nll_after_pt2", 0, "speech StoryCloze", -1),
    ("text_cloze_accuracy_after_pt2", 1, "MMLU", 1),
    ("text_ppl_ratio_after_pt2", 1, "MMLU", -1),
    ("text_ppl_ratio_after_sft", 1, "MMLU", -1),
]


def markdown_table(summary: dict[str, dict]) -> str:
    head = ["variant"] + [c for c, _ in COLUMNS] + ["paper sStoryCloze", "paper MMLU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, row in summary.items():
        cells = [variant]
        for _, key in COLUMNS:
            value = row.get(key)
            spread = row.get(f"{key}_seed_std")
            cells.append("-" if value is None else f"{value:.3f}" + (f" ± {spread:.3f}" if spread else ""))
        cells += [f"{v:.2f}" for v in PAPER[variant]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, dict], per_seed: dict[str, list[dict]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    x = range(len(names))
    base_cloze = summary[names[0]]["text_cloze_accuracy_base"]
    # accuracies as bars from 0 with 95% item intervals; NLL and perplexity as points, zoomed, one dot per seed
    panels = [
        ("spoken cloze accuracy (SFT)", "bar", [("spoken_cloze_accuracy", "spoken")], [(0.5, "chance", ":")]),
        ("speech NLL per token after PT-2, held-out read speech", "point",
         [("speech_nll_after_pt2", "after PT-2")], []),
        ("text cloze accuracy", "bar", [("text_cloze_accuracy_after_pt2", "after PT-2"),
                                        ("text_cloze_accuracy", "after SFT")],
         [(0.5, "chance", ":"), (base_cloze, "base text LLM", "--")]),
        ("text perplexity / base text LLM", "point", [("text_ppl_ratio_after_pt2", "after PT-2"),
                                                       ("text_ppl_ratio_after_sft", "after SFT")],
         [(1.0, "base text LLM", "--")]),
        ("spoken QA accuracy (SFT)", "bar", [("s2s_text_free_accuracy", "S->S text-free"), ("s2t_accuracy", "S->T"),
                                             ("t2t_accuracy", "T->T")], []),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, style, series, references) in zip(axes.flat, panels):
        width = 0.8 / len(series)
        for s, (key, label) in enumerate(series):
            pos = [i + (s - (len(series) - 1) / 2) * width for i in x]
            values = [summary[n][key] or 0.0 for n in names]
            if style == "bar":
                errors = None
                if f"{key}_ci95" in summary[names[0]]:
                    errors = [[v - summary[n][f"{key}_ci95"][0] for n, v in zip(names, values)],
                              [summary[n][f"{key}_ci95"][1] - v for n, v in zip(names, values)]]  # fmt: skip
                ax.bar(pos, values, width, yerr=errors, capsize=3, label=label)
            else:
                ax.plot(pos, values, "o", ms=8, mfc="none", label=f"{label} (mean of seeds)")
            for i, n in enumerate(names):  # one dot per seed
                seeds = [r[key] for r in per_seed[n] if r.get(key) is not None]
                ax.plot([pos[i]] * len(seeds), seeds, "k.", ms=4)
        for value, label, line in references:
            if value is not None:
                ax.axhline(value, color="grey", ls=line, lw=1, label=label)
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    bars = out / "table6_variants.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)

    pairs = [(key, index, label) for key, index, label, _ in ORDERING]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4))
    for ax, (ours, paper_index, label) in zip(axes, pairs):
        for n in names:
            ax.scatter(PAPER[n][paper_index], summary[n][ours] or 0.0)
            ax.annotate(n, (PAPER[n][paper_index], summary[n][ours] or 0.0), fontsize=7)
        ax.set_xlabel(f"paper: {label}")
        ax.set_ylabel(f"ours: {ours}")
    fig.tight_layout()
    scatter = out / "table6_vs_paper.png"
    fig.savefig(scatter, dpi=110)
    plt.close(fig)
    return [bars, scatter]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--base", help="a finished pipeline run of the budget's preset (default: built if missing)")
    parser.add_argument("--out", help=f"where the variant runs go (default runs/tutorials/{NAME}/<budget>)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the figures were made with 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    t0 = time.time()
    base = Path(args.base or budget.base)
    if not (base / "stages" / "evaluate.json").is_file():
        if args.base:
            raise FileNotFoundError(f"--base {base} is not a finished pipeline run (no stages/evaluate.json)")
        pipeline(preset=budget.preset, out=str(base))  # resumable: a no-op once done
    out = Path(args.out or f"runs/tutorials/{NAME}/{args.budget}")

    per_seed: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    walls: dict[str, float] = {}
    for variant, seed in tqdm([(v, s) for v in VARIANTS for s in budget.seeds], desc="table 6", unit="run"):
        t = time.time()
        run = out / variant / f"seed{seed}"
        start = base
        if variant != "NF-NoSplit":  # the split PT-1 the four split variants share (made once per seed)
            start = out / "PT-1" / f"seed{seed}"
            pipeline(preset=budget.preset, out=str(start), seed=seed, base=str(base), stages=["pt1"],
                     overrides=stage_overrides("pt1", budget.pt1_steps))  # fmt: skip
        stages, overrides = variant_plan(variant, budget)
        pipeline(preset=budget.preset, out=str(run), seed=seed, base=str(start), stages=stages, overrides=overrides)
        per_seed[variant].append(score_variant(run, budget))
        walls[f"{variant}/seed{seed}"] = round(time.time() - t, 1)

    # the seed spread of PT-2: retrained from the same PT-1 with other seeds, scored as a pretrained model
    first = budget.seeds[0]
    for variant, seed in tqdm([(v, s) for v in VARIANTS for s in budget.spread_seeds], desc="PT-2 seeds", unit="run"):
        t = time.time()
        start = out / ("NF-NoSplit" if variant == "NF-NoSplit" else "PT-1") / f"seed{first}"
        run = out / variant / f"seed{seed}-pt2"
        overrides = [o for o in variant_plan(variant, budget)[1] if o.startswith("pt2:")]
        overrides.append(f"pt2:data.init_args.seed={seed}")  # the pipeline's seed does not reach the data order
        pipeline(preset=budget.preset, out=str(run), seed=seed, base=str(start), stages=["pt2"], overrides=overrides)
        per_seed[variant].append(score_pt2(run))
        walls[f"{variant}/seed{seed}-pt2"] = round(time.time() - t, 1)

    summary = summarize(per_seed)
    variants = list(summary)
    ordering = {
        f"spearman {key} vs paper {label}": spearman(
            [sign * summary[v][key] for v in variants], [PAPER[v][index] for v in variants]
        )
        for key, index, label, sign in ORDERING
    }
    out.mkdir(parents=True, exist_ok=True)
    plots = plot(summary, per_seed, out)
    table = markdown_table(summary)
    results = {
        "budget": args.budget,
        "budget_spec": asdict(budget),
        "base": str(base),
        "threads": args.threads,
        "variants": summary,
        "per_seed": per_seed,
        "ordering": ordering,
        "paper": {v: {"speech_storycloze": p[0], "mmlu": p[1]} for v, p in PAPER.items()},
        "wall_seconds": {**walls, "total": round(time.time() - t0, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table + "\n")
    if args.budget == "full":
        RESULTS.mkdir(parents=True, exist_ok=True)
        for path in [out / "results.json", out / "table.md", *plots]:
            shutil.copy(path, RESULTS / path.name)
    print(table)
    print(json.dumps(ordering, indent=2))
    print(f"wall time: {results['wall_seconds']['total']:.0f} s")
    return results


if __name__ == "__main__":
    main()
