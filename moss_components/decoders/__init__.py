"""Speech decoders (ids -> log-mel): the ``SpeechDecoder`` interface and the flow-matching decoder."""

from moss_components.decoders.base import SpeechDecoder
from moss_components.decoders.flow_matching import DecoderStream, FlowMatchingDecoder, frame_noise
from moss_components.tokenizers.pretrained import load_pretrained


def load_decoder(path: str) -> SpeechDecoder:
    """Rebuild a decoder saved with ``save_pretrained(decoder, path)`` (``config.yaml`` + ``model.safetensors``)."""
    return load_pretrained(path, SpeechDecoder)


__all__ = ["DecoderStream", "FlowMatchingDecoder", "SpeechDecoder", "frame_noise", "load_decoder"]
