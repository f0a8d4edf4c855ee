"""The no-split baseline: one stack, speech ids appended to the text vocabulary (the paper's NF-NoSplit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from moss_components.routers.base import BranchInputs, BranchOutputs, SpeechLMRouter

if TYPE_CHECKING:
    from moss_components.model.layer_split import LayerSplitSpeechLM

__all__ = ["NoSplitRouter"]


class NoSplitRouter(SpeechLMRouter):
    """One stack for both modalities, one softmax over ``V_text + V_speech`` ids.

    The model keeps a separate speech embedding table and speech head, but that is only bookkeeping: looking up speech
    id ``s`` in ``speech_embed`` is looking up row ``V_text + s`` of an appended table, and ``[text_logits,
    speech_logits]`` are the logits of one head over the joint vocabulary. The loss normalizes over the joint
    vocabulary (``joint_softmax``), which is what makes this the paper's no-split ablation rather than a split
    model with zero branch layers. ``text_logits`` / ``speech_logits`` stay separate views so stages and evaluation
    use this router like the others (sample a mode's logits, or ``cat`` them for a joint distribution).
    """

    uses_speech_branch = False
    joint_softmax = True
    supports_cache = True

    def forward(self, model: LayerSplitSpeechLM, inputs: BranchInputs) -> BranchOutputs:
        hidden = model.run_layers(model.text_layers, model.num_shared_layers, inputs.hidden, inputs)
        hidden = model.text_norm(hidden)
        return BranchOutputs(text_hidden=hidden, speech_hidden=hidden)
