"""The layer-split speech LM (MOSS-Speech's architecture) and its output."""

from moss_components.model.layer_split import LayerSplitSpeechLM, SplitError
from moss_components.model.loss import IGNORE_INDEX
from moss_components.model.output import SpeechLMOutput
from moss_components.model.speech_embedding_init import CTCAlignedInit, SpeechEmbeddingInit

__all__ = [
    "CTCAlignedInit",
    "IGNORE_INDEX",
    "LayerSplitSpeechLM",
    "SpeechEmbeddingInit",
    "SpeechLMOutput",
    "SplitError",
]
