"""``moss-speech bench split-overhead``: the cost of the layer split against a plain LM with as many layers.

The split model (k shared layers, N - k text-branch and N - k speech-branch layers, both heads) and a plain
transformers model with ``k + 2 (N - k)`` layers of the same width run the same training step (forward + backward +
AdamW step) on the same batch shape, alternately, in one process; the table gives the median step time and the
ratio (the goal is <= 1.05: the split adds no overhead beyond its layers). The plain model's vocabulary is text +
speech ids, so both spend the same FLOPs in their heads. On CPU the ratio uses process CPU time (robust to other
processes sharing the cores; wall time is printed too); on GPU it uses synchronized wall time.

Then the split model runs the same step under FP-Full (PT-1) and NF: peak memory of the step, and the bytes of
gradients and AdamW state, to show that frozen parameters carry neither. Peak memory is, on GPU,
``torch.cuda.max_memory_allocated`` above the start of the step; on CPU, the rise of the process' peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs``) above its resident size at the start (coarser: the allocator
reuses freed memory). The bytes autograd saves for backward are counted exactly on any device.
"""

from __future__ import annotations

import statistics
import time

import torch

from moss_components.cli.bench_utils import PeakMemory, sync, table
from moss_components.freezing import FreezeFull, FreezingPolicy, NoFreeze
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import tiny_config
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks.base import resolve_attention

__all__ = ["bench_split_overhead"]


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def _batch(ids: SpeechSpecialIds, batch: int, length: int, text_vocab: int, device):
    """A grid whose second half is a speech segment, and labels on both channels."""
    text = torch.randint(0, text_vocab - 2, (batch, length), device=device)
    speech = torch.full_like(text, ids.speech_pad)
    half = length // 2
    text[:, half - 1] = ids.text_start_of_speech
    text[:, half:] = ids.text_modality_pad
    speech[:, half:] = torch.randint(0, ids.num_speech_codes, (batch, length - half), device=device)
    grid = torch.stack([text, speech], dim=-1)
    labels = grid.clone()
    labels[..., 0] = torch.where(text == ids.text_modality_pad, -100, text)
    labels[..., 1] = torch.where(speech == ids.speech_pad, -100, speech)
    return grid, labels


def _step(model, optimizer, inputs, labels, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward + backward + AdamW step."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    loss = model(inputs, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


class _SavedActivations:
    """Bytes of the distinct tensors autograd saves for backward while the block runs (device-independent)."""

    def __enter__(self):
        self.seen: dict[tuple, int] = {}

        def pack(t: torch.Tensor):
            key = (t.device, t.untyped_storage().data_ptr())
            self.seen[key] = max(self.seen.get(key, 0), t.untyped_storage().nbytes())
            return t

        self.hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.__exit__(*exc)
        self.bytes = sum(self.seen.values())


def _state_bytes(model, optimizer) -> tuple[int, int, int]:
    """(trainable parameter bytes, AdamW state bytes, parameters with AdamW state)."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    return trainable, state, len(optimizer.state)


def bench_split_overhead(
    num_layers: int = 6,
    num_shared_layers: int = 4,
    hidden_size: int = 128,
    text_vocab_size: int = 2048,
    speech_codes: int = 512,
    batch_size: int = 2,
    seq_len: int = 128,
    steps: int = 5,
    warmup: int = 1,
    family: str = "qwen3",
    attn_implementation: str = "sdpa",
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
) -> dict:
    """Time a training step of the split model against a plain LM with ``k + 2 (N - k)`` layers.

    Args:
        num_layers: N, layers of the base LLM that is split.
        num_shared_layers: k, layers below the split.
        hidden_size: model width (4 query / 2 KV heads of size ``hidden_size / 4``; MLP ``2 * hidden_size``).
        text_vocab_size: text vocabulary (start-of-speech and modality pad are its last two ids).
        speech_codes: speech codes; the speech vocabulary adds end-of-speech and pad.
        batch_size, seq_len: the batch (a text half, then a speech half).
        steps: timed steps per model (median reported); warmup: untimed steps first.
        family: qwen3 | llama | qwen2 | mistral.
        attn_implementation: eager | sdpa | moss_triton (our Triton kernels) | auto | another registered name.
        dtype: float32 | bfloat16.
        device: cpu | cuda | auto.
        seed: seed of the weights and the batch.

    Returns:
        The numbers printed, as a dict (``ratio``, seconds and memory figures).
    """
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    torch_dtype = getattr(torch, dtype)
    if not 0 <= num_shared_layers <= num_layers:
        raise ValueError(f"num_shared_layers={num_shared_layers} must be in [0, {num_layers}]")
    torch.manual_seed(seed)
    attn_implementation = resolve_attention(attn_implementation)  # registers moss_triton when asked for
    ids = SpeechSpecialIds.for_vocab(text_vocab_size - 2, speech_codes)
    instances = num_shared_layers + 2 * (num_layers - num_shared_layers)
    config_kwargs = dict(vocab_size=text_vocab_size, max_position_embeddings=max(seq_len, 512))

    def build(layers: int, vocab: int = text_vocab_size):
        from transformers import AutoModelForCausalLM

        kwargs = {**config_kwargs, "vocab_size": vocab}
        cfg = tiny_config(family, layers, hidden_size, attn_implementation=attn_implementation, **kwargs)
        return AutoModelForCausalLM.from_config(cfg, attn_implementation=attn_implementation).to(dev, torch_dtype)

    split = LayerSplitSpeechLM.from_text_model(build(num_layers), num_shared_layers, speech_codes + 2, ids)
    # the plain model's head covers text + speech ids, so both models spend the same FLOPs in their heads
    plain = build(instances, text_vocab_size + speech_codes + 2)
    split.train()
    plain.train()
    grid, labels = _batch(ids, batch_size, seq_len, text_vocab_size, dev)
    text_ids = grid[..., 0].clamp(max=text_vocab_size - 1)

    def run(model, policy: FreezingPolicy | None, inputs, targets):
        if policy is not None:
            policy.apply(model, 0)
        optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=1e-4, weight_decay=0.1)
        return optimizer, lambda: _step(model, optimizer, inputs, targets, dev)

    _, split_step = run(split, NoFreeze(), grid, labels)
    _, plain_step = run(plain, None, text_ids, text_ids)
    for _ in range(warmup):
        split_step()
        plain_step()
    split_times, plain_times = [], []
    for _ in range(steps):  # alternate, so drifting machine load hits both alike
        split_times.append(split_step())
        plain_times.append(plain_step())
    split_s, plain_s = (statistics.median(t[0] for t in times) for times in (split_times, plain_times))
    split_cpu, plain_cpu = (statistics.median(t[1] for t in times) for times in (split_times, plain_times))
    params = lambda m: sum(p.numel() for p in m.parameters())

    print(
        f"split-overhead on {dev.type} ({family}, {attn_implementation}, {dtype}): "
        f"N={num_layers}, k={num_shared_layers}, width {hidden_size}, batch {batch_size} x {seq_len}, "
        f"median of {steps} steps after {warmup} warm-up"
    )
    print(
        table(
            ["model", "layer instances", "head rows", "params (M)", "step wall (ms)", "step CPU (ms)"],
            [
                [
                    "dual-branch split",
                    instances,
                    f"{text_vocab_size} + {speech_codes + 2}",
                    f"{params(split) / 1e6:.2f}",
                    f"{split_s * 1e3:.1f}",
                    f"{split_cpu * 1e3:.1f}",
                ],
                [
                    "plain transformers LM",
                    instances,
                    f"{text_vocab_size + speech_codes + 2}",
                    f"{params(plain) / 1e6:.2f}",
                    f"{plain_s * 1e3:.1f}",
                    f"{plain_cpu * 1e3:.1f}",
                ],
            ],
        )
    )
    # on CPU, process time is robust to other processes competing for the cores; on GPU, wall time is the measure
    ratio = split_s / plain_s if dev.type == "cuda" else split_cpu / plain_cpu
    measure = "wall" if dev.type == "cuda" else "CPU"
    print(f"ratio split / plain ({measure} time): {ratio:.3f} (goal <= 1.05); wall-time ratio {split_s / plain_s:.3f}")

    del plain
    rows, memory = [], {}
    for name, policy in [("FP-Full (PT-1)", FreezeFull()), ("NF", NoFreeze())]:
        model = LayerSplitSpeechLM.from_text_model(build(num_layers), num_shared_layers, speech_codes + 2, ids).train()
        optimizer, step = run(model, policy, grid, labels)
        step()  # creates the AdamW state
        with PeakMemory(dev) as peak, _SavedActivations() as saved:
            step()
        trainable, state, with_state = _state_bytes(model, optimizer)
        frozen_with_state = sum(1 for p in model.parameters() if not p.requires_grad and p in optimizer.state)
        frozen_with_grad = sum(1 for p in model.parameters() if not p.requires_grad and p.grad is not None)
        memory[name] = dict(
            peak=peak.bytes, saved=saved.bytes, trainable=trainable, state=state, frozen_with_state=frozen_with_state
        )
        rows.append(
            [
                name,
                _mib(peak.bytes),
                _mib(saved.bytes),
                _mib(trainable),
                _mib(state),
                f"{with_state}/{len(list(model.parameters()))}",
                frozen_with_state,
                frozen_with_grad,
            ]
        )
        del model, optimizer
    print(
        table(
            [
                "policy",
                "step peak (MiB)",
                "saved for backward (MiB)",
                "trainable (MiB)",
                "AdamW state (MiB)",
                "params with state",
                "frozen with state",
                "frozen with grad",
            ],
            rows,
        )
    )
    return dict(
        ratio=ratio,
        split_seconds=split_s,
        plain_seconds=plain_s,
        split_cpu_seconds=split_cpu,
        plain_cpu_seconds=plain_cpu,
        memory=memory,
    )
