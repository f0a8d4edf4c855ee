"""Tutorial 01, quickstart: assemble a speech LM in YAML, train it with ``moss-speech fit``, talk to it.

```
configs/quickstart/pt1.yaml --moss-speech fit--> OUT/pt1/export   (PT-1: text LLM frozen, speech parts learn)
configs/quickstart/sft.yaml --moss-speech fit--> OUT/sft/export   (SFT from PT-1: spoken QA, everything learns)
OUT/{tokenizer,decoder,judge} -> the base run's   (speech tokenizer, decoder + vocoder, ASR judge)
moss-speech chat --run OUT --input question.wav --output answer.wav --stream true
```
The base run gives the corpus, its speech-id cache and the text LLM. ``--budget smoke`` builds on a smoke pipeline
run (2 steps a stage), ``--budget full`` on ``runs/demo`` (``make demo``); ``full`` also asks ``runs/demo``'s own
model the same question and writes ``tutorials/results/01_quickstart/``.

    python tutorials/01_quickstart.py --budget smoke|full [--base DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "quickstart"
RESULTS = REPO / "tutorials" / "results" / "01_quickstart"

# Steps of each stage. full: about as many optimizer steps as runs/demo's PT-1 (246) and SFT (538) took within
# their CPU-time budgets (the quickstart skips PT-2); smoke: a wiring check.
BUDGETS = {
    "smoke": {"pt1_steps": 2, "sft_steps": 2, "max_new_tokens": 12, "eval_items": 1},
    "full": {"pt1_steps": 250, "sft_steps": 550, "max_new_tokens": 120, "eval_items": 150},
}
# what chat and evaluate need that the quickstart does not retrain: linked from the base run
LINKED = ("tokenizer", "decoder", "judge", "corpus", "speech_ids", "text_llm")


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


def fit_command(stage: str, base: Path, out: Path, steps: int, init_from: Path | None = None) -> list[str]:
    """The arguments of ``moss-speech fit -c configs/quickstart/<stage>.yaml`` with this run's paths."""
    args = [
        "fit",
        "-c",
        str(CONFIGS / f"{stage}.yaml"),
        f"--model.init_args.trunk.init_args.path={base / 'text_llm' / 'export'}",
        f"--data.init_args.corpus_dir={base / 'corpus'}",
        f"--data.init_args.speech_cache_dir={base / 'speech_ids'}",
        f"--model.init_args.export_dir={out / stage / 'export'}",
        f"--trainer.default_root_dir={out / stage}",
        f"--trainer.logger.init_args.save_dir={out / stage}",
        f"--trainer.max_steps={steps}",
        f"--trainer.log_every_n_steps={min(10, steps)}",  # a 2-step smoke run logs too
    ]
    if init_from is not None:
        args.append(f"--model.init_args.init_from={init_from}")
    return args


def fit(stage: str, base: Path, out: Path, steps: int, init_from: Path | None = None) -> float:
    """Run :func:`fit_command` as that command (a child process, one thread); returns the wall seconds."""
    args = fit_command(stage, base, out, steps, init_from)
    record = out / stage / "fit.json"  # a finished fit of the same command is not run again
    if record.is_file() and json.loads(record.read_text())["command"] == args:
        print(f"\n{stage}: done before with the same command ({record})")
        return json.loads(record.read_text())["wall_seconds"]
    print("\n$ moss-speech " + shlex.join(args), flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the machine is shared
    subprocess.run([sys.executable, "-m", "moss_components.cli.main", *args], check=True, env=env)
    seconds = time.perf_counter() - t0
    record.write_text(json.dumps({"command": args, "wall_seconds": seconds}, indent=2))
    return seconds


def train_losses(stage_dir: Path) -> dict:
    """First and last logged training loss of a stage (its newest CSV log)."""
    logs = sorted((stage_dir / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not logs:
        raise FileNotFoundError(f"no CSV log under {stage_dir / 'logs'}: did the fit run?")
    rows = [r for r in csv.DictReader(logs[-1].open()) if r.get("train/loss")]
    if not rows:
        raise ValueError(f"{logs[-1]} has no train/loss rows")
    first, last = rows[0], rows[-1]
    return {
        "first_step": int(first["step"]),
        "first_loss": float(first["train/loss"]),
        "last_step": int(last["step"]),
        "last_loss": float(last["train/loss"]),
        "last_speech_loss": float(last["train/speech_loss"]),
        "last_text_loss": float(last["train/text_loss"]),
    }


def link_base_parts(base: Path, out: Path) -> None:
    """Make OUT a run directory chat can load: the trained LM is OUT's, the other parts are the base run's."""
    for name in LINKED:
        link = out / name
        if link.is_symlink() or link.exists():
            if link.resolve() != (base / name).resolve():
                raise SystemExit(f"{link} exists and is not a link to {base / name}; use another --out")
            continue
        link.symlink_to((base / name).resolve(), target_is_directory=True)


def pick_question(base: Path) -> dict:
    """The first test-split question asked by an unseen voice about a fact the model trained on."""
    from moss_components.data.manifest import read_manifest

    rows = read_manifest(base / "corpus" / "qa" / "test.jsonl", required=("question_audio", "question_text"))
    for row in rows:
        if row.get("unseen_voice") and not row.get("heldout"):
            return row
    raise SystemExit(f"{base / 'corpus/qa/test.jsonl'} has no unseen-voice question on a trained fact")


def ask(run: Path, question: Path, output: Path, max_new_tokens: int, expected: str) -> dict:
    """``moss-speech chat --run RUN --input Q --output A --stream true``: what it printed, and whether the judge's
    transcript contains the ``expected`` answer."""
    from moss_components.cli.chat import chat
    from moss_components.evaluation.answers import answer_is_correct

    cmd = ["chat", "--run", str(run), "--input", str(question), "--output", str(output)]
    cmd += ["--stream", "true", "--max_new_tokens", str(max_new_tokens)]
    print("\n$ moss-speech " + shlex.join(cmd), flush=True)
    answer = chat(run=str(run), input=str(question), output=str(output), stream=True, max_new_tokens=max_new_tokens)
    t = answer.timings
    return {
        "output": str(output),
        "transcript": answer.transcript,
        "speech_ids": len(answer.speech_ids),
        "stopped": answer.stopped,
        "audio_seconds": round(t.audio_seconds, 3),
        "first_audio_seconds": round(t.first_audio_seconds, 3),
        "total_seconds": round(t.total_seconds, 3),
        "real_time_factor": round(t.real_time_factor, 3) if t.audio_seconds > 0 else None,
        "correct": answer_is_correct(answer.transcript or "", expected),
    }


def spectrogram_png(path: Path, wavs: list[tuple[str, Path]]) -> list[dict]:
    """Log-mel (80 bands, 50 frames/s, the decoder's own framing) of each WAV, one panel each; returns its range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf
    import torch

    from moss_components.features import LogMel

    panels = []
    fig, axes = plt.subplots(len(wavs), 1, figsize=(8, 2.3 * len(wavs)), squeeze=False)
    for ax, (title, wav_path) in zip(axes[:, 0], wavs):
        data, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
        if data.shape[0] < rate // 50:  # the model may stop before it says anything
            ax.set_title(f"{title}: no audio", fontsize=9)
            panels.append({"title": title, "seconds": data.shape[0] / rate, "frames": 0})
            continue
        mel_fn = LogMel(rate, n_fft=1024, hop_length=rate // 50, n_mels=80, causal=False)
        mel = mel_fn(torch.from_numpy(data.mean(axis=1)))[0]
        seconds = data.shape[0] / rate
        # one colour scale for every panel (log magnitude from the floor, log 1e-5, up), so loudness compares
        ax.imshow(
            mel.numpy(), origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, 80), vmin=-11.5, vmax=2.0
        )
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("mel band")
        lo, hi = round(float(mel.min()), 3), round(float(mel.max()), 3)
        panels.append(
            {
                "title": title,
                "seconds": round(seconds, 3),
                "frames": mel.shape[-1],
                "log_mel_min": lo,
                "log_mel_max": hi,
            }
        )
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return panels


def repo_relative(obj):
    """``obj`` with every path string under the repository written relative to it (committed results stay portable)."""
    if isinstance(obj, dict):
        return {k: repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [repo_relative(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(f"{REPO}/"):
        return obj[len(f"{REPO}/") :]
    return obj


# figures of `moss-speech evaluate` shown side by side (all accuracies are fractions of the questions asked)
FIGURES = ("s2s_text_free_accuracy", "s2s_text_guided_accuracy", "s2t_accuracy", "t2t_accuracy",
           "unseen_voice_s2s_accuracy", "heldout_fact_s2s_accuracy", "spoken_cloze_accuracy", "text_cloze_accuracy",
           "text_path_unchanged")  # fmt: skip


def evaluation(base: Path, out: Path, max_items: int) -> dict:
    """``moss-speech evaluate --run OUT --max_items N`` on the quickstart model, beside the base run's report
    (``full``: the same questions, since both take the first N of the test split)."""
    from moss_components.cli.evaluate import evaluate

    print(f"\n$ moss-speech evaluate --run {out} --max_items {max_items}", flush=True)
    ours = evaluate(run=str(out), max_items=max_items)
    report = base / "report.json"
    theirs = json.loads(report.read_text()) if report.is_file() else {}
    theirs = theirs.get("figures", theirs)
    return {
        "max_items": max_items,
        "base_report_items": theirs.get("s2s_text_free_accuracy_n"),
        "quickstart": {k: ours.get(k) for k in FIGURES},
        "base": {k: theirs.get(k) for k in FIGURES},
    }


def evaluation_table(figures: dict) -> str:
    def show(v) -> str:
        return "n/a" if v is None else (str(v) if isinstance(v, bool) else f"{v:.3f}")

    rows = [f"| figure (`moss-speech evaluate`, {figures['max_items']} test questions) | quickstart | base run |",
            "|---|---|---|"]  # fmt: skip
    rows += [f"| {k} | {show(figures['quickstart'][k])} | {show(figures['base'][k])} |" for k in FIGURES]
    return "\n".join(rows)


def markdown_table(results: dict) -> str:
    rows = [
        "| model | steps (PT-1 + SFT) | ASR judge's transcript of the answer | correct | answer (s) | "
        "first audio (s) | total (s) | RTF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["answers"].items():
        rtf = "n/a" if r["real_time_factor"] is None else f"{r['real_time_factor']:.3f}"
        rows.append(
            f"| {name} | {r['steps']} | {r['transcript']!r} | {'yes' if r['correct'] else 'no'} | "
            f"{r['audio_seconds']:.2f} | {r['first_audio_seconds']:.3f} | {r['total_seconds']:.3f} | {rtf} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), required=True)
    parser.add_argument("--base", help="a finished pipeline run (default: made or reused by the budget)")
    parser.add_argument("--out", help="run directory (default: runs/tutorials/01_quickstart/<budget>)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the machine is shared; timings below are on one thread
    budget = BUDGETS[args.budget]
    t_start = time.perf_counter()
    base = base_run(args.budget, args.base).resolve()
    out = Path(args.out or REPO / "runs" / "tutorials" / "01_quickstart" / args.budget).resolve()
    out.mkdir(parents=True, exist_ok=True)

    walls = {"pt1": fit("pt1", base, out, budget["pt1_steps"])}
    walls["sft"] = fit("sft", base, out, budget["sft_steps"], init_from=out / "pt1" / "export")
    link_base_parts(base, out)

    row = pick_question(base)
    question = base / "corpus" / row["question_audio"]
    print(
        f"\nquestion ({row['question_voice']}, unseen voice): {row['question_text']!r}; "
        f"expected answer: {row['answer_text']!r}"
    )
    runs = {"quickstart": (out, f"{budget['pt1_steps']} + {budget['sft_steps']}")}
    if args.budget == "full":  # the whole recipe's model, asked the same question
        runs["runs/demo (pipeline tiny)"] = (base, "pipeline: PT-1 + PT-2 + SFT")
    answers = {}
    for name, (run, steps) in runs.items():
        t0 = time.perf_counter()
        wav = out / ("answer.wav" if run == out else "demo_answer.wav")
        answers[name] = {
            "run": str(run),
            "steps": steps,
            **ask(run, question, wav, budget["max_new_tokens"], row["answer"]),
        }
        walls[f"chat[{name}]"] = time.perf_counter() - t0

    # the same figures the pipeline reports, on as many test questions as runs/demo's report (full)
    t0 = time.perf_counter()
    figures = evaluation(base, out, budget["eval_items"])
    walls["evaluate"] = time.perf_counter() - t0

    png = out / "spectrogram.png"
    panels = spectrogram_png(
        png,
        [(f"question: {row['question_text']!r} ({row['question_voice']})", question)]
        + [(f"answer, {name}: judge heard {a['transcript']!r}", Path(a["output"])) for name, a in answers.items()],
    )
    results = {
        "budget": args.budget,
        "base": str(base),
        "out": str(out),
        "threads": 1,
        "question": {
            k: row[k]
            for k in (
                "id",
                "question_text",
                "answer_text",
                "answer",
                "question_voice",
                "question_audio",
                "unseen_voice",
                "heldout",
            )
        },
        "training": {
            stage: {"steps": budget[f"{stage}_steps"], **train_losses(out / stage)} for stage in ("pt1", "sft")
        },
        "answers": answers,
        "evaluation": figures,
        "spectrogram": {"png": str(png), "panels": panels},
        "wall_seconds": {k: round(v, 1) for k, v in walls.items()},
    }
    # a fit done before with the same command (OUT/<stage>/fit.json) is reused: its seconds are those of that run
    results["wall_seconds"]["this_run"] = round(time.perf_counter() - t_start, 1)
    (out / "results.json").write_text(json.dumps(repo_relative(results), indent=2))
    table = markdown_table(results) + "\n\n" + evaluation_table(figures)
    print("\n" + table)
    if args.budget == "full":
        import shutil

        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, RESULTS / "spectrogram.png")
        for a in answers.values():
            shutil.copy(a["output"], RESULTS / Path(a["output"]).name)
        shutil.copy(question, RESULTS / "question.wav")
        (RESULTS / "results.json").write_text(json.dumps(repo_relative(results), indent=2))
        (RESULTS / "table.md").write_text(table + "\n")
        print(f"\nwrote {RESULTS}")
    print(f"wall time: {results['wall_seconds']['this_run']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
