"""Waveform + transcript batches for tokenizer and decoder/vocoder training.

Batch (a dict)::

    wav          (B, T) float32   mono in [-1, 1] at ``sample_rate`` Hz, zero-padded to the longest item
    wav_lengths  (B,)   long      valid samples per row (the padding mask is ``arange(T) < wav_lengths[:, None]``)
    text         list[str]        transcripts (of the whole utterance, also when the audio was cropped)
    id           list[str]        utterance ids

Unusable items (unreadable, NaN, silent, too short/long, empty text) are skipped, counted per reason in shared
memory, and reported at every epoch end (:mod:`lightning_modules.data.skip_report`): nothing is dropped silently.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import soundfile
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lightning_modules.data.skip_report import attach_skip_report
from moss_components.audio import resample
from moss_components.data.audio_io import SkipCounter, UnusableAudio, load_audio
from moss_components.data.length_buckets import LengthBucketBatchSampler
from moss_components.data.manifest import corpus_root, find_manifest, read_manifest, resolve_audio
from moss_components.data.revoicing import Revoicer


class AudioTextDataset(Dataset):
    """Items of one read-speech manifest: ``{"wav": (T,) float32, "text": str, "id": str}`` or ``None`` if skipped.

    Args:
        manifest: path of a JSONL manifest (see ``moss_components.data.manifest``).
        sample_rate: Hz to load at (resampled with one warning when a file differs).
        crop_seconds: crop longer clips to this many seconds (random offset when ``random_crop``, else the start);
            ``None`` keeps whole utterances (what CTC training needs).
        min_seconds / max_seconds: shorter / longer clips are skipped and counted.
        random_crop: random crop offsets (training) or the first ``crop_seconds`` (validation).
        speed_perturb: ``(low, high)``: play each clip at a speed drawn uniformly from this range (tempo and pitch
            together, Kaldi-style), a cheap way to widen the set of voices; ``None`` leaves clips as they are.
        revoicer / revoice: with probability ``revoice``, an item is spoken again by ``revoicer`` (a fresh voice
            from its pool) instead of read from its file.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        sample_rate: int = 16000,
        crop_seconds: float | None = None,
        min_seconds: float = 0.05,
        max_seconds: float | None = 30.0,
        random_crop: bool = True,
        speed_perturb: tuple[float, float] | None = None,
        revoicer: Revoicer | None = None,
        revoice: float = 0.0,
    ) -> None:
        if not 0.0 <= revoice <= 1.0 or (revoice > 0 and revoicer is None):
            raise ValueError(f"revoice {revoice}: expected a probability in [0, 1], and a revoicer when above 0")
        self.revoicer, self.revoice = revoicer, revoice
        if speed_perturb is not None and not 0 < speed_perturb[0] <= speed_perturb[1]:
            raise ValueError(f"speed_perturb {speed_perturb} is not a range (low, high) with 0 < low <= high")
        self.speed_perturb = speed_perturb
        self.manifest = Path(manifest)
        self.records = read_manifest(self.manifest, required=("id", "audio", "text"))
        if revoice > 0:
            revoicer.check_corpus(self.records, self.manifest)
        self.root = corpus_root(self.manifest)
        self.sample_rate = sample_rate
        self.crop = None if crop_seconds is None else int(round(crop_seconds * sample_rate))
        self.min_samples = max(1, int(min_seconds * sample_rate))
        self.max_samples = None if max_seconds is None else int(max_seconds * sample_rate)
        self.random_crop = random_crop
        self.skips = SkipCounter(len(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict | None:
        rec = self.records[i]
        text = str(rec["text"]).strip()
        if not text:
            self.skips.mark(i, "empty text")
            return None
        if self.revoice > 0 and float(torch.rand(())) < self.revoice:
            rng = random.Random(int(torch.randint(0, 2**62, ())))
            return self._finish(self.revoicer(text, rng, question=rec.get("kind") == "question"), text, rec)
        try:
            wav = load_audio(
                resolve_audio(self.root, rec["audio"]),
                self.sample_rate,
                min_samples=self.min_samples,
                max_samples=self.max_samples,
            )
        except UnusableAudio as err:
            self.skips.mark(i, err.reason)
            return None
        return self._finish(wav, text, rec)

    def _finish(self, wav: torch.Tensor, text: str, rec: dict) -> dict:
        if self.speed_perturb is not None:
            low, high = self.speed_perturb
            speed = low + (high - low) * float(torch.rand(()))
            # read as if recorded at speed * rate, resampled back: 1/speed times as long, pitch times speed
            wav = resample(wav, round(self.sample_rate * speed), self.sample_rate)
        if self.crop is not None and wav.numel() > self.crop:
            extra = wav.numel() - self.crop
            # torch's RNG: reseeded per worker and epoch by the DataLoader, reproducible under seed_everything.
            start = int(torch.randint(0, extra + 1, ())) if self.random_crop else 0
            wav = wav[start : start + self.crop]
        return {"wav": wav, "text": text, "id": str(rec["id"])}

    def durations(self) -> list[float]:
        """Seconds of each item before cropping and speed perturbation: the manifest's ``duration``, else the file's."""
        return [
            float(rec["duration"])
            if rec.get("duration") is not None
            else soundfile.info(str(resolve_audio(self.root, rec["audio"]))).duration
            for rec in self.records
        ]


def collate_audio_text(items: list[dict | None]) -> dict:
    """Pad a list of items (``None`` = skipped, dropped here) into the batch dict of the module docstring."""
    items = [it for it in items if it is not None]
    lengths = torch.tensor([it["wav"].numel() for it in items], dtype=torch.long)
    wav = torch.zeros(len(items), int(lengths.max()) if len(items) else 0, dtype=torch.float32)
    for row, it in enumerate(items):
        wav[row, : it["wav"].numel()] = it["wav"]
    return {"wav": wav, "wav_lengths": lengths, "text": [it["text"] for it in items], "id": [it["id"] for it in items]}


class AudioTextDataModule(LightningDataModule):
    """Read-speech batches from a corpus directory or explicit manifests.

    Args:
        manifest_dir: corpus directory; uses ``read/{train,validation,test}.jsonl`` (or ``{split}.jsonl``).
        train_manifest / val_manifest / test_manifest: explicit manifest paths (override ``manifest_dir``).
        sample_rate: Hz of the batches.
        batch_size: items per batch (before skipped items are dropped).
        crop_seconds: random crops of this length in training (``None``: whole utterances).
        val_crop_seconds: crop for validation/test (start of the clip); ``None`` keeps them whole.
        min_seconds / max_seconds: clips outside are skipped and counted.
        num_workers: DataLoader worker processes.
        shuffle: shuffle the training set (crops and order follow torch's seed: use ``seed_everything``).
        speed_perturb: ``(low, high)`` speed range for training clips (see :class:`AudioTextDataset`).
        bucket_batches: ``None`` draws training batches at random; a number draws them from length-sorted pools of
            that many batches (:class:`~moss_components.data.length_buckets.LengthBucketBatchSampler`), so that less
            of each batch is padding: 1.33-1.37x the tiny tokenizer's steps per CPU-minute over the built-in corpus.
        short_first_epoch: with ``bucket_batches``, the first epoch goes from the shortest clips to the longest
            (SortaGrad).
        revoice: the share of training items spoken again on the fly with eSpeak
            (:class:`~moss_components.data.revoicing.Revoicer`) instead of read from their files, each time in a
            voice drawn anew: every epoch hears every sentence in new voices. Validation and test stay as recorded.
        revoice_voices: the pool those voices come from, ``"tiny"`` (90 voices) or ``"wide"`` (426); training
            voices only, so unseen-voice tests stay unseen.
        random_timbres: the share of re-spoken items whose timbre is a new random eSpeak variant
            (:func:`~moss_components.data.random_variants.random_variant`) instead of one of the pool's.
    """

    def __init__(
        self,
        manifest_dir: str | None = None,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        sample_rate: int = 16000,
        batch_size: int = 16,
        crop_seconds: float | None = None,
        val_crop_seconds: float | None = None,
        min_seconds: float = 0.05,
        max_seconds: float | None = 30.0,
        num_workers: int = 0,
        shuffle: bool = True,
        speed_perturb: tuple[float, float] | None = None,
        bucket_batches: int | None = None,
        short_first_epoch: bool = False,
        revoice: float = 0.0,
        revoice_voices: str = "wide",
        random_timbres: float = 0.0,
    ) -> None:
        super().__init__()
        if short_first_epoch and bucket_batches is None:
            raise ValueError("short_first_epoch=True needs bucket_batches (the length-sorted batch sampler)")
        if manifest_dir is None and train_manifest is None:
            raise ValueError("AudioTextDataModule needs manifest_dir or train_manifest; got neither")
        self.save_hyperparameters()
        self.paths = {
            "train": train_manifest or (find_manifest(manifest_dir, "train") if manifest_dir else None),
            "validation": val_manifest or self._maybe(manifest_dir, "validation"),
            "test": test_manifest or self._maybe(manifest_dir, "test"),
        }
        self.datasets: dict[str, AudioTextDataset] = {}
        self.skip_counters: dict = {}

    @staticmethod
    def _maybe(manifest_dir: str | None, split: str) -> Path | None:
        if manifest_dir is None:
            return None
        try:
            return find_manifest(manifest_dir, split)
        except FileNotFoundError:
            return None

    def _dataset(self, split: str) -> AudioTextDataset:
        if split not in self.datasets:
            path = self.paths[split]
            if path is None:
                raise FileNotFoundError(f"no {split} manifest: pass {split} manifest path or a manifest_dir with it")
            h = self.hparams
            train = split == "train"
            self.datasets[split] = AudioTextDataset(
                path,
                sample_rate=h.sample_rate,
                crop_seconds=h.crop_seconds if train else h.val_crop_seconds,
                min_seconds=h.min_seconds,
                max_seconds=h.max_seconds,
                random_crop=train,
                speed_perturb=self.hparams.speed_perturb if train else None,
                revoicer=Revoicer(h.revoice_voices, h.sample_rate, h.random_timbres)
                if train and h.revoice > 0
                else None,
                revoice=h.revoice if train else 0.0,
            )
            self.skip_counters[split] = self.datasets[split].skips
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self._dataset("train")
        if stage in (None, "fit", "validate") and self.paths["validation"] is not None:
            self._dataset("validation")
        if stage in (None, "test") and self.paths["test"] is not None:
            self._dataset("test")
        attach_skip_report(self)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self._dataset(split)
        h = self.hparams
        return DataLoader(
            ds,
            batch_size=h.batch_size,
            shuffle=shuffle,
            num_workers=h.num_workers,
            collate_fn=collate_audio_text,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        if h.bucket_batches is None:
            return self._loader("train", h.shuffle)
        ds = self._dataset("train")
        seconds = [d if h.crop_seconds is None else min(d, h.crop_seconds) for d in ds.durations()]
        sampler = LengthBucketBatchSampler(
            seconds, h.batch_size, h.bucket_batches, shuffle=h.shuffle, short_first_epoch=h.short_first_epoch
        )
        return DataLoader(ds, batch_sampler=sampler, num_workers=h.num_workers, collate_fn=collate_audio_text)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
