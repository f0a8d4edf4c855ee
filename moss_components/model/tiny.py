"""Tiny random text LLMs and special ids for tests, tutorials and smoke runs (no download, a few ms to build)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from moss_components.special_ids import SpeechSpecialIds

__all__ = [
    "TINY_FAMILIES",
    "TINY_SPEECH_CODES",
    "TINY_SPEECH_VOCAB",
    "TINY_TEXT_VOCAB",
    "tiny_config",
    "tiny_special_ids",
    "tiny_text_model",
]

TINY_FAMILIES = ("qwen3", "llama", "qwen2", "mistral")

# text vocabulary 98 + start-of-speech + modality pad; 30 speech codes + end-of-speech + pad
TINY_TEXT_VOCAB = 100
TINY_SPEECH_CODES = 30
TINY_SPEECH_VOCAB = TINY_SPEECH_CODES + 2


def tiny_special_ids() -> SpeechSpecialIds:
    """Ids matching :func:`tiny_text_model`: text 98 = start-of-speech, 99 = modality pad, EOS 1; speech 30 = end,
    31 = pad (speech vocabulary 32)."""
    return SpeechSpecialIds.for_vocab(TINY_TEXT_VOCAB - 2, TINY_SPEECH_CODES, text_eos=(1,))


def tiny_config(
    family: str = "qwen3", num_layers: int = 4, hidden_size: int = 32, attn_implementation: str = "sdpa", **overrides
) -> PretrainedConfig:
    """A config of ``family`` (qwen3 | llama | qwen2 | mistral) with 4 query / 2 KV heads of size 8."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"family '{family}' is not one of {TINY_FAMILIES}")
    kwargs = dict(
        vocab_size=TINY_TEXT_VOCAB,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    if family == "mistral":
        kwargs["sliding_window"] = None
    kwargs.update(overrides)
    config = CONFIG_MAPPING[family](**kwargs)
    config._attn_implementation = attn_implementation
    return config


def tiny_text_model(
    family: str = "qwen3", num_layers: int = 4, seed: int = 0, attn_implementation: str = "sdpa", **overrides
) -> PreTrainedModel:
    """A random ``*ForCausalLM`` of ``family`` in eval mode, seeded."""
    config = tiny_config(family, num_layers, attn_implementation=attn_implementation, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)
    return model.eval()
