"""Trunk sources: the text LLM a speech LM is split from (config, local pretrained dir, GGUF)."""

from moss_components.trunks.base import TextTrunkSource, resolve_dtype
from moss_components.trunks.gguf import GGUFTrunk, find_gguf
from moss_components.trunks.sources import ConfigTrunk, PretrainedTrunk

__all__ = ["ConfigTrunk", "GGUFTrunk", "PretrainedTrunk", "TextTrunkSource", "find_gguf", "resolve_dtype"]
