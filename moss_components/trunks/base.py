"""Where the text LLM that becomes the trunk comes from: the ``TextTrunkSource`` interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from transformers import PreTrainedModel

__all__ = ["TextTrunkSource", "resolve_dtype"]


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"bfloat16"`` / ``"bf16"`` / ``torch.bfloat16`` / None -> a torch dtype (None stays None)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(dtype, dtype)
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"dtype '{dtype}' is not a torch dtype; expected e.g. float32, bfloat16, float16")
    return value


def resolve_attention(attn_implementation: str) -> str:
    """The transformers ``attn_implementation`` for a run's choice: ``eager``, ``sdpa``, ``moss_triton`` (our Triton
    kernels, registered here; SDPA with a log line where they cannot run) or ``auto`` (moss_triton on a GPU)."""
    if attn_implementation in ("auto", "moss_triton"):
        from kernels import resolve_attn_implementation

        return resolve_attn_implementation(attn_implementation)
    return attn_implementation


class TextTrunkSource(ABC):
    """Builds a transformers ``*ForCausalLM`` (Llama / Qwen2 / Qwen3 / Mistral family) to split into a speech LM.

    Sources never touch the network: they build from a config or read a local directory / file.
    """

    @abstractmethod
    def load(self) -> PreTrainedModel:
        """The causal LM, in eval mode, on the CPU."""

    def load_tokenizer(self):
        """The matching text tokenizer, or None when the source has none (a random model built from a config)."""
        return None
