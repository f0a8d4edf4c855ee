"""MOSS-Speech's router: every position through both branches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from moss_components.routers.base import BranchInputs, BranchOutputs, SpeechLMRouter

if TYPE_CHECKING:
    from moss_components.model.layer_split import LayerSplitSpeechLM

__all__ = ["DualBranchRouter"]


class DualBranchRouter(SpeechLMRouter):
    """Every position runs through the text branch and the speech branch (MOSS-Speech).

    Both heads are defined everywhere, so either modality can follow any position, and each branch's attention sees
    every earlier position. Cost: ``k + 2 (N - k)`` layer instances per token.
    """

    uses_speech_branch = True
    joint_softmax = False
    supports_cache = True

    def forward(self, model: LayerSplitSpeechLM, inputs: BranchInputs) -> BranchOutputs:
        k = model.num_shared_layers
        text = model.run_layers(model.text_layers, k, inputs.hidden, inputs)
        speech = model.run_layers(model.speech_layers, k, inputs.hidden, inputs)
        return BranchOutputs(text_hidden=model.text_norm(text), speech_hidden=model.speech_norm(speech))
