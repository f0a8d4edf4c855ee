"""``CPUTimeBudget``: stop training when a budget of CPU time is spent, measured in minutes on N dedicated cores."""

from __future__ import annotations

import logging
import os
import time

import torch
from lightning.pytorch import Callback

log = logging.getLogger(__name__)


class CPUTimeBudget(Callback):
    """Budget in *process CPU time*, not wall-clock: on a shared machine wall-clock budgets measure the neighbours.

    Stop ``fit`` once ``process_time / threads`` exceeds ``minutes``.

    Args:
        minutes: budget in equivalent minutes on ``threads`` dedicated cores (CPU seconds / ``threads`` / 60).
        threads: cores the run is entitled to.
        num_threads: ``torch.set_num_threads`` for the run (default ``threads``). On an oversubscribed machine 1
            thread wastes less CPU time spinning; the budget then assumes perfect scaling to ``threads`` cores.
        stop_file: if this file appears, training stops cleanly (``on_fit_end`` exports still run).
        anneal: once a tenth of the budget is spent, tell each LR scheduler that has ``end_at`` (``WarmupCosineLR``)
            the step at which the budget will run out, projected from the steps per CPU-minute so far, so that its
            decay ends with the budget on a machine slower than the one ``max_steps`` was sized for. The decay never
            ends later than ``max_steps``. Off by default: over one demo's codec, the LM stages did worse with it
            than without (T→T 0.72 vs 0.81; README).
    """

    def __init__(
        self,
        minutes: float = 10.0,
        threads: int = 2,
        num_threads: int | None = None,
        stop_file: str | None = None,
        anneal: bool = False,
    ) -> None:
        self.minutes = minutes
        self.anneal = anneal
        self.stop_file = stop_file
        self.threads = threads
        self.num_threads = num_threads or threads
        self._start = 0.0
        self._wall = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        torch.set_num_threads(self.num_threads)
        self._start = time.process_time()
        self._wall = time.time()

    def used_minutes(self) -> float:
        return (time.process_time() - self._start) / self.threads / 60

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        used = self.used_minutes()
        pl_module.log("train/cpu_minutes_equiv", used, batch_size=1)
        pl_module.log("train/wall_minutes", (time.time() - self._wall) / 60, batch_size=1)
        if self.anneal and used >= 0.1 * self.minutes:
            self._end_schedules_at(int(trainer.global_step * self.minutes / used), trainer)
        if self.stop_file and os.path.exists(self.stop_file):
            log.info("stop file %s found at step %d", self.stop_file, trainer.global_step)
            trainer.should_stop = True
        if used >= self.minutes:
            log.info(
                "CPU budget of %.1f min on %d threads spent at step %d", self.minutes, self.threads, trainer.global_step
            )
            trainer.should_stop = True

    @staticmethod
    def _end_schedules_at(step: int, trainer) -> None:
        for config in trainer.lr_scheduler_configs:
            if hasattr(config.scheduler, "end_at"):
                config.scheduler.end_at(step)
