"""Modality routing: each position runs through one branch only, the one of the modality it predicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from moss_components.routers.base import BranchInputs, BranchOutputs, SpeechLMRouter

if TYPE_CHECKING:
    from moss_components.model.layer_split import LayerSplitSpeechLM

__all__ = ["ModalityRoutedRouter", "compact_positions"]

_VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def compact_positions(select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices that gather the selected positions of each row to the front, in order.

    Args:
        select: ``(B, L)`` bool.

    Returns:
        ``index (B, Lc)`` long (a prefix of a permutation of ``0..L-1``; after a row's selected positions come
        unselected ones as padding) and ``valid (B, Lc)`` bool, with ``Lc`` the largest count of a row.
    """
    counts = select.sum(dim=1)
    width = int(counts.max().item()) if select.numel() else 0
    # a stable sort on "not selected" keeps the original order within each group
    order = torch.sort((~select).to(torch.int8), dim=1, stable=True).indices[:, :width]
    valid = torch.arange(width, device=select.device).unsqueeze(0) < counts.unsqueeze(1)
    return order, valid


class ModalityRoutedRouter(SpeechLMRouter):
    """Each position runs only through the branch of the modality it *predicts* (less compute than dual-branch).

    A position goes to the speech branch when the next token is speech (it is start-of-speech, or a speech token
    other than end-of-speech: :meth:`LayerSplitSpeechLM.predicts_speech`), otherwise to the text branch. Each branch
    runs on its positions gathered into a compact sequence with their original position ids (so RoPE distances are
    the true ones), so in the branch layers a position attends only to earlier positions of the same route; the
    modalities mix in the shared trunk. Cost: ``k + (N - k)`` layer instances per token.

    Consequences, by design:
      - on a sequence whose positions all take one route, that head's logits equal :class:`DualBranchRouter`'s;
        in general they agree up to the first position of the other route;
      - the head of the other route is not computed: its hidden states and logits are 0 there, the output's
        ``text_computed`` / ``speech_computed`` masks say where, and labels there are ignored by the loss;
      - no KV cache (the routes grow at different rates); generation runs it uncached.
    """

    uses_speech_branch = True
    joint_softmax = False
    supports_cache = False

    def forward(self, model: LayerSplitSpeechLM, inputs: BranchInputs) -> BranchOutputs:
        k = model.num_shared_layers
        route_speech = inputs.predicts_speech
        text = self._run_branch(model, model.text_layers, model.text_norm, ~route_speech, inputs, k)
        speech = self._run_branch(model, model.speech_layers, model.speech_norm, route_speech, inputs, k)
        return BranchOutputs(text, speech, text_computed=~route_speech, speech_computed=route_speech)

    @staticmethod
    def _run_branch(
        model: LayerSplitSpeechLM,
        layers: nn.ModuleList,
        norm: nn.Module,
        select: torch.Tensor,
        inputs: BranchInputs,
        first_index: int,
    ) -> torch.Tensor:
        """``(B, L, D)`` normed branch output at the selected positions, 0 elsewhere."""
        hidden = inputs.hidden
        out = torch.zeros_like(hidden)
        if not select.any():
            return out
        batch, length, dim = hidden.shape
        index, valid = compact_positions(select)
        gather_index = index.unsqueeze(-1).expand(-1, -1, dim)
        compact = hidden.gather(1, gather_index)
        positions = inputs.position_ids.expand(batch, length).gather(1, index)
        # padding continues the last real position, so transformers' packing detection (position restarts) still
        # sees each row's documents and nothing else; padding sits after all real positions, so causality hides it
        counts = valid.sum(dim=1, keepdim=True)
        last = positions.gather(1, (counts - 1).clamp(min=0))
        steps = torch.arange(index.shape[1], device=index.device).unsqueeze(0) - counts + 1
        positions = torch.where(valid, positions, last + steps)
        attention_mask = None
        if inputs.attention_mask is not None:
            attention_mask = (inputs.attention_mask[:, -length:].gather(1, index).bool() & valid).long()
        compact = model.run_layers(
            layers,
            first_index,
            compact,
            inputs,
            masks=model.make_masks(compact, attention_mask, None, positions),
            position_ids=positions,
            position_embeddings=model.rotary_emb(compact, positions),
            cache=None,
            # varlen boundaries describe the full sequence, not the compacted one: let the kernels rederive them
            layer_kwargs={k: v for k, v in inputs.layer_kwargs.items() if k not in _VARLEN_KEYS},
        )
        compact = norm(compact) * valid.unsqueeze(-1).to(compact.dtype)
        # index rows are distinct, so scatter writes each position once (padding writes 0 to unselected rows)
        return out.scatter(1, gather_index, compact)
