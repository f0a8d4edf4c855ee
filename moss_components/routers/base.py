"""The layer split as a swappable component: how positions flow from the shared trunk through the branches.

A router owns no weights. ``LayerSplitSpeechLM`` holds every module (shared layers, text branch, speech branch,
norms, heads) so that parameter names and checkpoints do not depend on the router; the router only says which
modules exist (``uses_speech_branch``), how the loss treats the two heads (``joint_softmax``) and runs the
post-trunk part of the forward pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from moss_components.model.layer_split import LayerSplitSpeechLM

__all__ = ["BranchInputs", "BranchOutputs", "SpeechLMRouter"]


@dataclass
class BranchInputs:
    """What the trunk hands to the router.

    Args:
        hidden: ``(B, L, D)`` hidden states after the last shared layer.
        position_ids: ``(B, L)`` (or ``(1, L)``) positions used for the rotary embedding.
        position_embeddings: ``(cos, sin)`` from the trunk's ``rotary_emb``, each ``(B, L, head_dim)``.
        masks: layer type (``"full_attention"``, ``"sliding_attention"``) -> the mask the trunk's layers expect.
        attention_mask: the caller's 2D ``(B, L_past + L)`` padding mask, or None.
        cache: the shared KV cache (one ``DynamicCache``, distinct layer indices per stack), or None.
        use_cache: whether layers write to ``cache``.
        speech_positions: ``(B, L)`` bool, True where the input is a speech token (text channel == modality pad).
        predicts_speech: ``(B, L)`` bool, True where the *next* token is a speech token (MOSS state machine: after
            start-of-speech and inside a speech segment up to, not including, end-of-speech).
        layer_kwargs: extra keyword arguments passed through to every decoder layer (``cu_seq_lens_q`` ...).
    """

    hidden: torch.Tensor
    position_ids: torch.Tensor
    position_embeddings: tuple[torch.Tensor, torch.Tensor]
    masks: dict[str, Any]
    attention_mask: torch.Tensor | None
    cache: Any
    use_cache: bool
    speech_positions: torch.Tensor
    predicts_speech: torch.Tensor
    layer_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class BranchOutputs:
    """Final (normed) hidden states for each head.

    Args:
        text_hidden: ``(B, L, D)`` input of the text head.
        speech_hidden: ``(B, L, D)`` input of the speech head.
        text_computed: ``(B, L)`` bool, where ``text_hidden`` is meaningful; None means everywhere.
        speech_computed: ``(B, L)`` bool, where ``speech_hidden`` is meaningful; None means everywhere.
    """

    text_hidden: torch.Tensor
    speech_hidden: torch.Tensor
    text_computed: torch.Tensor | None = None
    speech_computed: torch.Tensor | None = None


class SpeechLMRouter(nn.Module, ABC):
    """How positions flow through the branches after the shared trunk.

    Class attributes read by the model:
        uses_speech_branch: the model builds a speech branch (deep copies of the upper layers + a copy of the norm).
        joint_softmax: the loss normalizes text and speech logits together (one vocabulary: the no-split baseline).
        supports_cache: the router can run with a KV cache (incremental decoding).
    """

    uses_speech_branch: bool = True
    joint_softmax: bool = False
    supports_cache: bool = True

    @abstractmethod
    def forward(self, model: LayerSplitSpeechLM, inputs: BranchInputs) -> BranchOutputs:
        """Run the post-trunk layers and the final norms; return the inputs of both heads."""

    def extra_repr(self) -> str:
        return f"uses_speech_branch={self.uses_speech_branch}, joint_softmax={self.joint_softmax}"
