"""``TextLMModule``: trains the small text LLM of the embedded default, used only when no pretrained LLM is given.

It is a plain transformers causal LM (a tiny Qwen3 with a character vocabulary by default), so the stages after it
treat it exactly like a downloaded pretrained model: ``export`` writes a Hugging Face directory (config,
safetensors, tokenizer) that ``PretrainedTrunk`` loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from moss_components.optim import warmup_cosine_schedule
from moss_components.trunks import TextTrunkSource


def _default_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))


class TextLMModule(LightningModule):
    """Next-token training of a text causal LM on ``(B, L)`` ids (or the text channel of ``(B, L, 2)`` grids).

    Args:
        trunk: the model to train (usually a ``ConfigTrunk`` with random weights) and its tokenizer.
        optimizer: a callable taking the parameters.
        warmup_steps, min_lr_ratio: the warm-up + cosine schedule over the run's optimizer steps.
        export_dir: where ``on_fit_end`` writes the Hugging Face directory; None = nowhere.
    """

    def __init__(
        self,
        trunk: TextTrunkSource,
        optimizer: OptimizerCallable = _default_optimizer,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["trunk", "optimizer"])
        self.model = trunk.load().train()  # Lightning keeps each module's mode; trunks load in eval mode
        self.tokenizer = trunk.load_tokenizer()
        self.optimizer_factory = optimizer
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.export_dir = export_dir

    @staticmethod
    def _text_channel(t: torch.Tensor | None) -> torch.Tensor | None:
        return t[..., 0] if t is not None and t.dim() == 3 else t

    def forward(self, batch: dict):
        return self.model(
            input_ids=self._text_channel(batch["input_ids"]),
            attention_mask=batch.get("attention_mask"),
            position_ids=batch.get("position_ids"),
            labels=self._text_channel(batch["labels"]),
            # a KV cache would stop transformers from reading packed documents off restarting position_ids
            use_cache=False,
        )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self(batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=int(batch["input_ids"].shape[0]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self(batch).loss
        self.log("val/loss", loss, prog_bar=True, batch_size=int(batch["input_ids"].shape[0]), sync_dist=True)
        self.log("val/ppl", loss.exp(), batch_size=int(batch["input_ids"].shape[0]), sync_dist=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        total = self.trainer.estimated_stepping_batches
        return warmup_cosine_schedule(optimizer, total, self.warmup_steps, self.min_lr_ratio)

    def on_fit_end(self) -> None:
        if self.export_dir and self.trainer.is_global_zero:
            self.export(self.export_dir)

    def export(self, directory: str) -> None:
        """Write a Hugging Face directory (config, safetensors weights, tokenizer) that ``PretrainedTrunk`` loads."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
