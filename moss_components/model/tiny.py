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


@torch.no_grad()
def script_next_tokens(
    model,
    text_next: dict[int, int],
    speech_next: dict[int, int],
    text_after_speech: int,
    speech_after_start: int,
) -> None:
    """Make a real split model's greedy next token a table lookup on the last input token (tests, demos).

    Pre-norm layers add O(1) updates to the residual stream, so with the embeddings scaled up the final hidden state
    points along the last token's embedding; head rows built from those directions then pick the next token.
    ``text_next[t]``/``speech_next[c]``: the token after text token t / code c; after end-of-speech the text head says
    ``text_after_speech``, after start-of-speech the speech head says ``speech_after_start``.
    """
    ids = model.special_ids
    model.embed_tokens.weight.mul_(300.0)
    model.speech_embed.weight.mul_(300.0)
    text_dir = torch.nn.functional.normalize(model.embed_tokens.weight, dim=-1)
    speech_dir = torch.nn.functional.normalize(model.speech_embed.weight, dim=-1)
    model.text_head.weight.zero_()
    model.speech_head.weight.zero_()
    for t, nxt in text_next.items():
        model.text_head.weight[nxt] += 10 * text_dir[t]
    model.text_head.weight[text_after_speech] += 10 * speech_dir[ids.speech_end_of_speech]
    for c, nxt in speech_next.items():
        model.speech_head.weight[nxt] += 10 * speech_dir[c]
    model.speech_head.weight[speech_after_start] += 10 * text_dir[ids.text_start_of_speech]
