"""Where the Triton kernels can run, the per-run ``attention_backend`` switch, and one-time fallback log lines.

The kernels run compiled on a CUDA device and under the Triton interpreter on the CPU (``TRITON_INTERPRET=1`` set
before triton is imported; slow, for tests). Anywhere else real work falls back to torch (SDPA for attention, the
chunked torch path for the loss) and says so once.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

ATTENTION_BACKENDS = ("auto", "moss_triton", "sdpa", "eager")

try:
    import triton

    @triton.jit
    def _probe():
        pass

    _HAS_TRITON = True
    _INTERPRETING = type(_probe).__name__ == "InterpretedFunction"
except ImportError:  # triton ships for Linux only
    _HAS_TRITON = False
    _INTERPRETING = False

_logged: set[str] = set()


def log_once(key: str, message: str) -> None:
    """Log ``message`` at INFO the first time ``key`` is seen in this process."""
    if key not in _logged:
        _logged.add(key)
        logger.info(message)


def triton_interpreting() -> bool:
    """True when triton was imported with ``TRITON_INTERPRET=1``: kernels then run in numpy on CPU tensors."""
    return _INTERPRETING


def triton_usable(device: torch.device) -> bool:
    """Whether a Triton kernel can run on tensors living on ``device``."""
    if not _HAS_TRITON:
        return False
    if _INTERPRETING:
        return device.type == "cpu"
    return device.type == "cuda"


def use_triton(device: torch.device, what: str, fallback: str) -> bool:
    """``triton_usable(device)``, logging once per ``what`` that ``fallback`` is used instead when it is not."""
    if triton_usable(device):
        return True
    log_once(
        f"fallback:{what}",
        f"{what}: Triton kernels need a CUDA device or TRITON_INTERPRET=1 (tensors on {device.type}); using {fallback}",
    )
    return False


def resolve_attn_implementation(attention_backend: str = "auto") -> str:
    """Turn a run's ``attention_backend`` config value into a transformers ``attn_implementation`` name.

    ``auto`` picks ``moss_triton`` when a CUDA device is present and ``sdpa`` otherwise; ``moss_triton`` registers the
    kernels with transformers (on a machine that cannot run them they fall back to SDPA, logging it once).
    """
    if attention_backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend {attention_backend!r} unknown: expected one of {ATTENTION_BACKENDS}")
    if attention_backend == "auto":
        attention_backend = "moss_triton" if torch.cuda.is_available() and _HAS_TRITON else "sdpa"
        log_once("auto-backend", f"attention_backend=auto resolved to {attention_backend}")
    if attention_backend == "moss_triton":
        from kernels.transformers_attention import register_moss_triton_attention

        register_moss_triton_attention()
    return attention_backend
