"""``SpeechLMModule``: the LightningModule of PT-1, PT-2 and SFT.

The three stages run the same training step on a :class:`LayerSplitSpeechLM`; what makes a stage is its config:
the freezing policy (PT-1 freezes the whole pretrained LLM), the data mix of the DataModule (speech-only,
interleaved, ASR/TTS, text replay, dialogues) and the learning-rate schedule. Each stage starts from the previous
one's weights through ``init_from``: the directory a stage exports at the end of fit, in the released MOSS-Speech
checkpoint layout (``config.json`` + safetensors + the text tokenizer), which ``load_moss_speech`` also reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable

from moss_components.checkpoints import load_moss_speech, load_weights, save_moss_speech
from moss_components.data.sft import resolve_system_prompts
from moss_components.freezing import FreezingPolicy, NoFreeze
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.loss import IGNORE_INDEX
from moss_components.model.speech_embedding_init import SpeechEmbeddingInit
from moss_components.optim import warmup_cosine_schedule
from moss_components.routers import SpeechLMRouter
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import TextTrunkSource

log = logging.getLogger(__name__)

_MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                 "max_length_k")  # fmt: skip


def _default_optimizer(params):
    # The paper's PT-1 optimizer: AdamW, lr 4e-4, weight decay 0.1.
    return torch.optim.AdamW(params, lr=4e-4, weight_decay=0.1, betas=(0.9, 0.95))


class SpeechLMModule(LightningModule):
    """Train a layer-split speech LM on ``(B, L, 2)`` grids.

    Args:
        trunk: where the pretrained text LLM (and its tokenizer) comes from: a config, a local HF dir, or GGUF.
        num_speech_codes: the speech tokenizer's codebook size C; the speech vocabulary is C + 2 (end, pad).
        num_shared_layers: k, the layers shared by both modalities; the top N - k layers are split.
        router: how positions flow through the branches (default: MOSS dual-branch).
        freezing: which parameters learn at each step (PT-1: ``FreezeFull``; default: ``NoFreeze``).
        optimizer: a callable taking the parameters (LightningCLI ``OptimizerCallable``); all parameters are given,
            frozen ones carry no state.
        warmup_steps, min_lr_ratio: the warm-up + cosine schedule over the run's optimizer steps.
        init_from: weights of a previous stage to start from (PT-2 from PT-1, SFT from PT-2): an exported
            directory, or a ``.safetensors`` file of this model's state dict.
        speech_embedding_init: how the new speech embedding table starts when there is no ``init_from`` (PT-1):
            e.g. ``CTCAlignedInit`` (each id from its characters as the speech tokenizer reads them); None: random.
        system_prompts: SFT mode -> system prompt, over the defaults of ``data/sft.py``; saved with the model, and the
            DataModule builds its dialogues with them (MossSpeechCLI links them). None: those of ``init_from``, else
            the defaults.
        export_dir: where ``on_fit_end`` writes the trained model (MOSS-Speech layout + tokenizer); None = nowhere.
        start_of_speech_token, modality_pad_token: the tokenizer's tokens for the grid's text-side special ids.
        fused_loss: compute the head losses with the fused linear cross-entropy kernel (no full logits).
    """

    def __init__(
        self,
        trunk: TextTrunkSource,
        num_speech_codes: int,
        num_shared_layers: int,
        router: SpeechLMRouter | None = None,
        freezing: FreezingPolicy | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.1,
        init_from: str | None = None,
        speech_embedding_init: SpeechEmbeddingInit | None = None,
        start_of_speech_token: str = "<|speech_start|>",
        modality_pad_token: str = "<|speech_pad|>",
        fused_loss: bool = False,
        system_prompts: dict[str, str] | None = None,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["trunk", "router", "freezing", "optimizer", "speech_embedding_init"])
        self.trunk = trunk
        self.tokenizer = trunk.load_tokenizer()
        self.special_ids = SpeechSpecialIds.from_tokenizer(
            self.tokenizer, num_speech_codes, start_of_speech_token, modality_pad_token
        )
        self.model = LayerSplitSpeechLM.from_text_model(
            trunk.load(),
            num_shared_layers=num_shared_layers,
            speech_vocab_size=self.special_ids.speech_vocab_size,
            special_ids=self.special_ids,
            router=router,
            fused_loss=fused_loss,
        )
        if init_from:
            if Path(init_from).is_dir():
                previous = load_moss_speech(init_from)
                self.model.load_state_dict(previous.state_dict())
                self.model.system_prompts = previous.system_prompts
            else:
                load_weights(self.model, init_from)
            log.info("initialized from %s", init_from)
        elif speech_embedding_init is not None:
            speech_embedding_init.apply(self.model, self.tokenizer)
        if system_prompts is not None:
            self.model.system_prompts = resolve_system_prompts(system_prompts)
        self.export_dir = export_dir
        # trunks load in eval mode; Lightning keeps each module's mode, so switch to training explicitly
        self.model.train()
        self.freezing = freezing if freezing is not None else NoFreeze()
        self.freezing.apply(self.model, 0)
        self.optimizer_factory = optimizer
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio

    def forward(self, batch: dict) -> object:
        return self.model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch}, labels=batch.get("labels"))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.freezing.apply(self.model, self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch)
        self._log_losses("train", out, batch)
        return out.loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._log_losses("val", self(batch), batch)

    def _log_losses(self, split: str, out, batch: dict) -> None:
        n = int(batch["input_ids"].shape[0])
        self.log(f"{split}/loss", out.loss, prog_bar=True, batch_size=n, sync_dist=split == "val")
        labels = batch.get("labels")
        for channel, name in enumerate(("text_loss", "speech_loss")):
            # A training batch without labels on a channel (all text replay, say) has no loss there: its 0 is not
            # logged. Validation logs every batch, so that ranks stay in step when syncing.
            if split == "train" and labels is not None and not (labels[..., channel] != IGNORE_INDEX).any():
                continue
            self.log(f"{split}/{name}", getattr(out, name), batch_size=n, sync_dist=split == "val")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        total = self.trainer.estimated_stepping_batches
        return warmup_cosine_schedule(optimizer, total, self.warmup_steps, self.min_lr_ratio)

    def on_fit_end(self) -> None:
        if not self.export_dir:
            return
        # every rank takes part: under FSDP this gathers the full weights onto rank 0
        state = self.trainer.strategy.lightning_module_state_dict()
        if self.trainer.is_global_zero:
            weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
            self.export(self.export_dir, weights)

    def export(self, directory: str, state_dict: dict | None = None) -> None:
        """Write the model in the released MOSS-Speech layout plus the text tokenizer (the next stage's
        ``init_from``; ``load_moss_speech`` reads it back). ``state_dict`` overrides the module's own weights."""
        save_moss_speech(self.model, directory, state_dict=state_dict)
        self.tokenizer.save_pretrained(directory)
        log.info("exported the speech LM to %s", directory)
