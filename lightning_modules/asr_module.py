"""Training stage of the ASR judge (:class:`~moss_components.asr.CTCRecognizer`): the tokenizer's CTC loop
without a quantizer (see :class:`lightning_modules.tokenizer_module.CTCTrainingModule`)."""

from __future__ import annotations

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lightning_modules.tokenizer_module import CTCTrainingModule, _default_optimizer
from moss_components.asr.recognizer import CTCRecognizer

__all__ = ["ASRModule"]


class ASRModule(CTCTrainingModule):
    """Trains a :class:`CTCRecognizer` with character CTC; logs ``val/cer`` (see ``CTCTrainingModule``)."""

    def __init__(
        self,
        recognizer: CTCRecognizer,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 100,
        bf16: bool = False,
        export_dir: str | None = None,
        val_batches_to_print: int = 2,
    ) -> None:
        super().__init__(recognizer, optimizer, scheduler, warmup_steps, bf16, export_dir, val_batches_to_print)

    @property
    def recognizer(self) -> CTCRecognizer:
        return self.model
