"""``moss-speech bench data``: synthesis throughput, and data-loader throughput next to a tiny model's step rate.

The loader is measured on grids of the PT-1 and SFT mixes (packed rows of ``max_length``) and the model is a tiny
random transformers Qwen3 fed the same rows (the grid flattened into one vocabulary, as the no-split baseline
does), trained with AdamW. The ratio loader tokens/s : model tokens/s above 1 means the loader keeps up. Without
``--cache``, speech ids are random codes at 12.5 Hz of each utterance's duration (shapes are what matter here).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def _fake_cache(corpus: Path, out: Path, codebook_size: int = 512, frame_rate: float = 12.5) -> None:
    """A speech-id cache of random codes with the right lengths, without a tokenizer."""
    import torch
    from safetensors.torch import save_file

    from moss_components.data.manifest import read_manifest
    from moss_components.data.speech_cache import cache_paths

    g = torch.Generator().manual_seed(0)
    for m in sorted(corpus.glob("read/*.jsonl")) + sorted(corpus.glob("qa/*.jsonl")):
        tensors = {}
        for r in read_manifest(m):
            if "question_audio" in r:
                pairs = [(f"{r['id']}:question", r["question_duration"]), (f"{r['id']}:answer", r["answer_duration"])]
            else:
                pairs = [(r["id"], r["duration"])]
            for key, seconds in pairs:
                n = max(1, int(seconds * frame_rate))
                tensors[key] = torch.randint(0, codebook_size, (n,), generator=g, dtype=torch.int32)
        ids_path, index_path, _ = cache_paths(m, out)
        ids_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(ids_path))
        index = {
            "keys": list(tensors),
            "lengths": {k: len(v) for k, v in tensors.items()},
            "frame_rate": frame_rate,
            "codebook_size": codebook_size,
            "num_codebooks": 1,
            "tokenizer": "random (bench)",
        }
        index_path.write_text(json.dumps(index))


def _loader_rate(dm, batches: int) -> tuple[float, float, float]:
    """``(seconds, grids/s, real tokens/s)`` over ``batches`` training batches."""
    it = iter(dm.train_dataloader())
    next(it)  # workers start, tokenizer warms up
    t0, grids, tokens = time.perf_counter(), 0, 0
    for _ in range(batches):
        b = next(it)
        if "num_documents" in b:  # packed
            grids += int(b["num_documents"].sum())
            tokens += int((b["document_ids"] < b["num_documents"][:, None]).sum())
        else:
            grids += b["input_ids"].shape[0]
            tokens += int(b["attention_mask"].sum())
    dt = time.perf_counter() - t0
    return dt, grids / dt, tokens / dt


def _model_rate(batch: dict, special, text_vocab: int, steps: int, layers: int, hidden: int) -> tuple[float, int]:
    """``(steps/s, parameters)`` of a tiny Qwen3 training on ``batch`` (grid flattened into one vocabulary)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from moss_components.data.grid import speech_positions

    inp, lab = batch["input_ids"], batch["labels"]
    sp = speech_positions(inp, special)
    offset = text_vocab + 2
    ids = torch.where(sp, inp[..., 1] + offset, inp[..., 0])
    labels = torch.where(sp, torch.where(lab[..., 1] >= 0, lab[..., 1] + offset, -100), lab[..., 0])
    cfg = Qwen3Config(
        vocab_size=offset + special.speech_pad + 1,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=ids.shape[1] + 1,
    )
    model = Qwen3ForCausalLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    kw = {"position_ids": batch["position_ids"], "use_cache": False}
    if "attention_mask" in batch:
        kw["attention_mask"] = batch["attention_mask"]

    def step() -> None:
        loss = model(input_ids=ids, labels=labels, **kw).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t0), sum(p.numel() for p in model.parameters())


def bench_data(
    corpus: str | None = None,
    cache: str | None = None,
    synth_facts: int = 60,
    batches: int = 20,
    batch_size: int = 4,
    max_length: int = 512,
    num_workers: int = 1,
    model_steps: int = 5,
    model_layers: int = 4,
    model_hidden: int = 128,
) -> dict:
    """Print synthesis throughput, loader throughput (grids/s, tokens/s) and a tiny Qwen3's training-step rate.

    Args:
        corpus: corpus directory to load from (default: synthesize one with ``synth_facts`` facts).
        cache: its speech-id cache (default: random ids of the right lengths).
        synth_facts: facts of the synthesized corpus (tiny preset otherwise); its build time is the synthesis figure.
        batches: loader batches timed per mix.
        batch_size: packed rows per batch.
        max_length: row length (tokens).
        num_workers: DataLoader workers.
        model_steps: training steps timed.
        model_layers / model_hidden: size of the tiny Qwen3.
    """
    import torch

    from lightning_modules.data import SpeechLMDataModule
    from moss_components.data.espeak import EspeakSynth
    from moss_components.data.synth_corpus import build_corpus
    from moss_components.data.voices import ASSISTANT_VOICE

    rows: list[tuple[str, str, str]] = []
    tmp = tempfile.TemporaryDirectory(prefix="bench-data-")
    # eSpeak alone, in this process: synthesis without resampling or writing.
    synth = EspeakSynth.shared()
    texts = [f"what is the capital of country number {i}" for i in range(100)]
    t0 = time.perf_counter()
    for t in texts:
        synth.synthesize(t, ASSISTANT_VOICE)
    rows.append(("eSpeak synthesis, 1 process", f"{len(texts) / (time.perf_counter() - t0):,.0f} utt/s", ""))
    if corpus is None:
        corpus = str(Path(tmp.name) / "corpus")
        summary = build_corpus(corpus, preset="tiny", seed=0, max_facts=synth_facts, progress=False)
        n = summary["counts"]["wav_files"]
        rows.append(
            (
                f"synth-data (synth + soxr + WAV), {summary['workers']} processes",
                f"{n / summary['build_seconds']:,.0f} utt/s",
                f"{n} WAVs, {summary['audio_hours_total'] * 3600 / summary['build_seconds']:,.0f}x real time",
            )
        )
    if cache is None:
        cache = str(Path(tmp.name) / "cache")
        _fake_cache(Path(corpus), Path(cache))
    mixes = {
        "PT-1 (speech, interleaved, asr, tts)": dict(tasks={"speech": 1, "interleaved": 1, "asr": 1, "tts": 1}),
        "SFT (6 modes)": dict(
            tasks={"sft": 1}, sft_modes=dict.fromkeys(("t2t", "s2t", "t2s", "s2s", "t2s_guided", "s2s_guided"), 1)
        ),
    }
    results = {}
    for name, kw in mixes.items():
        dm = SpeechLMDataModule(
            corpus,
            cache,
            max_length=max_length,
            batch_size=batch_size,
            packing=True,
            samples_per_epoch=batch_size * (batches + 2),
            num_workers=num_workers,
            **kw,
        )
        dm.setup("fit")
        dt, gps, tps = _loader_rate(dm, batches)
        results[name] = (gps, tps, dm)
        rows.append((f"loader {name}, packed {batch_size}x{max_length}", f"{gps:,.0f} grids/s", f"{tps:,.0f} tokens/s"))
    name = next(iter(mixes))
    dm = results[name][2]
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    sps, params = _model_rate(batch, dm.special_ids, len(dm.tokenizer), model_steps, model_layers, model_hidden)
    model_tps = sps * batch_size * max_length
    rows.append(
        (
            f"tiny Qwen3 train step ({params / 1e6:.2f}M params, {model_layers} layers, sdpa)",
            f"{sps:,.2f} steps/s",
            f"{model_tps:,.0f} tokens/s",
        )
    )
    ratio = min(r[1] for r in results.values()) / model_tps
    rows.append(("loader / model tokens per second", f"{ratio:,.1f}x", "> 1: the loader is not the bottleneck"))
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'rate':>16}  note")
    for a, b, c in rows:
        print(f"{a:<{width}}  {b:>16}  {c}")
    tmp.cleanup()
    return {"rows": rows, "loader_to_model_ratio": ratio}
