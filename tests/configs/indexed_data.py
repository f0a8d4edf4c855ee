"""A resumable, rank-independent variant of ``SpeechLMDataModule`` for the DDP and resume tests.

``SpeechLMDataModule`` draws each training document from the process' torch RNG, so (1) two DDP ranks seeded alike
draw the *same* documents, and (2) a resumed run cannot replay the documents after the checkpoint. Here document
``i`` of epoch ``e`` is drawn from ``random.Random((seed, e, i))``; the order is a ``DistributedSampler`` permutation of
``(seed, e)`` dealt to ``world_size`` ranks (one rank in a single process, so a global batch holds the same
documents whatever the number of processes); and the train loader is stateful in Lightning's sense
(``state_dict`` / ``load_state_dict``): it skips the batches that the checkpointed run had already trained on.

Proposed for ``lightning_modules/data/speech_lm.py`` (the data engineer's file); until then the tests use it.
"""

from __future__ import annotations

import random

from torch.utils.data import DataLoader, DistributedSampler

from lightning_modules.data import SpeechLMDataModule, SpeechLMDataset


class IndexedDataset(SpeechLMDataset):
    """Training documents that depend only on ``(seed, epoch, index)``."""

    epoch = 0
    skip_batches = 0

    def _rng(self, i: int) -> random.Random:
        if self.fixed:
            return super()._rng(i)
        return random.Random(hash((self.dm.hparams.seed, self.epoch, i)))


class ResumableLoader(DataLoader):
    """A ``DataLoader`` that tells Lightning its position: ``{"epoch", "batches"}`` trained so far this epoch."""

    def __iter__(self):
        ds = self.dataset
        if ds.dm.trainer is not None:
            ds.epoch = ds.dm.trainer.current_epoch
        it = super().__iter__()
        skip, ds.skip_batches = ds.skip_batches, 0
        for _ in range(skip):  # cheap: documents come from the id cache
            next(it)
        return it

    def state_dict(self) -> dict:
        # the fetcher has prefetched a batch, so count what the loop trained on, not what was drawn
        trainer = self.dataset.dm.trainer
        return {"epoch": trainer.current_epoch, "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict) -> None:
        self.dataset.skip_batches = int(state["batches"])  # the epoch comes back with the trainer's loop state


class IndexedSpeechLMDataModule(SpeechLMDataModule):
    """``SpeechLMDataModule`` with :class:`IndexedDataset` training documents and a :class:`ResumableLoader`."""

    def dataset(self, split: str) -> SpeechLMDataset:
        ds = super().dataset(split)
        if split == "train" and not isinstance(ds, IndexedDataset):
            ds.__class__ = IndexedDataset
        return ds

    def train_dataloader(self) -> DataLoader:
        _ = self.special_ids
        ds = self.dataset("train")
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        # Lightning leaves a DistributedSampler in place and calls its set_epoch each epoch
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.hparams.seed)
        return ResumableLoader(ds, batch_size=self.hparams.batch_size, sampler=sampler, collate_fn=self.collate)
