"""``moss-speech evaluate --run DIR``: recompute a pipeline run's report figures."""

from __future__ import annotations

import json

from moss_components.evaluation.run_layout import RunLayout


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

        figures = write_report(layout, Pipeline(layout, PRESETS["tiny"]).wall_seconds(), max_items=max_items)
    else:
        from moss_components.evaluation.run_report import evaluate_run

        figures, _ = evaluate_run(layout.root, split=split, max_items=max_items)
    print(json.dumps(figures, indent=2))
    return figures
