"""Acoustic features (log-mel) shared by tokenizers, decoders and vocoders, and their training-time augmentation."""

from moss_components.features.log_mel import LogMel
from moss_components.features.spec_augment import SpecAugment, mel_band_centers

__all__ = ["LogMel", "SpecAugment", "mel_band_centers"]
