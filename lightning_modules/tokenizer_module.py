"""Training stage of the semantic tokenizer (and of the CTC ASR judge): character CTC is the only supervision.

Batches are ``{"wav": (B, T) float32, "wav_lengths": (B,) samples, "text": list[str], ...}`` as produced by
``lightning_modules.data.AudioTextDataModule``. Logged: ``train/ctc_loss``, ``train/commit_loss``,
``train/codebook_usage`` (fraction of codes picked in the last ~20 batches), ``train/intermediate_ctc_loss`` (the
weighted sum of a model's intermediate CTC losses, where it has any), ``val/ctc_loss``, ``val/cer``
(torchmetrics ``CharErrorRate``), ``val/codebook_usage`` and ``val/perplexity`` of the code distribution.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.text import CharErrorRate

from moss_components.asr.ctc_vocab import BLANK, ctc_greedy_decode, normalize_text, text_to_ids
from moss_components.optim import warmup_cosine_schedule
from moss_components.tokenizers.pretrained import save_pretrained
from moss_components.tokenizers.semantic_vq import SemanticVQTokenizer

__all__ = ["CTCTrainingModule", "TokenizerModule", "code_usage_and_perplexity"]

log = logging.getLogger(__name__)


def code_usage_and_perplexity(counts: torch.Tensor) -> tuple[float, float]:
    """``(K,)`` pick counts -> (fraction of codes used, perplexity ``exp(H)`` of the empirical distribution)."""
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts.float() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float((counts > 0).float().mean()), float(entropy.exp())


def _default_optimizer(params):
    return torch.optim.AdamW(params, lr=2e-3, weight_decay=0.01)


class CTCTrainingModule(LightningModule):
    """Shared CTC training loop for any model with ``ctc_forward(wav, wav_lengths) -> CTCOutput``.

    Args:
        model: the module trained.
        optimizer: optimizer factory (``OptimizerCallable``); AdamW lr 2e-3 by default.
        scheduler: optional LR scheduler factory; default is linear warm-up then cosine decay to 5% over
            ``max_steps`` (:class:`~moss_components.optim.WarmupCosineLR`, which ``CPUTimeBudget`` can end sooner).
        warmup_steps: LR warm-up steps of the default schedule.
        bf16: run the model under CPU/GPU bf16 autocast (the CTC loss stays fp32).
        export_dir: where ``save_pretrained`` writes ``config.yaml`` + ``model.safetensors`` at the end of fit.
        val_batches_to_print: transcripts logged (as text) from the first validation batch.
    """

    def __init__(
        self,
        model,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 100,
        bf16: bool = False,
        export_dir: str | None = None,
        val_batches_to_print: int = 2,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.warmup_steps = warmup_steps
        self.bf16 = bf16
        self.export_dir = export_dir
        self.val_batches_to_print = val_batches_to_print
        self.val_cer = CharErrorRate()
        self._val_counts: torch.Tensor | None = None
        self._train_counts: list[torch.Tensor] = []

    # -- helpers -----------------------------------------------------------------------------------------------
    def _autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @staticmethod
    def _targets(texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [torch.tensor(text_to_ids(t), dtype=torch.long) for t in texts]
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        flat = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
        return flat.to(device), lengths.to(device)

    @staticmethod
    def _ctc(log_probs, lengths, targets, target_lengths) -> torch.Tensor:
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),
            targets,
            lengths,
            target_lengths,
            blank=BLANK,
            reduction="mean",
            zero_infinity=True,
        )

    def _step(self, batch):
        """-> the model's output, its CTC loss, and the weighted sum of its intermediate CTC losses."""
        with self._autocast():
            out = self.model.ctc_forward(batch["wav"], batch["wav_lengths"])
        targets, target_lengths = self._targets(batch["text"], batch["wav"].device)
        ctc = self._ctc(out.log_probs, out.lengths, targets, target_lengths)
        intermediate = sum(
            (w * self._ctc(lp, n, targets, target_lengths) for lp, n, w in out.intermediate),
            start=ctc.new_zeros(()),
        )
        return out, ctc, intermediate

    def _ids_counts(self, out) -> torch.Tensor | None:
        if out.ids is None:
            return None
        mask = torch.arange(out.ids.shape[1], device=out.ids.device)[None] < out.ids_lengths[:, None]
        return torch.bincount(out.ids[mask].flatten(), minlength=self.model.codebook_size).cpu()

    # -- Lightning hooks ---------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        out, ctc, intermediate = self._step(batch)
        loss = ctc + intermediate + out.aux_loss.float()
        bs = batch["wav"].shape[0]
        self.log("train/ctc_loss", ctc, prog_bar=True, batch_size=bs)
        if out.intermediate:
            self.log("train/intermediate_ctc_loss", intermediate, batch_size=bs)
        self.log("train/loss", loss, batch_size=bs)
        if out.ids is not None:
            self.log("train/commit_loss", out.aux_loss.float(), batch_size=bs)
            self._train_counts = ([*self._train_counts, self._ids_counts(out)])[-20:]
            usage, _ = code_usage_and_perplexity(torch.stack(self._train_counts).sum(0))
            self.log("train/codebook_usage", usage, prog_bar=True, batch_size=bs)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = None

    def validation_step(self, batch, batch_idx):
        out, ctc, _ = self._step(batch)
        bs = batch["wav"].shape[0]
        self.log("val/ctc_loss", ctc, batch_size=bs, sync_dist=True)
        hyps = ctc_greedy_decode(out.log_probs, out.lengths)
        refs = [normalize_text(t) for t in batch["text"]]
        self.val_cer.update(hyps, refs)
        self.log("val/cer", self.val_cer, prog_bar=True, batch_size=bs)
        counts = self._ids_counts(out)
        if counts is not None:
            self._val_counts = counts if self._val_counts is None else self._val_counts + counts
        if batch_idx == 0 and self.val_batches_to_print:
            for h, r in list(zip(hyps, refs))[: self.val_batches_to_print]:
                log.info("val ref: %s | hyp: %s", r, h)

    def on_validation_epoch_end(self) -> None:
        if self._val_counts is not None:
            usage, ppl = code_usage_and_perplexity(self._val_counts)
            self.log("val/codebook_usage", usage)
            self.log("val/perplexity", ppl)

    def configure_optimizers(self):
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is not None:
            return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "step"}}
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps and self.trainer.max_steps > 0 else 0
        if total <= self.warmup_steps:  # no max_steps: warm up, then hold the peak
            return warmup_cosine_schedule(opt, max(1, self.warmup_steps), self.warmup_steps, min_lr_ratio=1.0)
        return warmup_cosine_schedule(opt, total, self.warmup_steps, min_lr_ratio=0.05)

    def on_fit_end(self) -> None:
        if self.export_dir and self.trainer.is_global_zero:
            path = save_pretrained(self.model, Path(self.export_dir))
            log.info("exported %s to %s", type(self.model).__name__, path)


class TokenizerModule(CTCTrainingModule):
    """Trains a :class:`SemanticVQTokenizer` with character CTC (see :class:`CTCTrainingModule` for the args)."""

    def __init__(
        self,
        tokenizer: SemanticVQTokenizer,
        optimizer: OptimizerCallable = _default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 100,
        bf16: bool = False,
        export_dir: str | None = None,
        val_batches_to_print: int = 2,
    ) -> None:
        super().__init__(tokenizer, optimizer, scheduler, warmup_steps, bf16, export_dir, val_batches_to_print)

    @property
    def tokenizer(self) -> SemanticVQTokenizer:
        return self.model
