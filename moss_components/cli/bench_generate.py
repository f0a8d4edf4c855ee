"""``moss-speech bench generate``: KV-cached speech generation of the split model against transformers' ``generate``.

The split model (k shared layers, N - k text-branch and N - k speech-branch layers, both heads) decodes a spoken
answer with :func:`moss_components.generation.generate` (KV cache, greedy). The baseline is a plain transformers
``*ForCausalLM`` whose ``model.layers`` are *the same layer instances* (shared, then text branch, then speech
branch: ``k + 2 (N - k)`` layers, same width; their cache slots are already numbered that way), with a head over
text + speech ids so both spend the same FLOPs per step; it runs ``model.generate`` (KV cache, greedy). Both decode
the same number of new tokens from a prompt of the same length (no EOS: the split model's special ids have none,
and ``generate`` gets ``min_new_tokens``), alternately, in one process; the table gives the median tokens/s and
the ratio split / plain (goal >= 0.9: the modality state machine and the two heads cost little next to the
layers). On CPU the ratio uses process CPU time (robust to other processes on the cores; wall time is printed
too); on GPU, synchronized wall time.

Given a pipeline run directory, it also prints the run's stage times (``RUN/stages/<stage>.json``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from moss_components.cli.bench_utils import sync, table
from moss_components.generation import SamplingConfig, generate
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import tiny_config
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks.base import resolve_attention

__all__ = ["bench_generate", "plain_model_sharing_layers", "stage_times"]


def plain_model_sharing_layers(split: LayerSplitSpeechLM, vocab_size: int, attn_implementation: str) -> nn.Module:
    """A plain ``*ForCausalLM`` whose decoder layers are ``split``'s own layer objects, in cache-slot order.

    Its embedding, final norm and head are new (``vocab_size`` rows); everything between is shared with ``split``.
    """
    from transformers import AutoModelForCausalLM

    layers = [*split.shared_layers, *split.text_layers, *(split.speech_layers or [])]
    for i, layer in enumerate(layers):
        if layer.self_attn.layer_idx != i:
            raise ValueError(f"layer {i} of the split model uses cache slot {layer.self_attn.layer_idx}, expected {i}")
    cfg = split.config.to_dict()
    cfg.update(num_hidden_layers=len(layers), vocab_size=vocab_size)
    cfg.pop("layer_types", None)  # rebuilt for the new depth
    config = type(split.config)(**{k: v for k, v in cfg.items() if k not in ("model_type", "transformers_version")})
    weight = split.embed_tokens.weight
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    plain.model.layers = nn.ModuleList(layers)
    plain.model.embed_tokens = nn.Embedding(vocab_size, weight.shape[1], device=weight.device, dtype=weight.dtype)
    plain.model.norm = type(split.text_norm)(weight.shape[1], eps=config.rms_norm_eps).to(weight)
    plain.lm_head = nn.Linear(weight.shape[1], vocab_size, bias=False, device=weight.device, dtype=weight.dtype)
    plain.model.rotary_emb = split.rotary_emb
    with torch.no_grad():
        plain.model.embed_tokens.weight.normal_(0, 0.02)
        plain.lm_head.weight.normal_(0, 0.02)
    return plain.eval()


def stage_times(run: str | Path) -> list[tuple[str, float]]:
    """``(stage, wall seconds)`` of every finished stage of a pipeline run, in pipeline order."""
    from moss_components.cli.pipeline import STAGES

    folder = Path(run) / "stages"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: {run!r} is not a pipeline run directory")
    times = {}
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        times[record.get("stage", path.stem)] = float(record["wall_seconds"])
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(times.items(), key=lambda kv: order.get(kv[0], len(order)))


def _print_stage_times(run: str) -> dict[str, float]:
    rows = stage_times(run)
    total = sum(s for _, s in rows)
    print(f"\npipeline stage times of {run}:")
    body = [[name, f"{s:.1f}", f"{s / 60:.2f}", f"{100 * s / total:.1f}" if total else "-"] for name, s in rows]
    body.append(["total", f"{total:.1f}", f"{total / 60:.2f}", "100.0"])
    print(table(["stage", "wall (s)", "wall (min)", "share (%)"], body))
    return dict(rows)


def bench_generate(
    num_layers: int = 6,
    num_shared_layers: int = 4,
    hidden_size: int = 256,
    text_vocab_size: int = 2048,
    speech_codes: int = 512,
    prompt_len: int = 64,
    new_tokens: int = 64,
    batch_size: int = 1,
    repeats: int = 3,
    warmup: int = 1,
    family: str = "qwen3",
    attn_implementation: str = "sdpa",
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    run: str | None = None,
) -> dict:
    """Time KV-cached greedy speech generation of the split model against HF ``generate`` on a plain model built
    from the same layer instances.

    Args:
        num_layers: N, layers of the base LLM that is split.
        num_shared_layers: k, layers below the split.
        hidden_size: width (4 query / 2 KV heads of size ``hidden_size / 4``; MLP ``2 * hidden_size``).
        text_vocab_size: text vocabulary (start-of-speech and modality pad are its last two ids).
        speech_codes: speech codes (the speech vocabulary adds end-of-speech and pad).
        prompt_len: prompt positions (text, then start-of-speech: the answer is text-free speech).
        new_tokens: tokens generated per run, by both models.
        batch_size: prompts decoded together.
        repeats: timed runs per model (median reported); warmup: untimed runs first.
        family: qwen3 | llama | qwen2 | mistral.
        attn_implementation: eager | sdpa | moss_triton (our Triton kernels) | auto | another registered name.
        dtype: float32 | bfloat16.
        device: cpu | cuda | auto.
        seed: seed of the weights and the prompt.
        threads: torch CPU threads (None: leave torch's setting). On a loaded machine 1 gives steadier figures: a
            parallel region waits for its slowest thread, and a descheduled one stalls every layer.
        run: a pipeline run directory whose stage times are printed too.

    Returns:
        The numbers printed: ``ratio``, ``split_tokens_per_second``, ``plain_tokens_per_second``, seconds, and
        ``stage_seconds`` when ``run`` is given.
    """
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch_dtype = getattr(torch, dtype)
    if not 0 <= num_shared_layers <= num_layers:
        raise ValueError(f"num_shared_layers={num_shared_layers} must be in [0, {num_layers}]")
    if prompt_len < 2 or new_tokens < 1:
        raise ValueError(f"prompt_len must be >= 2 and new_tokens >= 1, got {prompt_len} and {new_tokens}")
    from transformers import AutoModelForCausalLM

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    attn_implementation = resolve_attention(attn_implementation)  # registers moss_triton when asked for
    # no text EOS: both models decode exactly new_tokens steps
    ids = SpeechSpecialIds.for_vocab(text_vocab_size - 2, speech_codes)
    positions = max(512, 2 * (prompt_len + new_tokens))
    cfg = tiny_config(family, num_layers, hidden_size, attn_implementation=attn_implementation,
                      vocab_size=text_vocab_size, max_position_embeddings=positions)  # fmt: skip
    base = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn_implementation).to(dev, torch_dtype)
    split = LayerSplitSpeechLM.from_text_model(base, num_shared_layers, ids.speech_vocab_size, ids).eval()
    instances = num_shared_layers + 2 * (num_layers - num_shared_layers)
    plain_vocab = text_vocab_size + ids.speech_vocab_size
    plain = plain_model_sharing_layers(split, plain_vocab, attn_implementation).to(dev, torch_dtype)

    text = torch.randint(0, text_vocab_size - 2, (batch_size, prompt_len), device=dev)
    text[:, -1] = ids.text_start_of_speech
    grid = torch.stack([text, torch.full_like(text, ids.speech_pad)], dim=-1)
    plain_prompt = torch.randint(0, plain_vocab, (batch_size, prompt_len), device=dev)
    sampling = SamplingConfig(greedy=True, repetition_penalty=1.0, max_new_tokens=new_tokens, use_cache=True)
    plain.generation_config.eos_token_id = None
    plain.generation_config.pad_token_id = 0
    hf_kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                     attention_mask=torch.ones_like(plain_prompt))  # fmt: skip

    speech_share = []

    def run_split() -> tuple[float, float]:
        sync(dev)
        start, cpu = time.perf_counter(), time.process_time()
        result = generate(split, grid, None, sampling)
        sync(dev)
        took = time.perf_counter() - start, time.process_time() - cpu
        made = int(result.new_tokens.min())
        if made != new_tokens:
            raise RuntimeError(f"the split model stopped after {made} of {new_tokens} tokens")
        speech_share.append(sum(len(s) for s in result.speech_ids) / (batch_size * new_tokens))
        return took

    def run_plain() -> tuple[float, float]:
        sync(dev)
        start, cpu = time.perf_counter(), time.process_time()
        out = plain.generate(plain_prompt, **hf_kwargs)
        sync(dev)
        took = time.perf_counter() - start, time.process_time() - cpu
        if out.shape[1] - prompt_len != new_tokens:
            raise RuntimeError(f"transformers generated {out.shape[1] - prompt_len} of {new_tokens} tokens")
        return took

    with torch.no_grad():
        for _ in range(warmup):
            run_split()
            run_plain()
        split_times, plain_times = [], []
        for _ in range(repeats):  # alternate, so drifting machine load hits both alike
            split_times.append(run_split())
            plain_times.append(run_plain())
    split_s, plain_s = (statistics.median(t[0] for t in times) for times in (split_times, plain_times))
    split_cpu, plain_cpu = (statistics.median(t[1] for t in times) for times in (split_times, plain_times))
    tokens = batch_size * new_tokens
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731

    print(
        f"bench generate on {dev.type} ({family}, {attn_implementation}, {dtype}): N={num_layers}, "
        f"k={num_shared_layers}, width {hidden_size}, batch {batch_size}, prompt {prompt_len}, {new_tokens} new "
        f"tokens, greedy, KV cache, {torch.get_num_threads()} CPU threads; median of {repeats} runs after {warmup} "
        "warm-up"
    )
    rows = [
        ["split model, generation.generate", instances, f"{text_vocab_size} + {ids.speech_vocab_size}",
         f"{params(split) / 1e6:.2f}", f"{split_s * 1e3:.1f}", f"{tokens / split_s:.1f}", f"{tokens / split_cpu:.1f}"],
        ["plain LM (same layers), HF generate", instances, plain_vocab, f"{params(plain) / 1e6:.2f}",
         f"{plain_s * 1e3:.1f}", f"{tokens / plain_s:.1f}", f"{tokens / plain_cpu:.1f}"],
    ]  # fmt: skip
    print(table(["model", "layer instances", "head rows", "params (M)", "run wall (ms)", "tok/s (wall)",
                  "tok/s (CPU time)"], rows))  # fmt: skip
    # tokens/s ratio = time ratio inverted; CPU time on CPU (robust to other load), wall time on GPU
    ratio = plain_cpu / split_cpu if dev.type == "cpu" else plain_s / split_s
    measure = "CPU" if dev.type == "cpu" else "wall"
    print(
        f"ratio split / plain tokens/s ({measure} time): {ratio:.3f} (goal >= 0.9); wall-time ratio "
        f"{plain_s / split_s:.3f}; {100 * statistics.mean(speech_share):.0f}% of the split model's tokens were speech"
    )
    result = dict(
        ratio=ratio,
        wall_ratio=plain_s / split_s,
        split_tokens_per_second=tokens / split_s,
        plain_tokens_per_second=tokens / plain_s,
        split_seconds=split_s,
        plain_seconds=plain_s,
        split_cpu_seconds=split_cpu,
        plain_cpu_seconds=plain_cpu,
    )
    if run is not None:
        result["stage_seconds"] = _print_stage_times(run)
    return result
