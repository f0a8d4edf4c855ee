"""Optimizer pieces shared by the training stages."""

from moss_components.optim.warmup_cosine import WarmupCosineLR, warmup_cosine_schedule

__all__ = ["WarmupCosineLR", "warmup_cosine_schedule"]
