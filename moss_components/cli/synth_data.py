"""``moss-speech synth-data``: synthesize the built-in spoken corpus with eSpeak NG."""

from __future__ import annotations


def synth_data(
    out: str,
    preset: str = "tiny",
    seed: int = 0,
    workers: int | None = None,
    max_facts: int | None = None,
    progress: bool = True,
) -> dict:
    """Synthesize the built-in corpus (text, read speech, spoken QA) into ``out``.

    Args:
        out: output directory (created; existing WAVs are reused, so an interrupted build resumes).
        preset: tiny (a few thousand utterances, <= 60 s on 2 cores), small (~10x), tiny-wide (tiny in 426
            training voices instead of 90) or micro (tests).
        seed: the corpus is deterministic for (preset, seed).
        workers: synthesis processes (default: CPU count).
        max_facts: keep only this many facts, for quick experiments.
        progress: show a progress bar.
    """
    from moss_components.data.synth_corpus import build_corpus, format_summary

    summary = build_corpus(out, preset=preset, seed=seed, workers=workers, max_facts=max_facts, progress=progress)
    print(format_summary(summary))
    print(f"wrote {out}/corpus.json")
    return summary
