"""LightningCLI for the training stages: ``moss-speech fit -c configs/<stage>/<preset>.yaml``.

The model and the data module share three things, linked once the model is built (``apply_on="instantiate"``) so
that a config states them once:

- ``model.special_ids -> data.special_ids``: the grid's special ids come from the model's text tokenizer
  (``SpeechLMModule``); models without them (``TextLMModule``) leave the data module's own default;
- ``model.tokenizer -> data.text_tokenizer``: the data module tokenizes with the trunk's tokenizer (a GGUF trunk has
  no tokenizer directory to name); a model without one leaves the built-in character tokenizer;
- ``model.model.system_prompts -> data.system_prompts``: SFT dialogues are built with the system prompts that are
  saved with the model (``SpeechLMModule(system_prompts=...)``), so evaluation and chat prompt it the same way.

Links to a data module that lacks the target argument (``AudioTextDataModule`` of the tokenizer / decoder stages)
are left out for that run; a value given in YAML for a linked argument is replaced by the model's. Before ``fit``
the speech-id cache's codebook is checked against the model's ``num_speech_codes``, so a cache with more codes than
the speech vocabulary fails with both numbers instead of an index error mid-step.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

__all__ = ["MossSpeechCLI", "check_speech_codebook", "run_lightning_cli"]


def _model_special_ids(model):
    return getattr(model, "special_ids", None)


def _model_system_prompts(model):
    return getattr(getattr(model, "model", None), "system_prompts", None)


def _model_tokenizer(model):
    from transformers import PreTrainedTokenizerBase

    # only a text tokenizer: a speech tokenizer (TokenizerModule, DecoderModule) would be pickled into hparams.yaml
    tokenizer = getattr(model, "tokenizer", None)
    return tokenizer if isinstance(tokenizer, PreTrainedTokenizerBase) else None


def check_speech_codebook(model, datamodule) -> None:
    """Raise when the data's speech-id cache (``read/`` or ``qa/`` train index) holds more codes than the model's
    speech vocabulary has room for."""
    special_ids = getattr(model, "special_ids", None)
    hparams = getattr(datamodule, "hparams", {})
    cache_dir, corpus_dir = hparams.get("speech_cache_dir"), hparams.get("corpus_dir")
    if special_ids is None or not cache_dir or not corpus_dir:
        return
    for sub in ("read", "qa"):
        index = Path(cache_dir) / sub / "train.index.json"
        if index.is_file():
            codebook = int(json.loads(index.read_text())["codebook_size"])
            if codebook > special_ids.num_speech_codes:  # codes >= num_speech_codes would read as end/pad ids
                raise ValueError(
                    f"the speech-id cache {index} has codebook_size {codebook}, but the model was built with "
                    f"num_speech_codes={special_ids.num_speech_codes}; set model.init_args.num_speech_codes={codebook}"
                )


class MossSpeechCLI(LightningCLI):
    """LightningCLI whose model and data are any LightningModule / LightningDataModule named by ``class_path``."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("model", "data.init_args.special_ids", _model_special_ids, apply_on="instantiate")
        parser.link_arguments("model", "data.init_args.text_tokenizer", _model_tokenizer, apply_on="instantiate")
        parser.link_arguments("model", "data.init_args.system_prompts", _model_system_prompts, apply_on="instantiate")

    def before_fit(self) -> None:
        check_speech_codebook(self.model, self.datamodule)


def run_lightning_cli(argv: list[str] | None) -> MossSpeechCLI:
    """Run LightningCLI on ``argv`` (``fit -c CONFIG ...``); None reads the command line."""
    return MossSpeechCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
    )
