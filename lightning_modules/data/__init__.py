"""DataModules: waveform + transcript batches, and the (B, L, 2) grids of every LM stage."""

from lightning_modules.data.audio_text import AudioTextDataModule, AudioTextDataset, collate_audio_text
from lightning_modules.data.speech_lm import SpeechLMDataModule, SpeechLMDataset

__all__ = ["AudioTextDataModule", "AudioTextDataset", "SpeechLMDataModule", "SpeechLMDataset", "collate_audio_text"]
