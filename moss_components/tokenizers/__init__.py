"""Speech tokenizers: the ``SpeechTokenizer`` interface, MOSS-Speech's semantic single-codebook tokenizer, and
wrappers over transformers' neural codecs (Mimi, EnCodec, DAC).

Names are imported on first use (PEP 562), so that low-level modules (quantizers, decoders) can use
``moss_components.tokenizers.pretrained`` without importing every tokenizer.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "SpeechTokenizer": "moss_components.tokenizers.base",
    "TokenizerOutput": "moss_components.tokenizers.base",
    "SemanticVQTokenizer": "moss_components.tokenizers.semantic_vq",
    "TokenizerStream": "moss_components.tokenizers.semantic_vq",
    "CodecTokenizer": "moss_components.tokenizers.codecs",
    "MimiTokenizer": "moss_components.tokenizers.codecs",
    "EncodecTokenizer": "moss_components.tokenizers.codecs",
    "DacTokenizer": "moss_components.tokenizers.codecs",
    "load_pretrained": "moss_components.tokenizers.pretrained",
    "save_pretrained": "moss_components.tokenizers.pretrained",
}


def load_speech_tokenizer(path):
    """Rebuild a tokenizer saved with ``save_pretrained(tok, path)`` (``config.yaml`` + ``model.safetensors``)."""
    from moss_components.tokenizers.base import SpeechTokenizer
    from moss_components.tokenizers.pretrained import load_pretrained

    return load_pretrained(path, SpeechTokenizer)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moss_components.tokenizers' has no attribute {name!r}")


__all__ = [*_LAZY, "load_speech_tokenizer"]
