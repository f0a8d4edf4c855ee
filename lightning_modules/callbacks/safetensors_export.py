"""``SafetensorsExport``: when ``fit`` ends, call the stage's ``export(path)`` (safetensors weights that the next
stage's ``init_from`` or trunk reads)."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["SafetensorsExport"]

log = logging.getLogger(__name__)


class SafetensorsExport(Callback):
    """Export the trained weights once fit ends (on global rank 0 only).

    Args:
        path: where ``pl_module.export(path)`` writes (a directory for ``SpeechLMModule`` and ``TextLMModule``).
            Those stages also take ``export_dir`` themselves; this callback is for stages that do not.
        on_interrupt: also export when fit stops early (an exception or Ctrl-C); default False, since a half-trained
            export under the final name would look finished to the next stage.
    """

    def __init__(self, path: str, on_interrupt: bool = False) -> None:
        self.path = path
        self.on_interrupt = on_interrupt

    def _export(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "export"):
            raise TypeError(f"{type(pl_module).__name__} has no export(path) method; SafetensorsExport needs one")
        if trainer.is_global_zero:
            pl_module.export(self.path)
            log.info("exported %s weights to %s", type(pl_module).__name__, Path(self.path).resolve())
        trainer.strategy.barrier("SafetensorsExport")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.interrupted:
            self._export(trainer, pl_module)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.on_interrupt:
            self._export(trainer, pl_module)
