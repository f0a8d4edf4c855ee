"""The output of ``LayerSplitSpeechLM.forward``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["SpeechLMOutput"]


@dataclass
class SpeechLMOutput:
    """Logits of both heads, the losses and the cache.

    Attributes:
        text_logits: ``(B, L, V_text)``; position t scores the text token at t + 1. None when ``fused_loss`` computed
            the loss without materializing logits.
        speech_logits: ``(B, L, V_speech)``; position t scores the speech token at t + 1 (None as above).
        loss: token-weighted mean cross-entropy over every non-ignored label of both channels (None without labels).
        text_loss: mean over the text-channel labels (0 when there are none).
        speech_loss: mean over the speech-channel labels (0 when there are none).
        past_key_values: the KV cache (one ``DynamicCache`` for the trunk and both branches) when ``use_cache``.
        text_hidden: ``(B, L, D)`` input of the text head (after the text norm).
        speech_hidden: ``(B, L, D)`` input of the speech head (after the speech norm).
        text_computed / speech_computed: ``(B, L)`` bool where the router computed that head (None = everywhere).
    """

    text_logits: torch.Tensor | None = None
    speech_logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    text_loss: torch.Tensor | None = None
    speech_loss: torch.Tensor | None = None
    past_key_values: Any = None
    text_hidden: torch.Tensor | None = None
    speech_hidden: torch.Tensor | None = None
    text_computed: torch.Tensor | None = None
    speech_computed: torch.Tensor | None = None
