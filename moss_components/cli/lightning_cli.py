"""LightningCLI for the training stages: ``moss-speech fit -c configs/<stage>/<preset>.yaml``."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI


class MossSpeechCLI(LightningCLI):
    """LightningCLI whose model and data are any LightningModule / LightningDataModule named by ``class_path``."""


def run_lightning_cli(argv: list[str]) -> MossSpeechCLI:
    return MossSpeechCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        save_config_kwargs={"overwrite": True},
    )
