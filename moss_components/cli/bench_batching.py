"""``moss-speech bench batching``: tokenizer training steps per CPU-minute, random vs length-bucketed batches.

Both arms train the same tokenizer (the ``model.init_args.tokenizer`` of a tokenizer config) with AdamW on the same
corpus, through ``TokenizerModule``'s loss; a step's time includes loading its batch, as in training. The padded
fill is the share of each ``batch x longest clip`` area that is audio: the rest is computed and thrown away.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def _arm(corpus: str, tokenizer_config: dict, batch_size: int, bucket_batches: int | None, steps: int) -> dict:
    """Train ``steps`` steps (after one untimed) and return fill, CPU and wall seconds per step."""
    import torch

    from lightning_modules.data import AudioTextDataModule
    from lightning_modules.tokenizer_module import TokenizerModule
    from moss_components.tokenizers.pretrained import build_component

    torch.manual_seed(0)
    dm = AudioTextDataModule(corpus, batch_size=batch_size, bucket_batches=bucket_batches)
    dm.setup("fit")
    module = TokenizerModule(build_component(tokenizer_config)).train()
    opt = torch.optim.AdamW(module.parameters(), lr=5e-4)
    audio = area = 0
    cpu = wall = 0.0
    batches = iter(dm.train_dataloader())
    for i in range(steps + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(dm.train_dataloader())
            batch = next(batches)
        out, ctc, intermediate = module._step(batch)
        (ctc + intermediate + out.aux_loss).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i == 0:  # allocator and caches warm up
            continue
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        audio += int(batch["wav_lengths"].sum())
        area += batch["wav"].numel()
    return {"fill": audio / area, "cpu_s_per_step": cpu / steps, "wall_s_per_step": wall / steps}


def bench_batching(
    corpus: str | None = None,
    config: str = "configs/tokenizer/tiny.yaml",
    steps: int = 40,
    batch_size: int = 16,
    bucket_batches: int = 50,
    threads: int = 2,
    synth_facts: int = 60,
) -> dict:
    """Print padded fill and steps per CPU-minute of tokenizer training, random vs bucketed batches.

    Args:
        corpus: corpus directory (default: synthesize a ``tiny`` one with ``synth_facts`` facts).
        config: tokenizer training config whose ``model.init_args.tokenizer`` is trained.
        steps: timed steps per arm.
        batch_size: clips per batch.
        bucket_batches: batches per length-sorted pool in the bucketed arm.
        threads: ``torch.set_num_threads``; steps per CPU-minute are per ``threads`` cores, as ``CPUTimeBudget``
            counts them.
        synth_facts: facts of the synthesized corpus.
    """
    import torch
    import yaml

    from moss_components.cli.bench_utils import table
    from moss_components.data.synth_corpus import build_corpus

    torch.set_num_threads(threads)
    tokenizer_config = yaml.safe_load(Path(config).read_text())["model"]["init_args"]["tokenizer"]
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        if corpus is None:
            corpus = str(Path(tmp) / "corpus")
            build_corpus(corpus, preset="tiny", seed=0, max_facts=synth_facts, progress=False)
        arms = {
            "random batches": _arm(corpus, tokenizer_config, batch_size, None, steps),
            f"length buckets ({bucket_batches} batches per pool)": _arm(
                corpus, tokenizer_config, batch_size, bucket_batches, steps
            ),
        }
    base = arms["random batches"]["cpu_s_per_step"]
    rows = [
        [
            name,
            f"{a['fill']:.1%}",
            f"{a['cpu_s_per_step'] * 1000:.0f}",
            f"{60 * threads / a['cpu_s_per_step']:.0f}",
            f"{a['wall_s_per_step'] * 1000:.0f}",
            f"{base / a['cpu_s_per_step']:.2f}x",
        ]
        for name, a in arms.items()
    ]
    header = ["batches", "audio in padded area", "CPU ms/step", "steps/CPU-min", "wall ms/step", "vs random"]
    print(f"tokenizer of {config}, batch {batch_size}, {steps} steps per arm, {threads} threads")
    print(table(header, rows))
    return {"arms": arms, "speedup": base / next(reversed(arms.values()))["cpu_s_per_step"]}
