"""The layer-split speech LM (MOSS-Speech's architecture) and its output."""

from moss_components.model.layer_split import LayerSplitSpeechLM, SplitError
from moss_components.model.loss import IGNORE_INDEX
from moss_components.model.output import SpeechLMOutput

__all__ = ["IGNORE_INDEX", "LayerSplitSpeechLM", "SpeechLMOutput", "SplitError"]
