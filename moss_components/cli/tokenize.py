"""``moss-speech tokenize``: encode manifests once and cache their speech ids (see ``data/speech_cache.py``)."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(path: str):
    """A ``SpeechTokenizer`` from a ``save_pretrained`` directory (config.yaml + model.safetensors) or a YAML
    file with ``class_path`` / ``init_args`` (random weights unless a ``model.safetensors`` sits beside it)."""
    import yaml

    from moss_components.tokenizers import SpeechTokenizer, load_speech_tokenizer
    from moss_components.tokenizers.pretrained import build_component

    p = Path(path)
    if p.is_dir():
        return load_speech_tokenizer(str(p))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        cfg = yaml.safe_load(p.read_text())
        tok = build_component(cfg.get("tokenizer", cfg), SpeechTokenizer)
        weights = p.with_name("model.safetensors")
        if weights.is_file():
            from safetensors.torch import load_file

            tok.load_state_dict(load_file(str(weights)))
        return tok.eval()
    raise ValueError(
        f"--tokenizer {path}: expected a directory written by save_pretrained or a .yaml with class_path/init_args "
        "(Lightning .ckpt files are not loaded: they unpickle; export the tokenizer with save_pretrained)"
    )


def manifests_of(manifest: str) -> list[Path]:
    """``manifest`` itself, or every ``read/*.jsonl`` and ``qa/*.jsonl`` of a corpus directory."""
    p = Path(manifest)
    if p.is_dir():
        found = sorted(p.glob("read/*.jsonl")) + sorted(p.glob("qa/*.jsonl"))
        if not found:
            raise FileNotFoundError(f"{p}: no read/*.jsonl or qa/*.jsonl manifests")
        return found
    if not p.is_file():
        raise FileNotFoundError(f"--manifest {p} does not exist")
    return [p]


def tokenize(tokenizer: str, manifest: str, out: str, batch_size: int = 16, device: str = "cpu", progress: bool = True):
    """Encode every utterance of MANIFEST (a .jsonl, or a corpus directory: all its read/ and qa/ manifests)
    with the speech tokenizer and cache the ids under OUT (resumable: rerun to finish an interrupted job).

    Args:
        tokenizer: save_pretrained directory or YAML config of a SpeechTokenizer.
        manifest: a manifest .jsonl or a corpus directory.
        out: cache directory (OUT/read/{split}.safetensors, OUT/qa/{split}.safetensors + .index.json).
        batch_size: utterances per encode call.
        device: torch device for the tokenizer.
        progress: show progress bars.
    """
    import torch

    from moss_components.data.speech_cache import encode_manifest

    tok = load_tokenizer(tokenizer).to(device)
    with torch.inference_mode():
        for m in manifests_of(manifest):
            index = encode_manifest(tok, m, out, batch_size=batch_size, progress=progress)
            frames = sum(index["lengths"].values())
            print(
                f"{m}: {len(index['keys'])} items, {frames} frames at {index['frame_rate']} Hz, "
                f"skipped {index['skipped'] or 'none'}"
            )
