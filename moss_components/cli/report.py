"""The pipeline's report: ``report.json``, ``report.md``, loss-curve and spectrogram PNGs, example WAVs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import soundfile as sf

from moss_components.evaluation.run_layout import RunLayout
from moss_components.evaluation.run_report import evaluate_run

# the S->T targets are on seen facts asked in unseen voices (``s2t_accuracy`` also counts training voices)
TARGETS = {"tiny": {"unseen_voice_s2t_accuracy": 0.6, "s2s_text_free_accuracy": 0.5},
           "small": {"unseen_voice_s2t_accuracy": 0.9, "s2s_text_free_accuracy": 0.8,
                     "heldout_fact_s2s_accuracy": 0.3}}  # fmt: skip


def _loss_curves(layout: RunLayout) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{stage: {metric: [(step, value), ...]}}`` from each stage's CSVLogger ``metrics.csv``."""
    curves: dict = {}
    for metrics in sorted(layout.root.glob("*/logs/version_*/metrics.csv")):
        stage = metrics.parts[-4]
        with open(metrics) as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key.endswith("loss") and value not in ("", None) and row.get("step") not in ("", None):
                        curves.setdefault(stage, {}).setdefault(key, []).append((int(row["step"]), float(value)))
    return curves


def plot_loss_curves(layout: RunLayout) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _loss_curves(layout)
    if not curves:
        return None
    cols = min(4, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (stage, metrics) in zip(axes.flat, curves.items()):
        for name, points in sorted(metrics.items()):
            if points:
                steps, values = zip(*sorted(points))
                ax.plot(steps, values, label=name, marker="." if len(points) < 20 else None)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    fig.tight_layout()
    layout.plots.mkdir(parents=True, exist_ok=True)
    path = layout.plots / "loss_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_examples(layout: RunLayout, details: dict, speech, count: int = 3) -> list[dict]:
    """Question and answer WAVs of a few spoken answers, and a spectrogram PNG of the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = details.get("s2s_text_free_accuracy") or []
    layout.examples.mkdir(parents=True, exist_ok=True)
    qa = {}
    manifest = layout.corpus / "qa" / "test.jsonl"
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        qa[rec["id"]] = rec
    written = []
    for i, ans in enumerate(answers[:count]):
        rec = qa[ans.item.id]
        question = layout.examples / f"{i}_question.wav"
        question.write_bytes((layout.corpus / rec["question_audio"]).read_bytes())
        wav = speech.speak([ans.speech_ids])[0]
        answer = layout.examples / f"{i}_answer.wav"
        sf.write(answer, wav.numpy(), speech.sample_rate, subtype="PCM_16")
        written.append({"question": rec["question_text"], "expected": rec["answer"], "heard": ans.transcript,
                        "correct": ans.correct, "question_wav": question.name, "answer_wav": answer.name})  # fmt: skip
        if i == 0 and ans.speech_ids:
            import torch

            mel = speech.decoder.decode(torch.tensor([ans.speech_ids]))[0]
            fig, ax = plt.subplots(figsize=(8, 3))
            ax.imshow(mel.numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"answer to: {rec['question_text']!r} (judge heard {ans.transcript!r})", fontsize=9)
            ax.set_xlabel("mel frame")
            ax.set_ylabel("mel band")
            fig.tight_layout()
            layout.plots.mkdir(parents=True, exist_ok=True)
            fig.savefig(layout.plots / "answer_spectrogram.png", dpi=110)
            plt.close(fig)
    return written


def write_answers(path: Path, details: dict) -> int:
    """One JSON line per evaluated question and figure (what was asked, expected and answered); returns the count.

    The report's accuracies are means over these lines, so an error analysis starts here.
    """
    rows = []
    for figure, answers in details.items():
        for a in answers:
            rows.append({"figure": figure, "mode": a.mode, "id": a.item.id, "question": a.item.question_text,
                         "expected": a.item.answer, "text": a.text, "transcript": a.transcript,
                         "correct": a.correct, "open_transcript": a.open_transcript, "correct_open": a.correct_open,
                         "ids_exact_match": a.ids_exact_match,
                         "category": a.item.tags.get("category"), "unseen_voice": a.item.tags.get("unseen_voice"),
                         "heldout": a.item.tags.get("heldout")})  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return len(rows)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_report(
    layout: RunLayout,
    wall_seconds: dict[str, float],
    preset: str = "tiny",
    max_items: int | None = 200,
    max_new_tokens: int = 120,
) -> dict:
    """Evaluate the run and write ``report.json``, ``report.md``, ``answers.jsonl``, plots and examples; return the
    figures."""
    from moss_components.evaluation.speech_output import SpeechOutput

    figures, details = evaluate_run(layout.root, max_items=max_items, max_new_tokens=max_new_tokens)
    codec = layout.record("codec_eval")
    if codec.is_file():
        result = json.loads(codec.read_text()).get("result", {})
        figures["codec_resynth_cer"] = result.get("resynth_cer")
        figures["codec_tokenizer_cer"] = result.get("tokenizer_cer")
        figures["codec_usage"] = result.get("codebook_usage")
    figures["wall_seconds"] = {**wall_seconds, "total": round(sum(wall_seconds.values()), 1)}
    figures["targets"] = {
        k: {"target": v, "met": (figures.get(k) or 0) >= v} for k, v in TARGETS.get(preset, {}).items()
    }
    plot_loss_curves(layout)
    from moss_components.asr import load_recognizer
    from moss_components.decoders import load_decoder
    from moss_components.vocoders import load_vocoder

    speech = SpeechOutput(load_decoder(layout.decoder).eval(), load_vocoder(layout.vocoder).eval(),
                          load_recognizer(layout.export("judge")).eval())  # fmt: skip
    examples = write_examples(layout, details, speech)
    write_answers(layout.root / "answers.jsonl", details)
    (layout.root / "report.json").write_text(json.dumps(figures, indent=2))

    lines = [f"# moss-speech pipeline report ({preset})", "", "| figure | value |", "|---|---|"]
    for key, value in figures.items():
        if key not in ("wall_seconds", "targets"):
            lines.append(f"| {key} | {_fmt(value)} |")
    lines += ["", "## Targets", "", "| figure | target | met |", "|---|---|---|"]
    lines += [f"| {k} | {v['target']} | {v['met']} |" for k, v in figures["targets"].items()]
    lines += ["", "## Wall time per stage (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in figures["wall_seconds"].items()]
    lines += ["", "## Examples (spoken question -> text-free spoken answer)", ""]
    lines += [f"- {e['question']!r}: expected {e['expected']!r}, the judge heard {e['heard']!r} "
              f"({'right' if e['correct'] else 'wrong'}); `examples/{e['answer_wav']}`" for e in examples]  # fmt: skip
    lines += ["", "![loss curves](plots/loss_curves.png)", "", "![answer](plots/answer_spectrogram.png)", ""]
    (layout.root / "report.md").write_text("\n".join(lines))
    return figures
