"""Freezing policies: which parameters learn, and when they thaw (the paper's Table 6 variants)."""

from moss_components.freezing.base import FreezingPolicy
from moss_components.freezing.policies import FreezeFull, FreezeLayerwise, FreezeShared, NoFreeze, pretrained_thaw_order

__all__ = ["FreezeFull", "FreezeLayerwise", "FreezeShared", "FreezingPolicy", "NoFreeze", "pretrained_thaw_order"]
