"""Triton kernels (plain torch + triton): flash attention, fused linear cross-entropy, and their transformers hook.

Each kernel has a pure-torch reference beside it (``*_reference.py``), which is its spec. On a machine without a GPU
the kernels run under the Triton interpreter (``TRITON_INTERPRET=1`` before triton is imported) for tests; real work
falls back to torch with one log line.

The transformers hook is imported lazily. transformers probes for Hugging Face's own ``kernels`` package at import
time and, where it finds no version metadata (this repo on ``PYTHONPATH`` rather than installed), imports whatever
``kernels`` it finds: ours. Importing transformers from here would then be circular.
"""

import importlib

from kernels.backend import ATTENTION_BACKENDS, resolve_attn_implementation, triton_usable
from kernels.flash_attention import flash_attention, flash_attention_varlen
from kernels.fused_linear_cross_entropy import fused_linear_cross_entropy

_TRANSFORMERS_HOOK = ("moss_triton_attention_forward", "register_moss_triton_attention")

__all__ = [
    "ATTENTION_BACKENDS",
    "flash_attention",
    "flash_attention_varlen",
    "fused_linear_cross_entropy",
    "moss_triton_attention_forward",
    "register_moss_triton_attention",
    "resolve_attn_implementation",
    "triton_usable",
]


def __getattr__(name: str):
    if name in _TRANSFORMERS_HOOK:
        return getattr(importlib.import_module("kernels.transformers_attention"), name)
    raise AttributeError(f"module 'kernels' has no attribute {name!r}")
