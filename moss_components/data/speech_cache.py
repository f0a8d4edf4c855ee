"""The speech-id cache: every utterance of a manifest encoded once by a ``SpeechTokenizer`` and kept on disk.

Layout for a manifest ``.../read/train.jsonl`` cached into ``OUT``::

    OUT/read/train.safetensors     one int32 tensor per key: (T',) for one codebook, (Q, T') for several
    OUT/read/train.index.json      {"keys", "lengths", "frame_rate", "codebook_size", "num_codebooks", ...}
    OUT/read/train.parts/          part files while encoding (removed once merged)

Keys are utterance ids for read speech, and ``"{id}:question"`` / ``"{id}:answer"`` for spoken QA lines (an
audio file shared by several lines is encoded once). Encoding is batched (items sorted by duration to limit
padding), resumable (finished part files are kept and their keys skipped) and atomic (every file is written to a
temp name and moved with ``os.replace``, so a kill leaves no half-written file under a final name).

Training stages read the cache with :class:`SpeechCache`, never the waveforms.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from moss_components.data.audio_io import UnusableAudio, load_audio
from moss_components.data.manifest import corpus_root, read_manifest, resolve_audio

INDEX_SUFFIX = ".index.json"


def cache_paths(manifest: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(ids file, index file, parts dir)`` for ``manifest`` under ``out_dir`` (keeps ``read/`` or ``qa/``)."""
    m = Path(manifest)
    sub = m.parent.name if m.parent.name in ("read", "qa") else ""
    base = Path(out_dir) / sub / m.stem
    return base.with_suffix(".safetensors"), base.with_name(m.stem + INDEX_SUFFIX), base.with_name(m.stem + ".parts")


def manifest_audio_keys(records: list[dict]) -> list[tuple[str, str]]:
    """``[(cache key, audio path)]`` of read-speech or QA records (see the module docstring)."""
    out = []
    for r in records:
        if "question_audio" in r:
            out.append((f"{r['id']}:question", r["question_audio"]))
            out.append((f"{r['id']}:answer", r["answer_audio"]))
        else:
            out.append((str(r["id"]), r["audio"]))
    return out


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


@torch.no_grad()
def _encode_batch(tokenizer, wavs: list[torch.Tensor], sample_rate: int) -> list[torch.Tensor]:
    out = tokenizer.encode(wavs, sample_rate)
    ids, lengths = (out.ids, out.lengths) if hasattr(out, "ids") else out
    ids, lengths = ids.cpu(), lengths.cpu()
    return [ids[i, ..., : int(lengths[i])].to(torch.int32).contiguous() for i in range(len(wavs))]


def encode_manifest(
    tokenizer,
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    batch_size: int = 16,
    part_size: int = 512,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Encode every utterance of ``manifest`` with ``tokenizer`` into the cache under ``out_dir``; return the index.

    Args:
        tokenizer: a ``SpeechTokenizer`` (``encode(list of (T,) float32, sample_rate) -> ids (B, T') or
            (B, Q, T') with lengths (B,)``; properties ``sample_rate``, ``frame_rate``, ``codebook_size``,
            ``num_codebooks``).
        batch_size: utterances per ``encode`` call.
        part_size: utterances per part file (the unit of resumption).
    Unusable audio is skipped, counted by reason in ``index["skipped"]`` and logged.
    """
    from tqdm import tqdm

    manifest = Path(manifest)
    ids_path, index_path, parts_dir = cache_paths(manifest, out_dir)
    root = corpus_root(manifest)
    keys = manifest_audio_keys(read_manifest(manifest, required=("id",)))
    if ids_path.is_file() and index_path.is_file():
        index = json.loads(index_path.read_text())
        if set(index["keys"]) | set(index.get("skipped_keys", [])) >= {k for k, _ in keys}:
            log(f"{ids_path}: complete ({len(index['keys'])} items), skipped")
            return index
    parts_dir.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    for part in sorted(parts_dir.glob("part-*.safetensors")):
        with safe_open(str(part), "pt") as f:
            done.update(f.keys())
    skipped: dict[str, str] = {}
    skipped_file = parts_dir / "skipped.json"
    if skipped_file.is_file():
        skipped = json.loads(skipped_file.read_text())
    # One encode per distinct audio file; keys sharing it get the same ids.
    by_audio: dict[str, list[str]] = {}
    for k, a in keys:
        if k not in done and k not in skipped:
            by_audio.setdefault(a, []).append(k)
    todo = list(by_audio)
    durations = {}
    for a in todo:
        try:
            import soundfile as sf

            durations[a] = sf.info(str(resolve_audio(root, a))).duration
        except Exception:  # unreadable: load_audio below reports it properly
            durations[a] = 0.0
    todo.sort(key=lambda a: durations[a])
    sr = int(tokenizer.sample_rate)
    # Shorter than one frame gives no id: skipped and counted as "too short".
    min_samples = int(getattr(tokenizer, "samples_per_frame", round(sr / float(tokenizer.frame_rate))))
    part_no = len(list(parts_dir.glob("part-*.safetensors")))
    pending: dict[str, torch.Tensor] = {}
    bar = tqdm(
        total=len(keys), initial=len(done) + len(skipped), desc=f"tokenize {manifest.name}", disable=not progress
    )

    def flush() -> None:
        nonlocal part_no, pending
        if pending:
            _atomic_save(pending, parts_dir / f"part-{part_no:05d}.safetensors")
            part_no += 1
            pending = {}
        tmp = skipped_file.with_name("skipped.json.tmp")
        tmp.write_text(json.dumps(skipped))
        os.replace(tmp, skipped_file)

    for start in range(0, len(todo), batch_size):
        audios = todo[start : start + batch_size]
        wavs, ok = [], []
        for a in audios:
            try:
                wavs.append(load_audio(resolve_audio(root, a), sr, min_samples=min_samples))
                ok.append(a)
            except UnusableAudio as err:
                for k in by_audio[a]:
                    skipped[k] = err.reason
                log(f"skipped {a}: {err}")
        if wavs:
            for a, ids in zip(ok, _encode_batch(tokenizer, wavs, sr)):
                for k in by_audio[a]:
                    pending[k] = ids.clone()
        bar.update(sum(len(by_audio[a]) for a in audios))
        if len(pending) >= part_size:
            flush()
    flush()
    bar.close()

    merged: dict[str, torch.Tensor] = {}
    for part in sorted(parts_dir.glob("part-*.safetensors")):
        merged.update(load_file(str(part)))
    order = [k for k, _ in keys if k in merged]
    index = {
        "manifest": str(manifest.resolve()),
        "keys": order,
        "lengths": {k: int(merged[k].shape[-1]) for k in order},
        "frame_rate": float(tokenizer.frame_rate),
        "codebook_size": int(tokenizer.codebook_size),
        "num_codebooks": int(tokenizer.num_codebooks),
        "sample_rate": sr,
        "tokenizer": type(tokenizer).__name__,
        "skipped": {r: sum(1 for v in skipped.values() if v == r) for r in sorted(set(skipped.values()))},
        "skipped_keys": sorted(skipped),
    }
    _atomic_save({k: merged[k] for k in order}, ids_path, metadata={"frame_rate": str(tokenizer.frame_rate)})
    tmp = index_path.with_name(index_path.name + ".tmp")
    tmp.write_text(json.dumps(index))
    os.replace(tmp, index_path)
    for part in parts_dir.iterdir():
        part.unlink()
    parts_dir.rmdir()
    if skipped:
        log(f"{manifest}: skipped {len(skipped)} items: {index['skipped']}")
    return index


class SpeechCache:
    """Read access to one cached split: ``cache[key] -> (T',) or (Q, T') long``.

    Args:
        ids_path: ``.../{split}.safetensors`` written by :func:`encode_manifest`.
    """

    def __init__(self, ids_path: str | os.PathLike) -> None:
        ids_path = Path(ids_path)
        index_path = ids_path.with_name(ids_path.stem + INDEX_SUFFIX)
        if not ids_path.is_file() or not index_path.is_file():
            raise FileNotFoundError(
                f"no speech-id cache at {ids_path} (+ {index_path.name}); run `moss-speech tokenize` first"
            )
        self.index = json.loads(index_path.read_text())
        self.tensors = load_file(str(ids_path))
        self.frame_rate = float(self.index["frame_rate"])
        self.codebook_size = int(self.index["codebook_size"])

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key].long()

    def __len__(self) -> int:
        return len(self.tensors)

    def keys(self) -> list[str]:
        return list(self.index["keys"])
