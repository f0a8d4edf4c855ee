"""The freezing policy interface: which parameters of a split model learn at a given training step."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

__all__ = ["FreezingPolicy"]


class FreezingPolicy(ABC):
    """Decides ``requires_grad`` for every parameter of a :class:`LayerSplitSpeechLM` at each step.

    Subclasses implement :meth:`trainable_groups`, a set of the model's ``parameter_groups()`` keys that learn at
    ``step``. :meth:`apply` is called by the stage before every optimizer step; it only touches the parameters when
    the trainable set changed since the last call on that model (cheap otherwise). Frozen parameters get
    ``requires_grad=False``, so their ``.grad`` stays None and AdamW neither updates them (weight decay included)
    nor creates optimizer state for them. Put *all* parameters in the optimizer: a thawed one starts learning on the
    step it thaws.
    """

    @abstractmethod
    def trainable_groups(self, model: nn.Module, step: int) -> set[str]:
        """Keys of ``model.parameter_groups()`` that learn at ``step``."""

    def trainable_parameter_names(self, model: nn.Module, step: int) -> list[str]:
        """Names (as in ``model.named_parameters()``) of the parameters that learn at ``step``."""
        prefixes = self._prefixes(model, step)
        return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]

    def apply(self, model: nn.Module, step: int) -> None:
        """Set ``requires_grad`` on every parameter of ``model`` for ``step``; a no-op when nothing changed."""
        prefixes = self._prefixes(model, step)
        key = (id(model), prefixes)
        if getattr(self, "_applied", None) == key:
            return
        for name, param in model.named_parameters():
            trainable = name.startswith(prefixes)
            param.requires_grad_(trainable)
            if not trainable:
                # a gradient left from before the freeze would still be applied by the optimizer
                param.grad = None
        self._applied = key

    def _prefixes(self, model: nn.Module, step: int) -> tuple[str, ...]:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        groups = model.parameter_groups()
        trainable = self.trainable_groups(model, step)
        unknown = trainable - set(groups)
        if unknown:
            raise ValueError(f"{type(self).__name__} names unknown parameter groups {sorted(unknown)}")
        return tuple(sorted(p for g in trainable for p in groups[g]))
