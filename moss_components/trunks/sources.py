"""Trunk sources from a config (random init) and from a local ``from_pretrained`` directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from moss_components.trunks.base import TextTrunkSource, resolve_attention, resolve_dtype

__all__ = ["ConfigTrunk", "PretrainedTrunk"]


class ConfigTrunk(TextTrunkSource):
    """A randomly initialized LLM from a Hugging Face config dict.

    Args:
        config: HF config fields including ``model_type`` (e.g. ``{"model_type": "qwen3", "hidden_size": 64,
            "num_hidden_layers": 4, ...}``).
        seed: seed of the random init (the same seed gives the same weights).
        attn_implementation: ``eager``, ``sdpa``, ``moss_triton``, ``auto`` or a registered name.
        dtype: parameter dtype (``float32`` default).
        tokenizer: ``"char"`` for the built-in character tokenizer (its size fills ``vocab_size`` when the config
            has none), a local tokenizer directory, or None.
    """

    def __init__(
        self,
        config: dict[str, Any],
        seed: int = 0,
        attn_implementation: str = "sdpa",
        dtype: str | None = None,
        tokenizer: str | None = None,
    ) -> None:
        config = dict(config)
        model_type = config.pop("model_type", None)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"config needs a 'model_type' known to transformers (qwen3, llama, ...), got {model_type!r}"
            )
        self.model_type = model_type
        self.config = config
        self.seed = seed
        self.attn_implementation = attn_implementation
        self.dtype = resolve_dtype(dtype)
        self.tokenizer = tokenizer
        if tokenizer is not None and "vocab_size" not in self.config:
            self.config["vocab_size"] = len(self.load_tokenizer())

    def load_tokenizer(self):
        if self.tokenizer is None:
            return None
        if self.tokenizer == "char":
            from moss_components.text.char_tokenizer import build_char_tokenizer

            return build_char_tokenizer()
        return AutoTokenizer.from_pretrained(self.tokenizer, local_files_only=True)

    def load(self) -> PreTrainedModel:
        config = CONFIG_MAPPING[self.model_type](**self.config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = AutoModelForCausalLM.from_config(
                config, attn_implementation=resolve_attention(self.attn_implementation)
            )
        if self.dtype is not None:
            model = model.to(self.dtype)
        return model.eval()


class PretrainedTrunk(TextTrunkSource):
    """A pretrained LLM from a local directory (``from_pretrained(path, local_files_only=True)``).

    Args:
        path: directory with ``config.json`` and the weights.
        dtype: parameter dtype; None keeps the checkpoint's.
        attn_implementation: ``eager``, ``sdpa``, ``moss_triton``, ``auto`` or a registered name.
    """

    def __init__(self, path: str | Path, dtype: str | None = None, attn_implementation: str = "sdpa") -> None:
        self.path = Path(path)
        self.dtype = resolve_dtype(dtype)
        self.attn_implementation = attn_implementation

    def _check(self) -> None:
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a model directory: it has no config.json")

    def load(self) -> PreTrainedModel:
        self._check()
        kwargs = {"local_files_only": True, "attn_implementation": resolve_attention(self.attn_implementation)}
        if self.dtype is not None:
            kwargs["dtype"] = self.dtype
        return AutoModelForCausalLM.from_pretrained(self.path, **kwargs).eval()

    def load_tokenizer(self):
        self._check()
        return AutoTokenizer.from_pretrained(self.path, local_files_only=True)
