"""``moss-speech data import`` and ``moss-speech data check``."""

from __future__ import annotations


def import_corpus(
    src: str,
    out: str,
    split: str = "train",
    layout: str = "auto",
    convert: bool = False,
    sample_rate: int = 16000,
) -> dict:
    """Convert a LibriSpeech-style tree (*.trans.txt) or a folder of x.wav + x.txt into OUT/read/SPLIT.jsonl.

    Args:
        src: corpus directory.
        out: output corpus directory (manifest under read/, corpus.json summary).
        split: split name of the manifest (train, validation, test).
        layout: librispeech, folder or auto.
        convert: rewrite audio as 16-bit mono WAV at sample_rate under OUT/wav/ (default: point at the originals).
        sample_rate: Hz of converted audio.
    """
    from moss_components.data.importers import import_corpus as run

    summary = run(src, out, split=split, layout=layout, convert=convert, sample_rate=sample_rate)
    print(
        f"imported {summary['utterances']} utterances ({summary['hours']:.3f} h, {summary['voices']} voices, "
        f"layout {summary['layout']}) into {out}/read/{split}.jsonl; skipped: {summary['skipped'] or 'none'}"
    )
    return summary


def check(
    manifest: str,
    sample_rate: int = 16000,
    max_seconds: float = 30.0,
    silence_peak: float = 1e-4,
    json_out: str | None = None,
) -> None:
    """Validate MANIFEST (a .jsonl, or a corpus directory: all its read/ and qa/ manifests); print a report and
    exit with status 1 on errors.

    Args:
        manifest: manifest .jsonl or corpus directory.
        sample_rate: expected Hz.
        max_seconds: longest allowed clip.
        silence_peak: a clip whose peak is below this is silent.
        json_out: also write the report as JSON here.
    """
    import json
    from pathlib import Path

    from moss_components.data.check import check_manifest

    p = Path(manifest)
    paths = sorted(p.glob("read/*.jsonl")) + sorted(p.glob("qa/*.jsonl")) if p.is_dir() else [p]
    if not paths:
        raise SystemExit(f"data check: {p} has no read/*.jsonl or qa/*.jsonl manifests")
    reports = [check_manifest(m, sample_rate, max_seconds, silence_peak) for m in paths]
    for r in reports:
        print(r.format())
    if json_out:
        Path(json_out).write_text(json.dumps([r.to_dict() for r in reports], indent=1))
    failed = [r.manifest for r in reports if not r.ok]
    if failed:
        raise SystemExit(f"data check FAILED: {len(failed)} of {len(reports)} manifests have errors")
    print(f"data check passed: {len(reports)} manifests")
