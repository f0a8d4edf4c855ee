"""``TextLMModule`` hands its weights to PT-1 as a Hugging Face directory: ``PretrainedTrunk`` loads the export and
gives the same logits, and the split model built on it keeps those text logits (the PT-1 trunk)."""

from __future__ import annotations

import torch

from lightning_modules.callbacks import SafetensorsExport
from lightning_modules.speech_lm_module import SpeechLMModule
from lightning_modules.text_lm_module import TextLMModule
from moss_components.trunks import ConfigTrunk, PretrainedTrunk

TRUNK = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip


class _Trainer:
    """The two attributes ``SafetensorsExport`` reads, without a fit."""

    is_global_zero, interrupted = True, False

    class strategy:  # noqa: N801
        @staticmethod
        def barrier(name=None):
            pass


def test_export_is_a_pretrained_trunk_with_identical_logits(tmp_path):
    module = TextLMModule(ConfigTrunk(TRUNK, seed=0, tokenizer="char")).eval()
    SafetensorsExport(str(tmp_path / "text")).on_fit_end(_Trainer(), module)  # the callback calls export(path)
    assert (tmp_path / "text" / "model.safetensors").is_file() and (tmp_path / "text" / "config.json").is_file()

    ids = module.tokenizer("the answer is paris.", return_tensors="pt")["input_ids"]
    trunk = PretrainedTrunk(tmp_path / "text")
    with torch.no_grad():
        base = module.model(input_ids=ids).logits
        assert torch.equal(trunk.load()(input_ids=ids).logits, base)
        split = SpeechLMModule(trunk, num_speech_codes=16, num_shared_layers=2).model
        assert torch.allclose(split(input_ids=ids).text_logits, base, atol=1e-5)
    assert trunk.load_tokenizer().get_vocab() == module.tokenizer.get_vocab()
