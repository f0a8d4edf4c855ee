"""Validate a manifest (read speech or spoken QA) against its audio files, and report every problem found.

Errors (the manifest cannot be trusted as is): a bad JSON line or missing key, a duplicate id, a missing, unreadable
or truncated file, a sample rate other than the expected one, more than one channel, NaN/inf samples, silence, empty
text, a duration over the limit or disagreeing with the file. Warnings: transcripts with characters outside the CTC
alphabet (a-z, space, apostrophe), very short clips.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from moss_components.data.manifest import corpus_root, resolve_audio
from moss_components.data.text_norm import is_normalized


@dataclass
class CheckReport:
    """What :func:`check_manifest` found. ``problems`` are ``(line, id, kind, message)``."""

    manifest: str
    lines: int = 0
    audio_files: int = 0
    seconds: float = 0.0
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)
    warnings: list[tuple[int, str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_lines: int = 20) -> str:
        out = [
            f"{self.manifest}: {self.lines} lines, {self.audio_files} audio files, {self.seconds / 3600:.3f} h; "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        ]
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if not items:
                continue
            counts = Counter(k for _, _, k, _ in items)
            out.append(f"{title} by kind: " + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
            for line, uid, kind, msg in items[:max_lines]:
                out.append(f"  line {line} ({uid}): {kind}: {msg}")
            if len(items) > max_lines:
                out.append(f"  ... and {len(items) - max_lines} more {title}")
        out.append("OK" if self.ok else "FAILED")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {
            "manifest": self.manifest,
            "lines": self.lines,
            "audio_files": self.audio_files,
            "hours": self.seconds / 3600,
            "ok": self.ok,
            "errors": [list(e) for e in self.errors],
            "warnings": [list(w) for w in self.warnings],
        }


def _check_audio(path: Path, sample_rate: int, max_seconds: float, silence_peak: float) -> tuple[list, list, float]:
    """``(errors [(kind, msg)], warnings, seconds)`` of one audio file."""
    errs, warns = [], []
    if not path.is_file():
        return [("missing file", f"{path} does not exist")], warns, 0.0
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile's error types vary with the damage
        return [("unreadable", f"{path}: {err}")], warns, 0.0
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if info.samplerate != sample_rate:
        errs.append(("sample rate", f"{path}: {info.samplerate} Hz, expected {sample_rate} Hz"))
    if info.channels != 1:
        errs.append(("channels", f"{path}: {info.channels} channels, expected mono"))
    if seconds > max_seconds:
        errs.append(("too long", f"{path}: {seconds:.2f} s > limit {max_seconds:.2f} s"))
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        return errs + [("unreadable", f"{path}: {err}")], warns, seconds
    if data.shape[0] < info.frames or _truncated(path, info):
        errs.append(("truncated", f"{path}: header says {info.frames} samples, file holds {data.shape[0]}"))
    if data.shape[0] == 0:
        errs.append(("empty audio", f"{path}: 0 samples"))
        return errs, warns, seconds
    finite = np.isfinite(data)
    if not finite.all():
        errs.append(("nan or inf", f"{path}: {int((~finite).sum())} samples are NaN or inf"))
    elif float(np.abs(data).max()) < silence_peak:
        errs.append(("silent", f"{path}: peak {float(np.abs(data).max()):.1e} < {silence_peak:.0e}"))
    if seconds < 0.1:
        warns.append(("very short", f"{path}: {seconds * 1000:.0f} ms"))
    return errs, warns, seconds


def _truncated(path: Path, info) -> bool:
    """For PCM WAV: the data chunk the header announces is longer than the bytes on disk."""
    if info.format != "WAV" or not info.subtype.startswith("PCM"):
        return False
    width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "PCM_U8": 1, "PCM_S8": 1}.get(info.subtype)
    if width is None:
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    at = head.find(b"data")
    if at < 0:
        return True
    announced = int.from_bytes(head[at + 4 : at + 8], "little")
    return os.path.getsize(path) - (at + 8) < announced


def check_manifest(
    manifest: str | os.PathLike,
    sample_rate: int = 16000,
    max_seconds: float = 30.0,
    silence_peak: float = 1e-4,
    duration_tolerance: float = 0.05,
) -> CheckReport:
    """Check every line of a read-speech or QA manifest and its audio (see the module docstring)."""
    manifest = Path(manifest)
    report = CheckReport(str(manifest))
    if not manifest.is_file():
        report.errors.append((0, "-", "missing manifest", f"{manifest} does not exist"))
        return report
    root = corpus_root(manifest)
    seen: dict[str, int] = {}
    checked: dict[str, tuple[list, list, float]] = {}
    with open(manifest, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            report.lines += 1
            try:
                rec = json.loads(line)
                assert isinstance(rec, dict)
            except (json.JSONDecodeError, AssertionError):
                report.errors.append((lineno, "-", "bad json", "not a JSON object"))
                continue
            uid = str(rec.get("id", "-"))

            def err(kind: str, msg: str, lineno=lineno, uid=uid) -> None:
                report.errors.append((lineno, uid, kind, msg))

            if uid in seen:
                err("duplicate id", f"{uid!r} is also on line {seen[uid]}")
            seen[uid] = lineno
            qa = "question_audio" in rec
            required = (
                ("id", "question_audio", "answer_audio", "question_text", "answer_text")
                if qa
                else ("id", "audio", "text")
            )
            missing = [k for k in required if k not in rec]
            if missing:
                err("missing key", f"missing {missing}; expected {list(required)}")
                continue
            pairs = (
                [
                    ("question_audio", "question_text", "question_duration"),
                    ("answer_audio", "answer_text", "answer_duration"),
                ]
                if qa
                else [("audio", "text", "duration")]
            )
            if rec.get("sample_rate") not in (None, sample_rate):
                err("sample rate", f"manifest says {rec['sample_rate']} Hz, expected {sample_rate} Hz")
            for akey, tkey, dkey in pairs:
                text = str(rec.get(tkey) or "").strip()
                if not text:
                    err("empty text", f"{tkey} is empty")
                elif not is_normalized(text):
                    bad = sorted({c for c in text if c not in " 'abcdefghijklmnopqrstuvwxyz"})
                    report.warnings.append((lineno, uid, "text outside a-z ' space", f"{tkey}: {bad or 'spacing'}"))
                path = resolve_audio(root, str(rec[akey]))
                if str(path) not in checked:
                    checked[str(path)] = _check_audio(path, sample_rate, max_seconds, silence_peak)
                    report.seconds += checked[str(path)][2]
                errs, warns, seconds = checked[str(path)]
                for kind, msg in errs:
                    err(kind, msg)
                for kind, msg in warns:
                    report.warnings.append((lineno, uid, kind, msg))
                stated = rec.get(dkey)
                if stated is not None and seconds and abs(float(stated) - seconds) > duration_tolerance:
                    err("duration", f"{dkey} {float(stated):.3f} s but the file holds {seconds:.3f} s")
    report.audio_files = len(checked)
    return report
