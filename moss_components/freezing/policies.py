"""The freezing variants of MOSS-Speech's ablation (Table 6): FP-Full, FP-Shared, FP-Layerwise and NF.

The paper pretrains in two stages. PT-1 keeps the whole pretrained LLM frozen and trains only what is new for
speech. Table 6 compares what PT-2 then unfreezes (speech StoryCloze / MMLU): FP-Full 63.12 / 66.50, FP-Shared
63.50 / 67.26, FP-Layerwise 62.64 / 68.82, NF 56.60 / 62.11. Our reading of the variants, in terms of the groups of
``LayerSplitSpeechLM.parameter_groups()``:

- **FP-Full** (:class:`FreezeFull`): the pretrained LLM stays frozen (text embedding, shared trunk, text branch,
  text norm, text head); the speech embedding, speech branch, speech norm and speech head learn. This is PT-1.
- **FP-Shared** (:class:`FreezeShared`): the shared trunk (and, by default, the text embedding that feeds it) stays
  frozen; both branches, norms and heads learn.
- **FP-Layerwise** (:class:`FreezeLayerwise`): start as FP-Full and thaw the pretrained parts back to front on a
  step schedule: text head + norm, then text-branch layers from the top, then shared layers from the top, then the
  text embedding.
- **NF** (:class:`NoFreeze`): everything learns (with the no-split router this is NF-NoSplit).
"""

from __future__ import annotations

from torch import nn

from moss_components.freezing.base import FreezingPolicy

__all__ = ["FreezeFull", "FreezeLayerwise", "FreezeShared", "NoFreeze", "SPEECH_GROUPS", "speech_groups"]

SPEECH_GROUPS = ("speech_embedding", "speech_branch.", "speech_norm", "speech_head")


def speech_groups(model: nn.Module) -> set[str]:
    """The groups that are new for speech (never part of the pretrained LLM)."""
    return {g for g in model.parameter_groups() if g.startswith(SPEECH_GROUPS)}


def pretrained_thaw_order(model: nn.Module) -> list[set[str]]:
    """The pretrained groups back to front, one unit per thaw: head+norm, text layers, shared layers, embedding."""
    groups = model.parameter_groups()
    units: list[set[str]] = [{"text_head", "text_norm"}]
    units += [{f"text_branch.{j}"} for j in reversed(range(sum(g.startswith("text_branch.") for g in groups)))]
    units += [{f"shared.{i}"} for i in reversed(range(sum(g.startswith("shared.") for g in groups)))]
    units.append({"text_embedding"})
    return units


class FreezeFull(FreezingPolicy):
    """FP-Full / PT-1: only the speech embedding, speech branch, speech norm and speech head learn.

    Under this policy the text logits of any text input stay bit-identical to the base model's, whatever the
    optimizer does (tested against transformers' own models).
    """

    def trainable_groups(self, model: nn.Module, step: int) -> set[str]:
        return speech_groups(model)


class FreezeShared(FreezingPolicy):
    """FP-Shared: the shared trunk stays frozen; both branches, both norms and both heads learn.

    Args:
        freeze_text_embedding: keep the text embedding (the trunk's input) frozen too (default True).
    """

    def __init__(self, freeze_text_embedding: bool = True) -> None:
        self.freeze_text_embedding = freeze_text_embedding

    def trainable_groups(self, model: nn.Module, step: int) -> set[str]:
        groups = model.parameter_groups()
        frozen = {g for g in groups if g.startswith("shared.")}
        if self.freeze_text_embedding:
            frozen.add("text_embedding")
        return set(groups) - frozen


class FreezeLayerwise(FreezingPolicy):
    """FP-Layerwise: FP-Full at first, then the pretrained parts thaw back to front.

    Thaw units, in order: text head + text norm, text-branch layers top to bottom, shared layers top to bottom, text
    embedding. ``units_per_thaw`` units thaw at steps ``start_step + thaw_every_steps``, ``start_step + 2 *
    thaw_every_steps``, ...; before the first of those only the speech parts learn, and once every unit has thawed
    the policy equals :class:`NoFreeze`.

    Args:
        thaw_every_steps: optimizer steps between two thaws (> 0).
        units_per_thaw: thaw units per thaw (> 0).
        start_step: step the schedule counts from (>= 0).
    """

    def __init__(self, thaw_every_steps: int = 1000, units_per_thaw: int = 1, start_step: int = 0) -> None:
        if thaw_every_steps <= 0:
            raise ValueError(f"thaw_every_steps must be > 0, got {thaw_every_steps}")
        if units_per_thaw <= 0:
            raise ValueError(f"units_per_thaw must be > 0, got {units_per_thaw}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.thaw_every_steps = thaw_every_steps
        self.units_per_thaw = units_per_thaw
        self.start_step = start_step

    def num_thawed(self, step: int) -> int:
        """Pretrained units thawed at ``step`` (capped by the caller at the number of units)."""
        return max(0, (step - self.start_step) // self.thaw_every_steps) * self.units_per_thaw

    def trainable_groups(self, model: nn.Module, step: int) -> set[str]:
        trainable = speech_groups(model)
        for unit in pretrained_thaw_order(model)[: self.num_thawed(step)]:
            trainable |= unit
        return trainable


class NoFreeze(FreezingPolicy):
    """NF: every parameter learns."""

    def trainable_groups(self, model: nn.Module, step: int) -> set[str]:
        return set(model.parameter_groups())
