import json
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch import LightningModule, Trainer

from lightning_modules.data import AudioTextDataModule, AudioTextDataset
from lightning_modules.data.skip_report import SkippedItemsReport
from moss_components.data import audio_io


def test_batches_have_the_contract_shapes(micro_corpus):
    dm = AudioTextDataModule(str(micro_corpus), batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"wav", "wav_lengths", "text", "id"}
    assert batch["wav"].dtype == torch.float32 and batch["wav"].shape[0] == 4
    assert batch["wav_lengths"].dtype == torch.long and int(batch["wav_lengths"].max()) == batch["wav"].shape[1]
    for row, n in enumerate(batch["wav_lengths"]):
        assert torch.all(batch["wav"][row, n:] == 0)
    assert all(isinstance(t, str) and t for t in batch["text"])


def test_random_crops(micro_corpus):
    dm = AudioTextDataModule(str(micro_corpus), batch_size=8, crop_seconds=0.5, shuffle=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["wav"].shape[1] == 8000 and torch.all(batch["wav_lengths"] <= 8000)


def test_speed_perturbation_changes_length_by_one_over_speed_in_training_only(micro_corpus):
    plain = AudioTextDataModule(str(micro_corpus), batch_size=4, shuffle=False)
    slow = AudioTextDataModule(str(micro_corpus), batch_size=4, shuffle=False, speed_perturb=(0.5, 0.5))
    for dm in (plain, slow):
        dm.setup("fit")
    a, b = plain.datasets["train"][0]["wav"], slow.datasets["train"][0]["wav"]
    assert abs(b.numel() - 2 * a.numel()) <= 2
    assert slow.datasets["validation"].speed_perturb is None
    with pytest.raises(ValueError, match="speed_perturb \\(1.1, 0.9\\) is not a range"):
        AudioTextDataModule(str(micro_corpus), speed_perturb=(1.1, 0.9)).setup("fit")


def test_bucketed_batches_pad_less_and_short_first_epoch_needs_them(micro_corpus):
    dm = AudioTextDataModule(str(micro_corpus), batch_size=4, bucket_batches=100, short_first_epoch=True)
    dm.setup("fit")
    durations = dm.datasets["train"].durations()
    recs = [json.loads(line) for line in open(micro_corpus / "read" / "train.jsonl")]
    assert durations[0] == pytest.approx(sf.info(str(micro_corpus / recs[0]["audio"])).duration, abs=1e-3)
    batches = list(dm.train_dataloader())
    assert sum(len(b["id"]) for b in batches) == len(durations)
    longest = [int(b["wav_lengths"].max()) for b in batches]
    assert longest == sorted(longest)  # first epoch: shortest clips first
    fill = sum(int(b["wav_lengths"].sum()) for b in batches) / sum(b["wav"].numel() for b in batches)
    assert fill > 0.9
    with pytest.raises(ValueError, match="short_first_epoch=True needs bucket_batches"):
        AudioTextDataModule(str(micro_corpus), short_first_epoch=True)


def test_durations_fall_back_to_the_file_header_without_a_manifest_duration(micro_corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(micro_corpus, root)
    manifest = root / "read" / "train.jsonl"
    recs = [json.loads(line) for line in manifest.read_text().splitlines()]
    sf.write(root / recs[0]["audio"], np.zeros(12345, dtype=np.float32), 16000)  # 0.7716 s, unlike the manifest
    manifest.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "duration"}) + "\n" for r in recs))
    durations = AudioTextDataset(manifest).durations()
    assert durations[0] == pytest.approx(12345 / 16000)
    assert durations[1] == pytest.approx(sf.info(str(root / recs[1]["audio"])).duration)


def _corrupt_copy(micro_corpus, tmp_path):
    """A copy of the micro corpus with one unreadable, one NaN, one silent, one 8 kHz stereo item, one empty text."""
    root = tmp_path / "bad"
    shutil.copytree(micro_corpus, root)
    recs = [json.loads(line) for line in open(root / "read" / "train.jsonl")]
    (root / recs[0]["audio"]).write_bytes((root / recs[0]["audio"]).read_bytes()[:30])  # truncated header
    sf.write(root / recs[1]["audio"], np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(root / recs[2]["audio"], np.zeros(1600, dtype=np.float32), 16000)
    stereo = np.stack([np.sin(np.arange(8000) / 5.0)] * 2, axis=1) * 0.3
    sf.write(root / recs[3]["audio"], stereo, 8000)
    recs[4]["text"] = ""
    with open(root / "read" / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    return root, recs


class _Probe(LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def training_step(self, batch, _):
        self.seen += batch["id"]
        return (self.w * batch["wav"].mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_unusable_items_are_skipped_counted_and_reported(micro_corpus, tmp_path, caplog):
    root, recs = _corrupt_copy(micro_corpus, tmp_path)
    dm = AudioTextDataModule(str(root), batch_size=4, num_workers=2)
    model = _Probe()
    trainer = Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        enable_model_summary=False,
    )
    with caplog.at_level(logging.WARNING):
        trainer.fit(model, datamodule=dm)  # two worker processes: counts must cross processes
    skipped = {r["id"] for r in recs[:3]} | {recs[4]["id"]}
    assert set(model.seen) == {r["id"] for r in recs} - skipped  # the stereo 8 kHz item was converted, not skipped
    report = next(cb for cb in trainer.callbacks if isinstance(cb, SkippedItemsReport))
    stage, epoch, summary = report.history[0]
    assert (stage, epoch) == ("train", 0)
    assert summary == {"unreadable": 1, "nan or inf": 1, "silent": 1, "empty text": 1}
    assert "skipped 4 of" in caplog.text


def test_resampling_and_downmix_warn_once(micro_corpus, tmp_path):
    root, recs = _corrupt_copy(micro_corpus, tmp_path)
    audio_io._warned.clear()
    dm = AudioTextDataModule(str(root), batch_size=4)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="8000 Hz -> 16000 Hz"):
        item = dm.datasets["train"][3]
    assert item["wav"].ndim == 1 and abs(item["wav"].numel() - 16000) <= 1


def test_revoiced_training_items_keep_their_transcripts_and_validation_stays_as_recorded(micro_corpus, espeak_calls):
    dm = AudioTextDataModule(str(micro_corpus), batch_size=4, shuffle=False, revoice=1.0, revoice_voices="tiny")
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["validation"]
    recorded = AudioTextDataset(train.manifest)
    for i in range(4):
        item, file_item = train[i], recorded[i]
        assert item["text"] == file_item["text"] and item["id"] == file_item["id"]
        assert item["wav"].shape != file_item["wav"].shape or not torch.equal(item["wav"], file_item["wav"])
    assert [t.rstrip(".?") for t, _ in espeak_calls] == [recorded.records[i]["text"] for i in range(4)]
    assert val.revoice == 0.0 and val.revoicer is None
    for _ in range(2):
        torch.manual_seed(0)
        train[0]
    assert espeak_calls[-1] == espeak_calls[-2]  # the voice is drawn from torch's RNG: seed_everything fixes it
    with pytest.raises(ValueError, match="revoice 1.5: expected a probability in"):
        AudioTextDataModule(str(micro_corpus), revoice=1.5).setup("fit")
