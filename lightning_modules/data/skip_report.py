"""Report, at the end of every epoch, how many items a DataModule's datasets skipped and why.

A DataModule has no epoch hooks, so it appends this callback to its trainer in ``setup``. Counts live in shared
memory (:class:`moss_components.data.audio_io.SkipCounter`), so items skipped inside DataLoader workers are seen.
"""

from __future__ import annotations

import logging

from lightning.pytorch import Callback, LightningDataModule, Trainer
from lightning.pytorch.utilities.exceptions import MisconfigurationException

log = logging.getLogger(__name__)


class SkippedItemsReport(Callback):
    """Log ``data/skipped_{stage}`` and warn with the reasons whenever a stage's epoch skipped items."""

    def __init__(self, datamodule: LightningDataModule) -> None:
        self.datamodule = datamodule
        self.history: list[tuple[str, int, dict[str, int]]] = []  # (stage, epoch, {reason: count})

    def _report(self, trainer: Trainer, stage: str, pl_module) -> None:
        counter = self.datamodule.skip_counters.get(stage)
        if counter is None:
            return
        summary = counter.summary()
        n = sum(summary.values())
        self.history.append((stage, trainer.current_epoch, summary))
        if n:
            log.warning(
                "%s epoch %d: skipped %d of %d items: %s",
                stage,
                trainer.current_epoch,
                n,
                len(counter.codes),
                ", ".join(f"{k} {v}" for k, v in summary.items()),
            )
        try:
            pl_module.log(f"data/skipped_{stage}", float(n), rank_zero_only=True)
        except MisconfigurationException:  # a module outside a fit loop cannot log; the warning above still shows
            pass
        counter.reset()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "train", pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, "validation", pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "test", pl_module)


def attach_skip_report(datamodule: LightningDataModule) -> None:
    """Append a :class:`SkippedItemsReport` for ``datamodule`` to its trainer once (no-op without a trainer)."""
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return
    if not any(isinstance(cb, SkippedItemsReport) and cb.datamodule is datamodule for cb in trainer.callbacks):
        trainer.callbacks.append(SkippedItemsReport(datamodule))
