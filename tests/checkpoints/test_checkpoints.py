"""Checkpoints: the released MOSS-Speech layout round-trips, loads lazily by shard; stage-handoff weights."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from moss_components.checkpoints import (
    load_moss_speech,
    load_weights,
    released_to_ours,
    save_moss_speech,
    save_weights,
)
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import TINY_SPEECH_VOCAB, tiny_special_ids, tiny_text_model
from moss_components.routers import NoSplitRouter

IDS = tiny_special_ids()


def trained_like(family="qwen3", k=2, **kw):
    model = LayerSplitSpeechLM.from_text_model(tiny_text_model(family, **kw), k, TINY_SPEECH_VOCAB, IDS)
    with torch.no_grad():  # make the speech branch differ from the text branch
        for p in model.speech_layers.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def grid():
    text = torch.randint(2, 98, (2, 10))
    speech = torch.full_like(text, IDS.speech_pad)
    text[:, 2] = IDS.text_start_of_speech
    text[:, 3:7] = IDS.text_modality_pad
    speech[:, 3:7] = torch.randint(0, 30, (2, 4))
    return torch.stack([text, speech], dim=-1)


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_round_trip_gives_identical_logits(tmp_path, family):
    model = trained_like(family)
    save_moss_speech(model, tmp_path, max_shard_size="30KB")
    loaded = load_moss_speech(tmp_path)
    x = grid()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.text_logits, b.text_logits) and torch.equal(a.speech_logits, b.speech_logits)
    assert loaded.special_ids == IDS and loaded.num_shared_layers == 2 and type(loaded.config) is type(model.config)
    assert loaded.system_prompts is None, "no prompts of its own: the library's defaults"


def test_system_prompts_travel_with_the_weights(tmp_path):
    model = trained_like()
    model.system_prompts = {"s2t": "s2t", "t2t": "t2t"}
    save_moss_speech(model, tmp_path)
    assert load_moss_speech(tmp_path).system_prompts == {"s2t": "s2t", "t2t": "t2t"}


def test_layout_matches_the_release(tmp_path):
    save_moss_speech(trained_like(), tmp_path, max_shard_size="30KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((tmp_path / s).is_file() for s in shards)
    for key in [
        "model.embed_tokens.weight",
        "model.audio_embed.weight",
        "model.shared_block.layers.1.self_attn.q_proj.weight",
        "model.text_block.layers.0.mlp.down_proj.weight",
        "model.audio_block.layers.1.self_attn.k_norm.weight",
        "model.text_norm.weight",
        "model.audio_norm.weight",
        "text_lm_head.weight",
        "audio_lm_head.weight",
    ]:
        assert key in keys, key
    assert not any(k.startswith("model.shared_block.layers.2") for k in keys)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["num_shared_layers"], config["num_modality_layers"], config["num_hidden_layers"]) == (2, 2, 4)
    assert config["moss_speech"]["speech_vocab_size"] == TINY_SPEECH_VOCAB
    total = sum(t.numel() * t.element_size() for t in trained_like().state_dict().values() if t.dim())
    assert index["metadata"]["total_size"] == total


def test_loads_bf16_and_a_release_style_config(tmp_path):
    """A config without our block (as the release ships it): ids default to the release's; dtype on request."""
    model = trained_like()
    save_moss_speech(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    block = config.pop("moss_speech")
    config["model_type"] = "moss_speech"  # remote code in the release; the trunk is Qwen3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="speech_vocab_size=32 is too small"):
        load_moss_speech(tmp_path)  # the release's ids need a 16,385+ speech vocabulary
    config["moss_speech"] = {"special_ids": block["special_ids"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_moss_speech(tmp_path, dtype="bfloat16")
    assert loaded.speech_vocab_size == TINY_SPEECH_VOCAB  # read from the audio_embed shape
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    assert not any(p.is_meta for p in loaded.parameters()) and not loaded.rotary_emb.inv_freq.is_meta


def test_loading_reads_one_shard_at_a_time(tmp_path, monkeypatch):
    import moss_components.checkpoints as ckpt

    save_moss_speech(trained_like(), tmp_path, max_shard_size="30KB")
    open_now, peak = [0], [0]
    real = ckpt.safe_open

    class Counting:
        def __init__(self, *a, **k):
            self.inner = real(*a, **k)

        def __enter__(self):
            open_now[0] += 1
            peak[0] = max(peak[0], open_now[0])
            return self.inner.__enter__()

        def __exit__(self, *exc):
            open_now[0] -= 1
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(ckpt, "safe_open", Counting)
    built_on = []
    real_from_text = LayerSplitSpeechLM.from_text_model.__func__

    def spy(cls, model, *a, **k):
        built_on.append(model.lm_head.weight.device.type)
        return real_from_text(cls, model, *a, **k)

    monkeypatch.setattr(LayerSplitSpeechLM, "from_text_model", classmethod(spy))
    load_moss_speech(tmp_path)
    assert peak[0] == 1 and built_on == ["meta"]


def test_missing_and_unknown_keys_are_named(tmp_path):
    save_moss_speech(trained_like(), tmp_path)
    path = tmp_path / "model.safetensors"
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: v for k, v in tensors.items() if k != "audio_lm_head.weight"}, path)
    with pytest.raises(KeyError, match="speech_head.weight"):
        load_moss_speech(tmp_path)
    save_file({**tensors, "model.text_block.layers.9.mlp.up_proj.weight": torch.zeros(1)}, path)
    with pytest.raises(KeyError, match="layers.9"):
        load_moss_speech(tmp_path)
    with pytest.raises(KeyError, match="not part of the MOSS-Speech layout"):
        released_to_ours("lm_head.weight")


def test_no_split_round_trip(tmp_path):
    model = LayerSplitSpeechLM.from_text_model(tiny_text_model(), 2, TINY_SPEECH_VOCAB, IDS, router=NoSplitRouter())
    save_moss_speech(model, tmp_path)
    loaded = load_moss_speech(tmp_path)
    assert isinstance(loaded.router, NoSplitRouter) and loaded.speech_layers is None
    x = grid()
    with torch.no_grad():
        assert torch.equal(model.eval()(x).speech_logits, loaded(x).speech_logits)


def test_save_weights_round_trip_with_tied_embeddings(tmp_path):
    model = LayerSplitSpeechLM.from_text_model(
        tiny_text_model(tie_word_embeddings=True), 2, TINY_SPEECH_VOCAB, IDS
    ).eval()
    assert model.text_head.weight is model.embed_tokens.weight
    path = save_weights(model, tmp_path / "stage.safetensors")
    fresh = LayerSplitSpeechLM.from_text_model(
        tiny_text_model(tie_word_embeddings=True, seed=5), 2, TINY_SPEECH_VOCAB, IDS
    ).eval()
    load_weights(fresh, path)
    assert fresh.text_head.weight is fresh.embed_tokens.weight
    x = grid()
    with torch.no_grad():
        assert torch.equal(model(x).speech_logits, fresh(x).speech_logits)
        assert torch.equal(model(x).text_logits, fresh(x).text_logits)
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_weights(model, tmp_path / "stage.pt")
