"""Tutorial 03: where to split the trunk.

MOSS-Speech shares the lower 32 of Qwen3-8B's 36 layers between text and speech and splits the top 4 into a text
and a speech branch. The paper chose the point from a probe (speech and text hidden states of the same sentence grow
similar over the first layers and part in the last few) and did not ablate it. Here both are done at tiny scale:

1. **The sweep.** For every split point of the 6-layer tiny LLM (``num_shared_layers`` k = 0 .. 6: k = 0 copies the
   whole LLM into a speech branch, k = 6 leaves the speech side nothing of its own but its embedding, norm and
   head) PT-1, PT-2 and SFT are retrained from the base run with equal steps, and the result is scored on speech
   (spoken cloze after SFT; speech NLL per token on held-out read speech after PT-1 and PT-2) and on text (text
   cloze, and text perplexity against the base text LLM, after PT-2 and SFT).
2. **The probe.** Per layer, the cosine similarity of the mean-pooled hidden states of the text and the speech of
   the same sentence (test statements in unseen voices), against the same for mismatched sentences, for the base
   text LLM at PT-1 init (random speech embedding), the base run after PT-1 and after SFT, and each sweep point.

    .venv/bin/python tutorials/03_split_position.py --budget smoke   # ~40 s, on the smoke run (3 split points)
    .venv/bin/python tutorials/03_split_position.py --budget full    # on runs/demo (make demo), ~22 CPU-min
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from moss_components.checkpoints import load_moss_speech
from moss_components.cli.pipeline import pipeline
from moss_components.data.grid import build_grid, text_segment
from moss_components.data.pretrain_tasks import build_speech_only
from moss_components.evaluation.cloze import cloze_figures, load_statement_speech, speech_nll
from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.run_report import text_figures
from moss_components.model import LayerSplitSpeechLM
from moss_components.trunks import PretrainedTrunk

NAME = "03_split_position"
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "tutorials" / "results" / NAME


@dataclass(frozen=True)
class Budget:
    """One budget for every split point.

    Args:
        preset: the pipeline preset of the base run and of the sweep.
        base: the default base run (built with ``pipeline(preset=...)`` when missing).
        pt1_steps, pt2_steps, sft_steps: steps of each stage at every split point.
        probe_items: test statements in the probe (the speech NLL reads all of them).
        cloze_items: spoken and text cloze items (whole pairs; None: every test item).
        points: the split points to train (None: every one, 0 .. N).
        spread_points, spread_seeds: PT-1 is also trained with these seeds at these points, for the seed spread
            of the speech NLL after PT-1.
        seed: training seed of the retrained stages.
    """

    preset: str
    base: str
    pt1_steps: int
    pt2_steps: int
    sft_steps: int
    probe_items: int
    cloze_items: int | None
    points: tuple[int, ...] | None = None
    spread_points: tuple[int, ...] = ()
    spread_seeds: tuple[int, ...] = ()
    seed: int = 0


BUDGETS = {
    # smoke: 2 steps a stage, like the smoke base run itself (a wiring check, no quality)
    "smoke": Budget("smoke", "runs/tutorials/base-smoke", 2, 2, 2, 8, None, (0, 3, 6), (6,), (1,)),
    "full": Budget("tiny", "runs/demo", 60, 60, 40, 96, 300, None, (0, 4, 6), (1, 2)),
}


@torch.no_grad()
def layer_states(model: LayerSplitSpeechLM, grid: torch.Tensor, keep: torch.Tensor, modality: str) -> torch.Tensor:
    """``(N + 1, D)``: the embedding and every layer's output on ``modality``'s own path (shared layers, then the
    text or the speech branch), mean-pooled over the positions ``keep`` ``(L,)`` bool of one ``(L, 2)`` grid."""
    captured: list[torch.Tensor] = []

    def grab(module, args, output):
        captured.append((output[0] if isinstance(output, tuple) else output)[0])

    branch = model.text_layers if modality == "text" or model.speech_layers is None else model.speech_layers
    hooks = [layer.register_forward_hook(grab) for layer in [*model.shared_layers, *branch]]
    try:
        model(input_ids=grid[None])
    finally:
        for h in hooks:
            h.remove()
    text_ids, speech_ids, speech_positions = model.split_grid(grid[None])
    states = [model.embed(text_ids, speech_ids, speech_positions)[0], *captured]
    return torch.stack([s[keep].float().mean(0) for s in states])


@torch.no_grad()
def probe(model: LayerSplitSpeechLM, tokenizer, pairs: list[tuple[str, torch.Tensor]]) -> dict:
    """Per layer (0 = embedding), the mean cosine similarity of the pooled text and speech states of the same
    sentence (``paired``) and of a sentence and the next one's speech (``unpaired``, a shifted pairing).

    Raw cosines are dominated by what all sentences of a modality share (the mean state); ``centred`` is the paired
    cosine after subtracting each modality's mean over the sentences, i.e. the sentence-specific agreement."""
    special = model.special_ids
    text_states, speech_states = [], []
    for text, ids in pairs:
        grid, _ = build_grid([text_segment(tokenizer, text)], special)
        text_states.append(layer_states(model, grid, torch.ones(len(grid), dtype=torch.bool), "text"))
        grid, _ = build_speech_only(ids, special)
        keep = torch.zeros(len(grid), dtype=torch.bool)
        keep[1:-1] = True  # the speech ids, without start- and end-of-speech
        speech_states.append(layer_states(model, grid, keep, "speech"))
    t, s = torch.stack(text_states), torch.stack(speech_states)  # (items, N + 1, D)
    paired = torch.cosine_similarity(t, s, dim=-1).mean(0)
    unpaired = torch.cosine_similarity(t, s.roll(1, dims=0), dim=-1).mean(0)
    centred = torch.cosine_similarity(t - t.mean(0), s - s.mean(0), dim=-1).mean(0)
    return {"paired": paired.tolist(), "unpaired": unpaired.tolist(), "centred": centred.tolist()}


def sweep_point(base: Path, out: Path, k: int, budget: Budget, stages=("pt1", "pt2", "sft"), seed=None) -> Path:
    """Retrain ``stages`` from ``base`` with ``k`` shared layers (seed: the budget's); return the run."""
    seed = budget.seed if seed is None else seed
    run = out / (f"shared{k}" if seed == budget.seed else f"shared{k}-seed{seed}")
    steps = {"pt1": budget.pt1_steps, "pt2": budget.pt2_steps, "sft": budget.sft_steps}
    overrides = []
    for stage in stages:
        # the configs' warm-ups are sized for thousands of steps: a tenth of these runs instead
        overrides += [f"{stage}:model.init_args.num_shared_layers={k}", f"{stage}:trainer.max_steps={steps[stage]}",
                      f"{stage}:model.init_args.warmup_steps={max(1, steps[stage] // 10)}"]  # fmt: skip
        if seed != budget.seed:  # the pipeline's seed does not reach the order of the training documents
            overrides.append(f"{stage}:data.init_args.seed={seed}")
    pipeline(preset=budget.preset, out=str(run), seed=seed, base=str(base), stages=list(stages), overrides=overrides)
    return run


def pt1_seed_spread(base: Path, out: Path, budget: Budget, statements, points: dict[int, dict]) -> dict[int, dict]:
    """Speech NLL after PT-1 over several training seeds at ``budget.spread_points``: the seed noise the small
    differences between split points must beat (PT-1 only: the stage where the split decides what speech learns)."""
    spread = {}
    for k in tqdm(budget.spread_points, desc="PT-1 seed spread", unit="point"):
        values = [points[k]["speech_nll_after_pt1"]] if k in points else []
        for seed in budget.spread_seeds:
            run = sweep_point(base, out, k, budget, stages=("pt1",), seed=seed)
            model = load_moss_speech(RunLayout(run).export("pt1")).eval()
            values.append(speech_nll(model, [ids for _, ids in statements]))
        std = float(torch.tensor(values, dtype=torch.float64).std()) if len(values) > 1 else None
        spread[k] = {"speech_nll_after_pt1": values, "mean": sum(values) / len(values), "std": std}
    return spread


@torch.no_grad()
def score_point(
    run: Path, statements: list[tuple[str, torch.Tensor]], pairs: list[tuple[str, torch.Tensor]], budget: Budget
) -> dict:
    layout = RunLayout(run)
    tokenizer = AutoTokenizer.from_pretrained(layout.speech_lm, local_files_only=True)
    sft = load_moss_speech(layout.export("sft")).eval()
    figures = cloze_figures(layout, sft, tokenizer, max_items=budget.cloze_items)
    text = text_figures(layout)
    figures["text_ppl_ratio_after_pt2"] = text["text_ppl_after_pt2"] / text["text_ppl_base"]
    figures["text_ppl_ratio_after_sft"] = text["text_ppl_after_sft"] / text["text_ppl_base"]
    figures["text_path_unchanged_after_pt1"] = text["text_path_unchanged"]  # PT-1 freezes the LLM at any split
    for stage in ("pt1", "pt2"):
        model = load_moss_speech(layout.export(stage)).eval()
        figures[f"speech_nll_after_{stage}"] = speech_nll(model, [ids for _, ids in statements])
    figures["probe_sft"] = probe(sft, tokenizer, pairs)
    return figures


def base_probes(base: Path, pairs: list[tuple[str, torch.Tensor]]) -> dict:
    """The probe on the base run: the text LLM at PT-1 init (fresh speech embedding), after PT-1, after SFT."""
    layout = RunLayout(base)
    trained = load_moss_speech(layout.export("pt1")).eval()
    trunk = PretrainedTrunk(str(layout.text_llm))
    tokenizer = trunk.load_tokenizer()
    torch.manual_seed(0)
    init = LayerSplitSpeechLM.from_text_model(
        trunk.load(), trained.num_shared_layers, trained.speech_vocab_size, trained.special_ids
    ).eval()
    return {
        "PT-1 init": probe(init, tokenizer, pairs),
        "after PT-1": probe(trained, tokenizer, pairs),
        "after SFT": probe(load_moss_speech(layout.export("sft")).eval(), tokenizer, pairs),
        "num_shared_layers": trained.num_shared_layers,
    }


def markdown_table(points: dict[int, dict], spread: dict[int, dict]) -> str:
    columns = [("spoken cloze (SFT)", "spoken_cloze_accuracy"), ("text cloze (SFT)", "text_cloze_accuracy"),
               ("speech NLL (PT-1)", "speech_nll_after_pt1"), ("speech NLL (PT-2)", "speech_nll_after_pt2"),
               ("text ppl / base (PT-2)", "text_ppl_ratio_after_pt2"),
               ("text ppl / base (SFT)", "text_ppl_ratio_after_sft")]  # fmt: skip
    head = ["shared layers", *(c for c, _ in columns), "speech NLL (PT-1), seeds: mean ± std"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, row in points.items():
        seeds = "-"
        if k in spread:
            values = spread[k]["speech_nll_after_pt1"]
            seeds = f"{spread[k]['mean']:.3f} ± {spread[k]['std']:.3f} ({len(values)} seeds)"
        lines.append("| " + " | ".join([str(k), *(f"{row[key]:.3f}" for _, key in columns), seeds]) + " |")
    return "\n".join(lines)


def plot(points: dict[int, dict], probes: dict, spread: dict[int, dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = list(points)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(ks, [points[k]["spoken_cloze_accuracy"] for k in ks], "o-", label="spoken cloze (SFT)")
    ax.plot(ks, [points[k]["text_cloze_accuracy"] for k in ks], "s-", label="text cloze (SFT)")
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
    ax.axhline(points[ks[0]]["text_cloze_accuracy_base"], color="grey", ls="--", lw=1, label="base text LLM")
    ax.set_title("cloze accuracy", fontsize=10)
    ax = axes[1]
    for stage in ("pt1", "pt2"):
        ax.plot(ks, [points[k][f"speech_nll_after_{stage}"] for k in ks], "o-", label=f"after {stage.upper()}")
    for k, row in spread.items():  # every seed's PT-1, where several were trained
        ax.plot([k] * len(row["speech_nll_after_pt1"]), row["speech_nll_after_pt1"], "k.", ms=5)
    if spread:
        ax.plot([], [], "k.", label="PT-1, other seeds")
    ax.set_title("speech NLL per token, held-out read speech", fontsize=10)
    ax = axes[2]
    for stage in ("pt2", "sft"):
        ax.plot(ks, [points[k][f"text_ppl_ratio_after_{stage}"] for k in ks], "o-", label=f"after {stage.upper()}")
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="base text LLM")
    ax.set_title("text perplexity / base text LLM", fontsize=10)
    for ax in axes:
        ax.set_xlabel("shared layers k (the top 6 - k are split)")
        ax.set_xticks(ks)
        ax.legend(fontsize=7)
    fig.tight_layout()
    sweep = out / "split_sweep.png"
    fig.savefig(sweep, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    k_base = probes["num_shared_layers"]
    for name in ("PT-1 init", "after PT-1", "after SFT"):
        layers = range(len(probes[name]["paired"]))
        line = axes[0].plot(layers, probes[name]["paired"], "o-", label=f"{name}: same sentence")[0]
        axes[0].plot(layers, probes[name]["unpaired"], "x--", color=line.get_color(), label=f"{name}: other sentence")
        axes[1].plot(layers, probes[name]["centred"], "o-", color=line.get_color(), label=name)
    for ax, title in zip(axes[:2], ("cosine(text, speech), pooled states", "the same, each modality's mean removed")):
        ax.axvline(k_base + 0.5, color="grey", ls=":", lw=1, label=f"base run's split (after layer {k_base})")
        ax.set_title(f"{title}: base run", fontsize=10)
        ax.set_xlabel("layer (0 = embedding)")
        ax.legend(fontsize=6)
    centred = torch.tensor([points[k]["probe_sft"]["centred"] for k in ks])
    image = axes[2].imshow(centred.numpy(), aspect="auto", cmap="viridis", origin="lower")
    axes[2].set_yticks(range(len(ks)), [str(k) for k in ks])
    axes[2].set_ylabel("shared layers k of the sweep point")
    axes[2].set_xlabel("layer (0 = embedding)")
    axes[2].set_title("centred cosine(text, speech) after SFT, per sweep point", fontsize=10)
    fig.colorbar(image, ax=axes[2])
    fig.tight_layout()
    probe_png = out / "split_probe.png"
    fig.savefig(probe_png, dpi=110)
    plt.close(fig)
    return [sweep, probe_png]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--base", help="a finished pipeline run of the budget's preset (default: built if missing)")
    parser.add_argument("--out", help=f"where the sweep runs go (default runs/tutorials/{NAME}/<budget>)")
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
    statements = load_statement_speech(RunLayout(base))  # test statements, read by unseen voices
    pairs = random.Random(0).sample(statements, min(budget.probe_items, len(statements)))
    num_layers = load_moss_speech(RunLayout(base).export("pt1")).num_hidden_layers

    points: dict[int, dict] = {}
    walls: dict[str, float] = {}
    ks = budget.points if budget.points is not None else range(num_layers + 1)
    for k in tqdm(ks, desc="split sweep", unit="point"):
        t = time.time()
        points[k] = score_point(sweep_point(base, out, k, budget), statements, pairs, budget)
        walls[f"shared{k}"] = round(time.time() - t, 1)
    spread = pt1_seed_spread(base, out, budget, statements, points)
    probes = base_probes(base, pairs)

    out.mkdir(parents=True, exist_ok=True)
    plots = plot(points, probes, spread, out)
    table = markdown_table(points, spread)
    results = {
        "budget": args.budget,
        "budget_spec": asdict(budget),
        "base": str(base),
        "threads": args.threads,
        "num_hidden_layers": num_layers,
        "points": {str(k): v for k, v in points.items()},
        "pt1_seed_spread": {str(k): v for k, v in spread.items()},
        "base_probes": probes,
        "probe_items": len(pairs),
        "wall_seconds": {**walls, "total": round(time.time() - t0, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table + "\n")
    if args.budget == "full":
        RESULTS.mkdir(parents=True, exist_ok=True)
        for path in [out / "results.json", out / "table.md", *plots]:
            shutil.copy(path, RESULTS / path.name)
    print(table)
    print(f"wall time: {results['wall_seconds']['total']:.0f} s")
    return results


if __name__ == "__main__":
    main()
