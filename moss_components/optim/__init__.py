"""Optimizer pieces shared by the training stages."""

from moss_components.optim.warmup_cosine import WarmupCosineLR

__all__ = ["WarmupCosineLR"]
