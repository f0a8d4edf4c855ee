"""moss-components: composable parts and a Lightning recipe for true speech-to-speech LLMs (MOSS-Speech)."""

from moss_components.special_ids import SpeechSpecialIds

__all__ = ["SpeechSpecialIds"]
__version__ = "0.1.0"
