"""``SpeechLMModule`` stage handoff and checkpoint safety: PT-1's export is PT-2's ``init_from`` (identical logits
at step 0), and ``save_hyperparameters`` holds only plain data, so a checkpoint loads with ``weights_only=True``."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer

from lightning_modules.speech_lm_module import SpeechLMModule
from moss_components.freezing import FreezeFull, NoFreeze
from moss_components.trunks import ConfigTrunk

TRUNK = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3,
         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}  # fmt: skip


def _grid(module: SpeechLMModule, length: int = 12) -> torch.Tensor:
    """``(2, L, 2)``: text, start-of-speech, speech ids, end-of-speech, text."""
    sp = module.special_ids
    g = torch.empty(2, length, 2, dtype=torch.long)
    g[..., 0], g[..., 1] = torch.randint(5, 40, (2, length)), sp.speech_pad
    g[:, 3, 0] = sp.text_start_of_speech
    g[:, 4:9, 0], g[:, 4:9, 1] = sp.text_modality_pad, torch.randint(0, sp.num_speech_codes, (2, 5))
    g[:, 9, 0], g[:, 9, 1] = sp.text_modality_pad, sp.speech_end_of_speech
    return g


def _pt1_module(seed: int = 0) -> SpeechLMModule:
    trunk = ConfigTrunk(TRUNK, seed=seed, tokenizer="char")
    return SpeechLMModule(trunk, num_speech_codes=32, num_shared_layers=2, freezing=FreezeFull())


def test_pt1_export_is_pt2_init_from_with_identical_logits(tmp_path):
    pt1 = _pt1_module()
    with torch.no_grad():  # move the speech parts away from their init so the handoff is visible
        for p in pt1.model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    pt1.export(tmp_path / "pt1")
    # PT-2 builds a fresh model from another random trunk, then loads PT-1's weights
    pt2 = SpeechLMModule(ConfigTrunk(TRUNK, seed=1, tokenizer="char"), 32, 2, freezing=NoFreeze(),
                         init_from=str(tmp_path / "pt1"))  # fmt: skip
    grid = _grid(pt1)
    with torch.no_grad():
        a, b = pt1.eval().model(input_ids=grid), pt2.eval().model(input_ids=grid)
    assert torch.equal(a.text_logits, b.text_logits) and torch.equal(a.speech_logits, b.speech_logits)
    assert all(f.suffix in (".safetensors", ".json") or f.name.startswith(("tokenizer", "special", "chat"))
               for f in (tmp_path / "pt1").iterdir()), sorted(f.name for f in (tmp_path / "pt1").iterdir())  # fmt: skip


def test_system_prompts_are_set_exported_and_inherited(tmp_path):
    from moss_components.data.sft import SYSTEM_PROMPTS

    assert _pt1_module().model.system_prompts is None
    sft = SpeechLMModule(ConfigTrunk(TRUNK, tokenizer="char"), 32, 2, system_prompts={"s2t": "s2t"})
    assert sft.model.system_prompts == {**SYSTEM_PROMPTS, "s2t": "s2t"}
    sft.export(tmp_path / "sft")
    again = SpeechLMModule(ConfigTrunk(TRUNK, tokenizer="char"), 32, 2, init_from=str(tmp_path / "sft"))
    assert again.model.system_prompts == sft.model.system_prompts, "a stage keeps the prompts of its init_from"


def test_checkpoint_loads_with_weights_only(tmp_path):
    module = _pt1_module()
    trainer = Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    ckpt = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["num_speech_codes"] == 32
    restored = SpeechLMModule.load_from_checkpoint(tmp_path / "x.ckpt", weights_only=True,
                                                   trunk=ConfigTrunk(TRUNK, seed=5, tokenizer="char"))  # fmt: skip
    assert torch.equal(restored.model.speech_head.weight, module.model.speech_head.weight)


def test_a_channel_without_labels_logs_no_training_loss():
    module = _pt1_module()
    logged = []
    module.log = lambda name, value, **kwargs: logged.append(name)
    grid = _grid(module)
    text_only = grid.clone()
    text_only[..., 1] = -100  # a text-replay batch: nothing to predict on the speech channel
    for split, labels, expected in [
        ("train", grid, {"train/loss", "train/text_loss", "train/speech_loss"}),
        ("train", text_only, {"train/loss", "train/text_loss"}),
        ("val", text_only, {"val/loss", "val/text_loss", "val/speech_loss"}),  # ranks must log alike when syncing
    ]:
        logged.clear()
        batch = {"input_ids": grid, "labels": labels}
        module._log_losses(split, module(batch), batch)
        assert set(logged) == expected, (split, logged)
