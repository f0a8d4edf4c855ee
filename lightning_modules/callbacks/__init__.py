"""Callbacks and Trainer plugins shared by the stages (give them under ``trainer.callbacks`` / ``trainer.plugins``)."""

from lightning_modules.callbacks.atomic_checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from lightning_modules.callbacks.cpu_time_budget import CPUTimeBudget
from lightning_modules.callbacks.safetensors_export import SafetensorsExport

__all__ = ["AtomicCheckpointIO", "CPUTimeBudget", "SafetensorsExport", "atomic_torch_save"]
