"""Linear warm-up then cosine decay to a floor: the schedule of every MOSS-Speech stage (e.g. PT-2 6e-5 -> 6e-6)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosineLR(LambdaLR):
    """Learning rate ``lr * f(step)``, stepped once per optimizer step.

    ``f`` rises linearly from 0 to 1 over ``warmup_steps``, then follows a half cosine from 1 down to
    ``min_lr_ratio`` at ``total_steps`` and stays there.

    Args:
        optimizer: the wrapped optimizer; its ``lr`` is the peak.
        total_steps: optimizer steps of the whole run (warm-up included).
        warmup_steps: steps of linear warm-up.
        min_lr_ratio: floor as a fraction of the peak (the paper's PT-2 and SFT decay 10x: 0.1).
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1):
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"warmup_steps={warmup_steps} must be in [0, total_steps={total_steps}]")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={min_lr_ratio} must be in [0, 1]")
        self.total_steps, self.warmup_steps, self.min_lr_ratio = total_steps, warmup_steps, min_lr_ratio
        self.max_total_steps = total_steps
        super().__init__(optimizer, self._factor)

    def end_at(self, total_steps: int) -> None:
        """Move the end of the decay to ``total_steps``, kept between the end of the warm-up and the constructor's
        ``total_steps``: for a run that a time budget will stop before then (``CPUTimeBudget`` calls it)."""
        self.total_steps = max(self.warmup_steps + 1, min(self.max_total_steps, int(total_steps)))

    def _factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1
) -> dict:
    """Lightning's ``configure_optimizers`` answer for ``optimizer`` under :class:`WarmupCosineLR`, stepped per
    optimizer step; ``warmup_steps`` is clipped to a run shorter than it."""
    total_steps = max(1, int(total_steps))
    scheduler = WarmupCosineLR(optimizer, total_steps, min(warmup_steps, total_steps), min_lr_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
