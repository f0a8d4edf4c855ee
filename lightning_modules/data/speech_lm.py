"""Two-channel grids for every LM stage (PT-1, PT-2, SFT) from a corpus and its speech-id cache.

Each training sample is one document drawn at random: a task is drawn by weight (``tasks``), or text replay with
probability ``text_replay_ratio``, then the data it needs. The per-task layouts live in
``moss_components.data.pretrain_tasks`` and ``moss_components.data.sft``; batching in
``moss_components.data.packing`` (padded or packed; the batch formats are documented there).

Stage mixes, as YAML would give them::

    PT-1: tasks: {speech: 1, interleaved: 1, asr: 1, tts: 1}
    PT-2: same, text_replay_ratio: 0.2
    SFT:  tasks: {sft: 1}, sft_modes: {s2s: 1, s2t: 1, t2s: 1, t2t: 1, s2s_guided: 0.5}, packing: true

A multi-codebook cache (``(Q, T')`` per utterance, e.g. Mimi) contributes its first codebook to the grid.
Documents longer than ``max_length`` are truncated (speech-only, text) or redrawn (the others) and counted;
utterances missing from the speech cache are left out at setup with a warning that gives their number.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from moss_components.data.manifest import read_manifest
from moss_components.data.packing import collate_packed, collate_padded
from moss_components.data.pretrain_tasks import (
    alternating_modalities,
    build_asr,
    build_interleaved,
    build_speech_only,
    build_text,
    build_tts,
)
from moss_components.data.sft import SFT_MODES, build_sft_example, resolve_system_prompts
from moss_components.data.speech_cache import SpeechCache, cache_paths
from moss_components.special_ids import SpeechSpecialIds
from moss_components.text.char_tokenizer import MODALITY_PAD_TOKEN, START_OF_SPEECH_TOKEN

log = logging.getLogger(__name__)
TASKS = ("speech", "interleaved", "asr", "tts", "sft", "text")
_COUNT_REASONS = ("truncated", "redrawn (too long)")


def load_text_tokenizer(text_tokenizer):
    """An HF tokenizer: the object itself, a local directory (``AutoTokenizer.from_pretrained``), or ``None`` for
    the built-in character tokenizer."""
    if text_tokenizer is None or text_tokenizer == "char":
        from moss_components.text.char_tokenizer import build_char_tokenizer

        return build_char_tokenizer()
    if isinstance(text_tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(text_tokenizer), local_files_only=True)
    return text_tokenizer


def _one_codebook(ids: torch.Tensor) -> torch.Tensor:
    """The grid carries one codebook: a multi-codebook cache ``(Q, T')`` contributes its first (semantic) one."""
    return ids if ids.ndim == 1 else ids[0]


class SpeechLMDataset(Dataset):
    """``length`` random documents of one split (see the module docstring).

    ``__getitem__`` returns one document ``(input_ids (n, 2), labels (n, 2))``, or, with ``packing``, a row: a list
    of documents whose lengths sum to at most ``max_length``. The draw of item ``i`` depends only on ``(seed, i)``
    with ``fixed`` (validation), else on ``(seed, epoch, i)``: DDP ranks, which are dealt distinct indices, draw
    distinct documents, and a resumed run draws the documents the interrupted one would have.
    """

    def __init__(self, dm: SpeechLMDataModule, split: str, length: int, fixed: bool) -> None:
        self.dm, self.split, self.length, self.fixed = dm, split, length, fixed
        h = dm.hparams
        root, cache_dir = Path(h.corpus_dir), Path(h.speech_cache_dir)
        self.read, self.qa, self.text = [], [], []
        need = set(dm.task_weights) - {"text"}
        self.missing = 0
        if need & {"speech", "interleaved", "asr", "tts"}:
            m = root / "read" / f"{split}.jsonl"
            self.read_cache = SpeechCache(cache_paths(m, cache_dir)[0])
            for r in read_manifest(m, required=("id", "text")):
                if r["id"] in self.read_cache:
                    self.read.append((r["text"], r["id"]))
                else:
                    self.missing += 1
        if "sft" in need:
            m = root / "qa" / f"{split}.jsonl"
            self.qa_cache = SpeechCache(cache_paths(m, cache_dir)[0])
            for r in read_manifest(m, required=("id", "question_text", "answer_text")):
                if f"{r['id']}:question" in self.qa_cache and f"{r['id']}:answer" in self.qa_cache:
                    self.qa.append(r)
                else:
                    self.missing += 1
        if "text" in dm.task_weights or h.text_replay_ratio > 0:
            path = root / "text" / f"{split}.txt"
            if not path.is_file():
                path = root / "text" / "train.txt"
            self.text = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if self.missing:
            log.warning("%s: %d utterances are not in the speech cache and are left out", split, self.missing)
        pools = {"speech": self.read, "interleaved": self.read, "asr": self.read, "tts": self.read}
        pools.update(sft=self.qa, text=self.text)
        for task in dm.task_weights:
            if not pools[task]:
                raise ValueError(f"task {task!r} has no data in split {split!r} under {root}")
        self.counts = torch.zeros(len(_COUNT_REASONS), dtype=torch.long).share_memory_()
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def _rng(self, i: int) -> random.Random:
        if self.fixed:
            return random.Random(self.dm.hparams.seed * 1_000_003 + i)
        return random.Random(hash((self.dm.hparams.seed, self.epoch, i)))

    def _task(self, rng: random.Random) -> str:
        if self.text and rng.random() < self.dm.hparams.text_replay_ratio:
            return "text"
        names, weights = zip(*self.dm.task_weights.items())
        return rng.choices(names, weights)[0]

    def _document(self, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        dm, h = self.dm, self.dm.hparams
        tok, sp, max_len = dm.tokenizer, dm.special_ids, h.max_length
        for _ in range(20):
            task = self._task(rng)
            if task == "text":
                inp, lab = build_text(rng.choice(self.text), tok, sp)
            elif task == "sft":
                r = rng.choice(self.qa)
                names, weights = zip(*dm.sft_weights.items())
                mode = rng.choices(names, weights)[0]
                inp, lab = build_sft_example(
                    tok,
                    sp,
                    mode,
                    question_text=r["question_text"],
                    question_speech=_one_codebook(self.qa_cache[f"{r['id']}:question"]),
                    answer_text=r["answer_text"],
                    answer_speech=_one_codebook(self.qa_cache[f"{r['id']}:answer"]),
                    system_prompts=dm.system_prompts,
                )
            elif task == "interleaved":
                lo, hi = h.interleave_sentences
                picks = [rng.choice(self.read) for _ in range(rng.randint(lo, hi))]
                mods = alternating_modalities(len(picks), rng.choice(["text", "speech"]))
                sents = [(t, _one_codebook(self.read_cache[k])) for t, k in picks]
                inp, lab = build_interleaved(sents, mods, tok, sp)
            else:
                text, key = rng.choice(self.read)
                ids = _one_codebook(self.read_cache[key])
                if task == "speech":
                    inp, lab = build_speech_only(ids, sp)
                elif task == "asr":
                    inp, lab = build_asr(ids, text, tok, sp)
                else:
                    inp, lab = build_tts(text, ids, tok, sp)
            if len(inp) <= max_len:
                return inp, lab
            if task in ("speech", "text"):
                self.counts[0] += 1
                return inp[:max_len], lab[:max_len]
            self.counts[1] += 1
        raise RuntimeError(f"20 draws in a row exceeded max_length={max_len}; raise max_length")

    def __getitem__(self, i: int):
        rng = self._rng(i)
        if not self.dm.hparams.packing:
            return self._document(rng)
        row, room, misses = [], self.dm.hparams.max_length, 0
        while misses < 4:  # stop after a few documents that do not fit the room left
            doc = self._document(rng)
            if len(doc[0]) <= room:
                row.append(doc)
                room -= len(doc[0])
            else:
                misses += 1
        return row


class ResumableLoader(DataLoader):
    """A ``DataLoader`` that tells Lightning where it is (``state_dict``) and skips, after a resume, the batches the
    checkpointed run had trained on this epoch."""

    skip_batches = 0

    def __iter__(self):
        ds = self.dataset
        if ds.dm.trainer is not None:
            ds.epoch = ds.dm.trainer.current_epoch
        it = super().__iter__()
        skip, self.skip_batches = self.skip_batches, 0
        for _ in range(skip):  # cheap: documents come from the id cache
            next(it)
        return it

    def state_dict(self) -> dict:
        # the fetcher has prefetched a batch, so count what the loop trained on, not what was drawn
        trainer = self.dataset.dm.trainer
        return {"epoch": trainer.current_epoch, "batches": trainer.fit_loop.epoch_loop.batch_progress.current.processed}

    def load_state_dict(self, state: dict) -> None:
        self.skip_batches = int(state["batches"])  # the epoch comes back with the trainer's loop state


class SpeechLMDataModule(LightningDataModule):
    """Grids of PT-1 / PT-2 / SFT from ``corpus_dir`` and the cache of ``moss-speech tokenize``.

    Args:
        corpus_dir: corpus root (``read/``, ``qa/``, ``text/``; see ``synth_corpus.py``).
        speech_cache_dir: output of ``moss-speech tokenize --manifest corpus_dir --out ...``.
        text_tokenizer: an HF tokenizer, a local tokenizer directory, or ``None``/``"char"`` (built-in).
        special_ids: ids of the grid; default ``SpeechSpecialIds.from_tokenizer`` when the tokenizer has the speech
            tokens (``<|speech_start|>``, ``<|speech_pad|>``), else ``for_vocab(len(tokenizer), codebook size)``.
        tasks: task -> weight, tasks from ``speech, interleaved, asr, tts, sft, text``.
        sft_modes: SFT mode -> weight (``t2t, s2t, t2s, s2s, t2s_guided, s2s_guided``); default the four
            text-free combinations equally.
        system_prompts: SFT mode -> system prompt, over the defaults of ``data/sft.py``; under the CLI, the model's
            own (linked from ``SpeechLMModule``).
        text_replay_ratio: probability that a document is text replay (PT-2), on top of ``tasks``.
        max_length: longest document, and the row length when packing (tokens = grid positions).
        batch_size: documents per batch, or packed rows per batch with ``packing``.
        packing: pack whole documents into rows of ``max_length`` (see ``packing.py``).
        samples_per_epoch: items per training epoch: documents, or packed rows with ``packing``; default the number
            of training utterances (+ text lines when ``text`` is a task).
        val_samples: documents (or rows) per validation run, drawn the same way every time.
        interleave_sentences: ``(min, max)`` sentences per interleaved document.
        num_workers: DataLoader workers.
        seed: seed of the fixed validation draws.
    """

    def __init__(
        self,
        corpus_dir: str,
        speech_cache_dir: str,
        text_tokenizer=None,
        special_ids: SpeechSpecialIds | None = None,
        tasks: dict[str, float] | None = None,
        sft_modes: dict[str, float] | None = None,
        system_prompts: dict[str, str] | None = None,
        text_replay_ratio: float = 0.0,
        max_length: int = 512,
        batch_size: int = 8,
        packing: bool = False,
        samples_per_epoch: int | None = None,
        val_samples: int = 64,
        interleave_sentences: tuple[int, int] = (2, 4),
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["text_tokenizer", "special_ids"])
        self.tokenizer = load_text_tokenizer(text_tokenizer)
        self.task_weights = {
            k: float(v) for k, v in (tasks or {"speech": 1, "interleaved": 1, "asr": 1, "tts": 1}).items() if v > 0
        }
        bad = set(self.task_weights) - set(TASKS)
        if bad or not self.task_weights:
            raise ValueError(f"tasks {sorted(bad) or tasks}; expected positive weights for some of {TASKS}")
        self.sft_weights = {
            k: float(v) for k, v in (sft_modes or dict.fromkeys(("t2t", "s2t", "t2s", "s2s"), 1)).items() if v > 0
        }
        bad = set(self.sft_weights) - set(SFT_MODES)
        if bad or not self.sft_weights:
            raise ValueError(f"sft_modes {sorted(bad) or sft_modes}; expected positive weights for some of {SFT_MODES}")
        self.system_prompts = resolve_system_prompts(system_prompts)
        if not 0.0 <= text_replay_ratio < 1.0:
            raise ValueError(f"text_replay_ratio {text_replay_ratio} must be in [0, 1)")
        self._special_ids = special_ids
        self.datasets: dict[str, SpeechLMDataset] = {}

    @property
    def special_ids(self) -> SpeechSpecialIds:
        if self._special_ids is None:
            sub = "qa" if set(self.task_weights) == {"sft"} else "read"
            manifest = Path(self.hparams.corpus_dir) / sub / "train.jsonl"
            index_path = cache_paths(manifest, self.hparams.speech_cache_dir)[1]
            if not index_path.is_file():
                raise FileNotFoundError(f"no speech-id cache index {index_path}; run `moss-speech tokenize` first")
            codebook = int(json.loads(index_path.read_text())["codebook_size"])
            vocab = self.tokenizer.get_vocab()
            if START_OF_SPEECH_TOKEN in vocab and MODALITY_PAD_TOKEN in vocab:
                # the ids SpeechLMModule derives from the same tokenizer
                self._special_ids = SpeechSpecialIds.from_tokenizer(self.tokenizer, codebook)
            else:
                eos = tuple(t for t in (self.tokenizer.eos_token_id,) if t is not None)
                self._special_ids = SpeechSpecialIds.for_vocab(len(self.tokenizer), codebook, text_eos=eos)
        return self._special_ids

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id or 0)

    def dataset(self, split: str) -> SpeechLMDataset:
        if split not in self.datasets:
            h = self.hparams
            if split == "train":
                ds = SpeechLMDataset(self, split, 1, fixed=False)
                n_text = len(ds.text) if "text" in self.task_weights else 0
                ds.length = h.samples_per_epoch or max(1, len(ds.read) + len(ds.qa) + n_text)
            else:
                ds = SpeechLMDataset(self, split, h.val_samples, fixed=True)
            self.datasets[split] = ds
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
        if stage in (None, "fit", "validate"):
            self.dataset("validation")

    def collate(self, items: list) -> dict:
        if self.hparams.packing:
            return collate_packed(items, self.special_ids, length=self.hparams.max_length, pad_id=self.pad_id)
        return collate_padded(items, self.special_ids, pad_id=self.pad_id)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        _ = self.special_ids  # resolve in the main process, before workers fork
        return DataLoader(
            self.dataset(split),
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=self.collate,
        )

    def train_dataloader(self) -> DataLoader:
        _ = self.special_ids
        ds = self.dataset("train")
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        # our own DistributedSampler (Lightning leaves it in place and calls set_epoch): one process deals the same
        # permutation to itself, so a global batch holds the same documents whatever the number of processes
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.hparams.seed)
        return ResumableLoader(
            ds,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def count_report(self) -> dict[str, dict[str, int]]:
        """``{split: {"truncated": n, "redrawn (too long)": n, "missing from cache": n}}`` so far."""
        return {
            s: {r: int(c) for r, c in zip(_COUNT_REASONS, ds.counts)} | {"missing from cache": ds.missing}
            for s, ds in self.datasets.items()
        }
