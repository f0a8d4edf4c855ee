"""Turn a user's corpus into the manifest format (``manifest.py``).

Two layouts:

- **LibriSpeech**: ``SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt`` with lines ``UTT-ID TRANSCRIPT`` beside
  ``UTT-ID.flac`` (or ``.wav``); the voice is the speaker directory.
- **folder**: any tree of ``x.wav`` (or ``.flac``) with ``x.txt`` beside it holding the transcript; the voice is
  the parent directory's name.

Transcripts are normalized (lowercase, numbers spelled out; ``text_norm.py``). By default the manifest points at
the original files (absolute paths); with ``convert`` every file is rewritten as 16-bit mono WAV at
``sample_rate`` under ``OUT/wav/`` (resampled with soxr, downmixed). Unreadable files and empty transcripts are
skipped, counted and listed in the returned summary.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from moss_components.data.manifest import write_manifest
from moss_components.data.text_norm import normalize_transcript

AUDIO_EXTS = (".flac", ".wav")


def _librispeech_items(src: Path) -> list[tuple[str, Path | None, str, str]]:
    items = []
    for trans in sorted(src.rglob("*.trans.txt")):
        speaker = trans.parent.parent.name
        for line in trans.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            uid, _, text = line.strip().partition(" ")
            audio = next(
                (trans.parent / f"{uid}{e}" for e in AUDIO_EXTS if (trans.parent / f"{uid}{e}").is_file()), None
            )
            items.append((uid, audio, text, speaker))
    return items


def _folder_items(src: Path) -> list[tuple[str, Path | None, str, str]]:
    items = []
    for audio in sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTS):
        txt = audio.with_suffix(".txt")
        text = txt.read_text(encoding="utf-8") if txt.is_file() else ""
        uid = str(audio.relative_to(src).with_suffix("")).replace(os.sep, "-")
        items.append((uid, audio, text, audio.parent.name if audio.parent != src else "unknown"))
    return items


def detect_format(src: Path) -> str:
    if next(src.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    if next((p for p in src.rglob("*") if p.suffix.lower() in AUDIO_EXTS), None) is not None:
        return "folder"
    raise ValueError(f"{src}: found neither *.trans.txt (LibriSpeech) nor .wav/.flac files (folder layout)")


def import_corpus(
    src: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "train",
    layout: str = "auto",
    convert: bool = False,
    sample_rate: int = 16000,
) -> dict:
    """Write ``out/read/{split}.jsonl`` (and ``out/corpus.json``) from ``src``; return a summary with skip counts.

    Args:
        layout: ``"librispeech"``, ``"folder"`` or ``"auto"``.
        convert: rewrite audio as 16-bit mono WAV at ``sample_rate`` under ``out/wav/{split}/``.
    """
    import soxr

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory")
    layout = detect_format(src) if layout == "auto" else layout
    if layout not in ("librispeech", "folder"):
        raise ValueError(f"layout {layout!r}; expected 'librispeech', 'folder' or 'auto'")
    items = _librispeech_items(src) if layout == "librispeech" else _folder_items(src)
    records, skipped = [], Counter()
    skipped_ids: list[str] = []
    for uid, audio, raw, voice in items:
        text = normalize_transcript(raw)
        reason = None
        if audio is None:
            reason = "missing audio"
        elif not text:
            reason = "empty text"
        else:
            try:
                info = sf.info(str(audio))
            except Exception:
                reason = "unreadable"
        if reason:
            skipped[reason] += 1
            skipped_ids.append(uid)
            continue
        rate, seconds = info.samplerate, info.frames / info.samplerate
        if convert:
            data, rate0 = sf.read(str(audio), dtype="float32", always_2d=True)
            wav = data.mean(axis=1)
            if rate0 != sample_rate:
                wav = soxr.resample(wav, rate0, sample_rate, quality="HQ")
            dest = out / "wav" / split / f"{uid}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.stem + ".tmp.wav")
            sf.write(str(tmp), np.clip(wav, -1.0, 32767 / 32768), sample_rate, subtype="PCM_16")
            os.replace(tmp, dest)
            path, rate, seconds = str(dest.relative_to(out)), sample_rate, len(wav) / sample_rate
        else:
            path = str(audio.resolve())
        records.append(
            {"id": uid, "audio": path, "text": text, "voice": voice, "duration": round(seconds, 4), "sample_rate": rate}
        )
    write_manifest(out / "read" / f"{split}.jsonl", records)
    summary_path = out / "corpus.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"format_version": 1, "imported": {}}
    summary.setdefault("imported", {})[split] = {
        "source": str(src.resolve()),
        "layout": layout,
        "utterances": len(records),
        "hours": round(sum(r["duration"] for r in records) / 3600, 4),
        "voices": len({r["voice"] for r in records}),
        "skipped": dict(skipped),
        "skipped_ids": skipped_ids[:100],
        "converted": convert,
    }
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary["imported"][split]
