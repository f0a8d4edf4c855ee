"""The manifest format: one JSON object per line (JSONL), one utterance per line.

Read speech (``DIR/read/{split}.jsonl``), required keys:

====================  ===========================================================================================
``id``                unique utterance id (str)
``audio``             path of a WAV/FLAC file, relative to the corpus root ``DIR`` (or absolute)
``text``              transcript: lowercase words over ``a-z``, space and apostrophe; numbers spelled out
``voice``             speaker or voice name (str)
``duration``          seconds (float)
``sample_rate``       Hz of the file (int; 16000 for the built-in corpus)
====================  ===========================================================================================

Optional keys of the built-in corpus: ``kind`` (statement / question / answer / mention), ``fact_id``,
``rate`` and ``pitch`` (eSpeak settings), ``unseen_voice`` (bool).

Spoken QA (``DIR/qa/{split}.jsonl``): ``id``, ``fact_id``, ``category``, ``question_text``, ``answer_text`` (full
spoken answer, "the answer is paris"), ``answer`` (bare, "paris"), ``question_audio``, ``answer_audio``,
``question_voice``, ``answer_voice``, ``question_duration``, ``answer_duration``, ``sample_rate``, ``heldout``
(bool), ``unseen_voice`` (bool).

The corpus root of a manifest is the nearest ancestor directory holding ``corpus.json``; without one it is the
manifest's own directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

READ_KEYS = ("id", "audio", "text", "voice", "duration", "sample_rate")
QA_KEYS = (
    "id",
    "fact_id",
    "question_text",
    "answer_text",
    "answer",
    "question_audio",
    "answer_audio",
    "question_voice",
    "answer_voice",
    "question_duration",
    "answer_duration",
    "heldout",
    "unseen_voice",
)
SPLITS = ("train", "validation", "test")


def read_manifest(path: str | os.PathLike, required: Iterable[str] = ("id",)) -> list[dict]:
    """Read a JSONL manifest; raise ``ValueError`` naming the line of a bad JSON line or a missing key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in required if k not in rec]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing keys {missing}; a line needs {list(required)}")
            records.append(rec)
    return records


def write_manifest(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as JSONL atomically (temp file + ``os.replace``); return the number of lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def corpus_root(manifest_path: str | os.PathLike) -> Path:
    """The directory that ``audio`` paths of ``manifest_path`` are relative to (see the module docstring)."""
    here = Path(manifest_path).resolve().parent
    for d in (here, *here.parents):
        if (d / "corpus.json").is_file():
            return d
    return here


def resolve_audio(root: Path, audio: str) -> Path:
    p = Path(audio)
    return p if p.is_absolute() else root / p


def find_manifest(manifest_dir: str | os.PathLike, split: str) -> Path:
    """``DIR/read/{split}.jsonl`` or ``DIR/{split}.jsonl``, whichever exists (read speech first)."""
    d = Path(manifest_dir)
    for cand in (d / "read" / f"{split}.jsonl", d / f"{split}.jsonl"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"no manifest for split {split!r} under {d}: looked for read/{split}.jsonl and {split}.jsonl"
    )
