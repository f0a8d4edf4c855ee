"""Checkpoints: MOSS-Speech's released layout (interop with ``fnlp/MOSS-Speech``) and plain stage-handoff weights.

Released layout (``save_moss_speech`` / ``load_moss_speech``): an HF ``config.json`` (the base LLM's fields plus
``num_shared_layers``, ``num_modality_layers``, ``num_hidden_layers`` and a ``moss_speech`` block with our special ids,
speech vocabulary size, router and SFT system prompts) and safetensors shards with an index::

    model.embed_tokens.*            <- embed_tokens          model.audio_embed.*   <- speech_embed
    model.shared_block.layers.N.*   <- shared_layers.N       model.text_norm.*     <- text_norm
    model.text_block.layers.N.*     <- text_layers.N         model.audio_norm.*    <- speech_norm
    model.audio_block.layers.N.*    <- speech_layers.N       text_lm_head.*        <- text_head
                                                              audio_lm_head.*       <- speech_head

Loading builds the model on the meta device and fills it shard by shard (``safe_open``), so an 8B checkpoint in
bf16 never holds more than the model plus one tensor of extra memory.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model
from transformers import AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from moss_components.model.layer_split import LayerSplitSpeechLM
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks.base import resolve_dtype

__all__ = [
    "load_moss_speech",
    "load_weights",
    "ours_to_released",
    "released_to_ours",
    "save_moss_speech",
    "save_weights",
]

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# our prefix -> released prefix; order matters only for readability (prefixes are disjoint)
_PREFIXES = [
    ("embed_tokens.", "model.embed_tokens."),
    ("speech_embed.", "model.audio_embed."),
    ("shared_layers.", "model.shared_block.layers."),
    ("text_layers.", "model.text_block.layers."),
    ("speech_layers.", "model.audio_block.layers."),
    ("text_norm.", "model.text_norm."),
    ("speech_norm.", "model.audio_norm."),
    ("text_head.", "text_lm_head."),
    ("speech_head.", "audio_lm_head."),
]
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*$", re.IGNORECASE)


def ours_to_released(name: str) -> str:
    """``shared_layers.3.mlp.up_proj.weight`` -> ``model.shared_block.layers.3.mlp.up_proj.weight``."""
    for ours, released in _PREFIXES:
        if name.startswith(ours):
            return released + name[len(ours) :]
    raise KeyError(f"parameter '{name}' has no place in the MOSS-Speech layout")


def released_to_ours(name: str) -> str:
    """The inverse of :func:`ours_to_released`."""
    for ours, released in _PREFIXES:
        if name.startswith(released):
            return ours + name[len(released) :]
    raise KeyError(f"checkpoint key '{name}' is not part of the MOSS-Speech layout")


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"max_shard_size '{size}' is not a size; expected bytes or e.g. '5GB', '200MB'")
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def _router_path(model: LayerSplitSpeechLM) -> str:
    cls = type(model.router)
    return f"{cls.__module__}.{cls.__name__}"


def save_moss_speech(
    model: LayerSplitSpeechLM,
    directory: str | Path,
    max_shard_size: int | str = "5GB",
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` in the released MOSS-Speech layout (config.json + safetensors shards + index).

    ``state_dict`` (our names) replaces ``model.state_dict()``, e.g. the full weights an FSDP run gathered onto
    rank 0 while ``model`` itself holds shards. Returns the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    limit = _parse_size(max_shard_size)
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    for name, param in (model.state_dict() if state_dict is None else state_dict).items():
        if name.startswith(("rotary_emb.", "router.")):
            continue
        tensor = param.detach().contiguous()
        # tied weights (a small LLM's lm_head = embed_tokens) are written twice, as the release has no tying
        if tensor.data_ptr() in seen:
            tensor = tensor.clone()
        seen[tensor.data_ptr()] = name
        tensors[ours_to_released(name)] = tensor

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = SINGLE_NAME if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, directory / name, metadata={"format": "pt"})
        for key, tensor in shard.items():
            weight_map[key] = name
            total += tensor.numel() * tensor.element_size()
    (directory / INDEX_NAME).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True)
    )

    config = model.config.to_dict()
    dtype = model.embed_tokens.weight.dtype
    config.update(
        num_shared_layers=model.num_shared_layers,
        num_modality_layers=model.num_hidden_layers - model.num_shared_layers,
        num_hidden_layers=model.num_hidden_layers,
        torch_dtype=str(dtype).removeprefix("torch."),
        moss_speech={
            "special_ids": model.special_ids.to_dict(),
            "speech_vocab_size": model.speech_vocab_size,
            "text_model_type": model.config.model_type,
            "router": _router_path(model),
            "system_prompts": model.system_prompts,
        },
    )
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    return directory


def _shard_files(directory: Path) -> list[Path]:
    index = directory / INDEX_NAME
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / n for n in names]
    if (directory / SINGLE_NAME).is_file():
        return [directory / SINGLE_NAME]
    raise FileNotFoundError(f"{directory} has neither {INDEX_NAME} nor {SINGLE_NAME}")


def _speech_vocab_from_shards(files: list[Path]) -> int:
    for file in files:
        with safe_open(file, framework="pt") as f:
            if "model.audio_embed.weight" in f.keys():
                return f.get_slice("model.audio_embed.weight").get_shape()[0]
    raise KeyError("no 'model.audio_embed.weight' in the checkpoint shards")


def _build_router(path: str | None):
    from moss_components.routers import DualBranchRouter

    if not path:
        return DualBranchRouter()
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)()


def load_moss_speech(
    directory: str | Path,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn_implementation: str = "sdpa",
) -> LayerSplitSpeechLM:
    """Load a checkpoint in the released layout, lazily, shard by shard.

    Args:
        directory: a folder with ``config.json`` and the safetensors shards (ours or the released 8B).
        dtype: parameter dtype (``"bfloat16"`` for the 8B); None keeps the checkpoint's ``torch_dtype``.
        device: where the parameters end up.
        attn_implementation: ``eager``, ``sdpa`` or a registered name.

    Returns:
        The model in eval mode. Special ids and system prompts come from the config's ``moss_speech`` block, or are
        the release's (prompts: None, the library's defaults).
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} is not a MOSS-Speech checkpoint: it has no config.json")
    fields = json.loads(config_path.read_text())
    extra = fields.pop("moss_speech", {}) or {}
    for key in ("num_shared_layers", "num_hidden_layers"):
        if key not in fields:
            raise KeyError(f"{config_path} lacks '{key}'")
    num_shared = fields.pop("num_shared_layers")
    num_modality = fields.pop("num_modality_layers", fields["num_hidden_layers"] - num_shared)
    if num_shared + num_modality != fields["num_hidden_layers"]:
        raise ValueError(
            f"num_shared_layers={num_shared} + num_modality_layers={num_modality} != "
            f"num_hidden_layers={fields['num_hidden_layers']}"
        )
    # the release's own model_type is remote code; its trunk is Qwen3
    model_type = extra.get("text_model_type") or fields.get("model_type")
    if model_type not in CONFIG_MAPPING:
        model_type = "qwen3"
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        fields.pop(key, None)
    dtype = resolve_dtype(dtype) or resolve_dtype(fields.get("torch_dtype") or fields.get("dtype")) or torch.float32
    config = CONFIG_MAPPING[model_type](**fields)
    files = _shard_files(directory)
    speech_vocab = extra.get("speech_vocab_size") or _speech_vocab_from_shards(files)
    ids = extra.get("special_ids")
    special_ids = SpeechSpecialIds(**ids) if ids else SpeechSpecialIds.moss_speech_release()

    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
        model = LayerSplitSpeechLM.from_text_model(
            base, num_shared, speech_vocab, special_ids, router=_build_router(extra.get("router"))
        )
    expected = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    loaded: set[str] = set()
    for file in files:
        with safe_open(file, framework="pt", device=str(device)) as f:
            shard = {}
            for key in f.keys():
                name = released_to_ours(key)
                if name not in expected:
                    raise KeyError(f"checkpoint key '{key}' ({file.name}) has no parameter in the model")
                shard[name] = f.get_tensor(key).to(dtype)
        model.load_state_dict(shard, strict=False, assign=True)
        loaded.update(shard)
    missing = sorted(expected - loaded)
    if missing:
        raise KeyError(f"checkpoint {directory} lacks {len(missing)} parameters, e.g. {missing[:5]}")
    # non-persistent buffers (rotary inv_freq) were never in the checkpoint: rebuild them for real
    model.rotary_emb = type(model.rotary_emb)(config=config).to(device)
    model.system_prompts = extra.get("system_prompts")
    return model.to(device).eval()


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """All parameters and persistent buffers of ``model`` to one ``.safetensors`` file (tied tensors stored once)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights path must end in .safetensors, got '{path.name}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path))
    return path


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load a file written by :func:`save_weights` into ``model`` (in place; tied tensors restored)."""
    missing, unexpected = load_model(model, str(path), strict=strict)
    if not strict and (missing or unexpected):
        import logging

        logging.getLogger(__name__).info("load_weights %s: missing %s, unexpected %s", path, missing, unexpected)
    return model
