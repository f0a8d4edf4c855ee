import pytest
import torch

from lightning_modules.data import SpeechLMDataModule
from moss_components.data.grid import IGNORE_INDEX, check_grid, parse_grid, speech_positions

MIXES = {
    "pt1": dict(tasks={"speech": 1, "interleaved": 1, "asr": 1, "tts": 1}),
    "pt2": dict(tasks={"speech": 1, "interleaved": 1, "asr": 1, "tts": 1}, text_replay_ratio=0.3),
    "sft": dict(tasks={"sft": 1}, sft_modes={"s2s": 1, "s2t": 1, "t2s": 1, "t2t": 1, "s2s_guided": 1}),
}


@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("packing", [False, True])
def test_batches_for_every_stage(micro_corpus, micro_cache, mix, packing):
    dm = SpeechLMDataModule(
        str(micro_corpus),
        str(micro_cache),
        max_length=256,
        batch_size=4,
        packing=packing,
        samples_per_epoch=8,
        val_samples=4,
        **MIXES[mix],
    )
    dm.setup("fit")
    sp = dm.special_ids
    # the char tokenizer has its own speech tokens: the ids are the ones SpeechLMModule derives from it
    assert sp.num_speech_codes == 32
    assert dm.tokenizer.convert_ids_to_tokens(sp.text_start_of_speech) == "<|speech_start|>"
    batch = next(iter(dm.train_dataloader()))
    B, L, two = batch["input_ids"].shape
    assert two == 2 and B == 4 and batch["labels"].shape == (B, L, 2) and batch["position_ids"].shape == (B, L)
    if packing:
        assert L == 256 and "attention_mask" not in batch and batch["cu_seqlens"][-1] == B * L
    else:
        assert batch["attention_mask"].shape == (B, L)
    for b in range(B):
        check_grid(batch["input_ids"][b], batch["labels"][b], sp)
    assert (batch["labels"] != IGNORE_INDEX).any()
    val = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(val["input_ids"], again["input_ids"]), "validation draws are fixed"


def test_sft_uses_the_cached_ids_and_texts(micro_corpus, micro_cache):
    dm = SpeechLMDataModule(
        str(micro_corpus),
        str(micro_cache),
        tasks={"sft": 1},
        sft_modes={"s2s_guided": 1},
        samples_per_epoch=4,
        batch_size=1,
    )
    dm.setup("fit")
    ds = dm.dataset("train")
    inp, lab = ds[0]
    parts = parse_grid(inp, dm.special_ids)
    speech = [v for k, v in parts if k == "speech"]
    pairs = {
        (tuple(ds.qa_cache[f"{r['id']}:question"].tolist()), tuple(ds.qa_cache[f"{r['id']}:answer"].tolist()))
        for r in ds.qa
    }
    assert (tuple(speech[0].tolist()), tuple(speech[1].tolist())) in pairs
    text = dm.tokenizer.decode(torch.cat([v for k, v in parts if k == "text"]).tolist())
    assert "the answer is" in text and "answer in text, then in speech" in text
    assert lab[~speech_positions(inp, dm.special_ids), 1].eq(IGNORE_INDEX).all()


def test_bad_task_names_are_rejected(micro_corpus, micro_cache):
    with pytest.raises(ValueError, match="expected positive weights"):
        SpeechLMDataModule(str(micro_corpus), str(micro_cache), tasks={"speak": 1})
    with pytest.raises(ValueError, match="sft_modes"):
        SpeechLMDataModule(str(micro_corpus), str(micro_cache), tasks={"sft": 1}, sft_modes={"s2x": 1})
