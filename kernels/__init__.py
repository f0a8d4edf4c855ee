"""Triton kernels (plain torch + triton): flash attention, fused linear cross-entropy, and their transformers hook.

Each kernel has a pure-torch reference beside it (``*_reference.py``), which is its spec. On a machine without a GPU
the kernels run under the Triton interpreter (``TRITON_INTERPRET=1`` before triton is imported) for tests; real work
falls back to torch with one log line.
"""

from kernels.backend import ATTENTION_BACKENDS, resolve_attn_implementation, triton_usable
from kernels.flash_attention import flash_attention, flash_attention_varlen
from kernels.fused_linear_cross_entropy import fused_linear_cross_entropy
from kernels.transformers_attention import moss_triton_attention_forward, register_moss_triton_attention

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
