"""Vocoders (log-mel -> waveform): the ``Vocoder`` interface, a trainable Vocos-style iSTFT network and a
Griffin-Lim baseline."""

from moss_components.tokenizers.pretrained import load_pretrained
from moss_components.vocoders.base import Vocoder
from moss_components.vocoders.griffin_lim import GriffinLimVocoder
from moss_components.vocoders.losses import MelL1Loss, MultiResolutionSTFTLoss
from moss_components.vocoders.vocos import ConvNeXtBlock, VocosVocoder


def load_vocoder(path: str) -> Vocoder:
    """Rebuild a vocoder saved with ``save_pretrained(vocoder, path)`` (``config.yaml`` + ``model.safetensors``)."""
    return load_pretrained(path, Vocoder)


__all__ = [
    "ConvNeXtBlock",
    "GriffinLimVocoder",
    "MelL1Loss",
    "MultiResolutionSTFTLoss",
    "Vocoder",
    "VocosVocoder",
    "load_vocoder",
]
