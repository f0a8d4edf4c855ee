"""Single-codebook quantizers: cosine VQ with EMA and dead-code restarts (default), and FSQ."""

from moss_components.quantizers.base import Quantizer, QuantizerOutput
from moss_components.quantizers.cosine_vq import CosineVQ
from moss_components.quantizers.fsq import FSQ

__all__ = ["FSQ", "CosineVQ", "Quantizer", "QuantizerOutput"]
