"""``AtomicCheckpointIO``: Lightning checkpoints written atomically and read without unpickling arbitrary objects.

Why not Lightning's own ``TorchCheckpointIO``: it writes through an fsspec transaction whose local temp file comes
from ``tempfile.mkstemp()`` (the system temp dir), then ``shutil.move``s it. When the temp dir and the checkpoint
folder are on different filesystems the move is a copy, and a kill during that copy leaves a truncated file under
the final name. Here the temp file sits beside the target, is fsynced, and ``os.replace`` swaps it in (atomic on
POSIX). Loading always uses ``torch.load(weights_only=True)``: tensors, containers and primitives only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save"]


def atomic_torch_save(obj: Any, path: _PATH) -> Path:
    """``torch.save`` to ``path.tmp-<pid>`` in the same folder, fsync, then ``os.replace`` onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """A ``CheckpointIO`` plugin (``trainer.plugins``) for local paths: atomic writes, ``weights_only`` reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        if "://" in str(path):
            raise ValueError(f"AtomicCheckpointIO writes local files only, got '{path}'")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        if weights_only is False:
            raise ValueError(f"refusing to load '{path}' with weights_only=False: checkpoints are never unpickled")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: '{path}'")
        return torch.load(path, map_location=map_location or (lambda storage, loc: storage), weights_only=True)
