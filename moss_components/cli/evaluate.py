"""``moss-speech evaluate --run DIR``: recompute a pipeline run's report figures."""

from __future__ import annotations

import json

from moss_components.evaluation.run_layout import RunLayout


def _run_preset(layout: RunLayout) -> str:
    """The pipeline preset a run was made with (its corpus is named after it), for the report's title and targets;
    ``tiny`` when the corpus preset is not a pipeline preset (``micro``, a custom corpus)."""
    from moss_components.cli.pipeline import PRESETS

    summary = layout.corpus / "corpus.json"
    preset = json.loads(summary.read_text()).get("preset") if summary.is_file() else None
    return preset if preset in PRESETS else "tiny"


def evaluate(
    run: str, split: str = "test", max_items: int | None = 200, write: bool = False, cloze_only: bool = False
) -> dict:
    """Recompute the figures of ``report.json`` for the run directory RUN and print them.

    Args:
        run: a pipeline run directory.
        split: the QA split to ask (test: unseen voices and held-out facts).
        max_items: questions per figure (None: all).
        write: also rewrite RUN/report.json, report.md, plots and examples.
        cloze_only: only the spoken and text cloze figures of the final speech LM (no generation: seconds).
    """
    layout = RunLayout(run)
    if cloze_only:
        from transformers import AutoTokenizer

        from moss_components.checkpoints import load_moss_speech
        from moss_components.evaluation.cloze import cloze_figures

        model = load_moss_speech(layout.speech_lm).eval()
        tokenizer = AutoTokenizer.from_pretrained(layout.speech_lm, local_files_only=True)
        figures = cloze_figures(layout, model, tokenizer, split, max_items)
    elif write:
        from moss_components.cli.pipeline import PRESETS, Pipeline
        from moss_components.cli.report import write_report

        preset = _run_preset(layout)
        figures = write_report(layout, Pipeline(layout, PRESETS[preset]).wall_seconds(), preset, max_items=max_items)
    else:
        from moss_components.evaluation.run_report import evaluate_run

        figures, _ = evaluate_run(layout.root, split=split, max_items=max_items)
    print(json.dumps(figures, indent=2))
    return figures
