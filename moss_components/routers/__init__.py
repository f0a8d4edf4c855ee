"""Routers: how positions flow through the shared trunk and the branches (selectable from YAML by class_path)."""

from moss_components.routers.base import BranchInputs, BranchOutputs, SpeechLMRouter
from moss_components.routers.dual_branch import DualBranchRouter
from moss_components.routers.modality_routed import ModalityRoutedRouter
from moss_components.routers.no_split import NoSplitRouter

__all__ = [
    "BranchInputs",
    "BranchOutputs",
    "DualBranchRouter",
    "ModalityRoutedRouter",
    "NoSplitRouter",
    "SpeechLMRouter",
]
