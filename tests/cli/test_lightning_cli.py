"""``moss-speech fit`` through LightningCLI: YAML class swaps and their type checks, resuming a killed run with
``--ckpt_path last`` (same losses as an uninterrupted run), and DDP on two CPU processes (gloo)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from safetensors.torch import load_file

from moss_components.cli.lightning_cli import MossSpeechCLI, run_lightning_cli

ROOT = Path(__file__).parents[2]
SUPPORT = ROOT / "tests" / "configs"  # lm_assets.py (importable by name once on sys.path)
PT1 = ROOT / "configs" / "pt1" / "tiny.yaml"


@pytest.fixture(scope="module")
def assets(lm_assets):
    return lm_assets


@pytest.fixture
def support_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(SUPPORT))


def _pt1_args(assets, out: Path) -> list[str]:
    return [
        "-c", str(PT1),
        f"--model.init_args.trunk.init_args.path={assets['text_llm']}",
        f"--model.init_args.export_dir={out / 'export'}",
        f"--data.init_args.corpus_dir={assets['corpus']}",
        f"--data.init_args.speech_cache_dir={assets['cache']}",
        f"--model.init_args.speech_embedding_init.init_args.tokenizer={assets['tokenizer']}",
        f"--model.init_args.speech_embedding_init.init_args.speech_cache_dir={assets['cache']}",
        f"--trainer.default_root_dir={out}",
    ]  # fmt: skip


def _instantiate(args: list[str]) -> MossSpeechCLI:
    return MossSpeechCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                         args=args, run=False)  # fmt: skip


# --- class_path swaps -------------------------------------------------------------------------------------------


def test_yaml_swaps_router_freezing_and_trunk(assets, tmp_path):
    from moss_components.freezing import FreezeShared
    from moss_components.routers import ModalityRoutedRouter
    from moss_components.trunks import ConfigTrunk

    trunk = (
        '{"class_path": "moss_components.trunks.ConfigTrunk", "init_args": {"tokenizer": "char", "config": '
        '{"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 5, '
        '"num_attention_heads": 2, "num_key_value_heads": 1}}}'
    )
    cli = _instantiate(
        [
            *_pt1_args(assets, tmp_path),
            "--model.init_args.router=moss_components.routers.ModalityRoutedRouter",
            "--model.init_args.freezing=moss_components.freezing.FreezeShared",
            f"--model.init_args.trunk={trunk}",
            '--model.init_args.system_prompts={"s2t": "s2t"}',
        ]
    )
    assert isinstance(cli.model.model.router, ModalityRoutedRouter)
    assert isinstance(cli.model.freezing, FreezeShared)
    assert isinstance(cli.model.trunk, ConfigTrunk) and cli.model.model.config.model_type == "llama"
    # the links: the data module uses the model's tokenizer, special ids and system prompts
    assert cli.datamodule.special_ids == cli.model.special_ids
    assert cli.datamodule.tokenizer is cli.model.tokenizer
    assert cli.datamodule.system_prompts == cli.model.model.system_prompts
    assert cli.model.model.system_prompts["s2t"] == "s2t"


@pytest.mark.parametrize(
    "key, wrong, expected",
    [
        ("router", "moss_components.freezing.FreezeFull", "SpeechLMRouter"),
        ("freezing", "moss_components.routers.DualBranchRouter", "FreezingPolicy"),
        ("trunk", "moss_components.routers.DualBranchRouter", "TextTrunkSource"),
    ],
)
def test_wrong_class_is_rejected_at_parse_time(key, wrong, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "-c", str(PT1), f"--model.init_args.{key}={wrong}", "--print_config"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert f"does not correspond to a subclass of {expected}" in err and wrong in err


def test_codebook_mismatch_names_both_sizes(assets, tmp_path):
    with pytest.raises(ValueError, match=r"codebook_size 512.*num_speech_codes=64"):
        run_lightning_cli(["fit", *_pt1_args(assets, tmp_path), "--model.init_args.num_speech_codes=64",
                           "--model.init_args.speech_embedding_init=null", "--trainer.fast_dev_run=true"])  # fmt: skip
    # the CTC-aligned start checks the tokenizer's codebook against the model too
    with pytest.raises(ValueError, match=r"tokenizer has 512 codes.*set num_speech_codes=512"):
        run_lightning_cli(["fit", *_pt1_args(assets, tmp_path), "--model.init_args.num_speech_codes=64",
                           "--trainer.fast_dev_run=true"])  # fmt: skip


# --- resume ------------------------------------------------------------------------------------------------------


def _train_losses(root: Path) -> dict[int, float]:
    """``{step: train/loss}`` over every CSV log under ``root`` (later versions win: a resumed run's steps)."""
    losses = {}
    for path in sorted(root.glob("**/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    losses[int(row["step"])] = float(row["train/loss"])
    return losses


def _small_run(assets, out: Path, max_steps: int) -> list[str]:
    return [
        "fit", *_pt1_args(assets, out),
        "--data=lightning_modules.data.SpeechLMDataModule",
        f"--data.init_args.corpus_dir={assets['corpus']}",
        f"--data.init_args.speech_cache_dir={assets['cache']}",
        "--data.init_args.batch_size=2", "--data.init_args.max_length=192", "--data.init_args.samples_per_epoch=16",
        "--data.init_args.val_samples=2", "--data.init_args.packing=false",
        f"--trainer.max_steps={max_steps}", "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0",
        "--trainer.log_every_n_steps=1", "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={out}",
        "--trainer.enable_checkpointing=true", "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={out / 'ckpt'}", "--trainer.callbacks.every_n_train_steps=1",
        "--trainer.callbacks.save_last=true",
        "--trainer.plugins+=lightning_modules.callbacks.AtomicCheckpointIO",
        "--model.init_args.warmup_steps=2",
    ]  # fmt: skip


class _Killed(RuntimeError):
    pass


def test_resume_from_last_reproduces_losses(assets, tmp_path, support_on_path, monkeypatch):
    """8 batches per epoch; one run trains 6 steps; another is killed during step 4 (after step 3's checkpoint)
    and resumed with ``--ckpt_path last --weights_only true``: its steps 4-6 match the uninterrupted run's."""
    full = run_lightning_cli(_small_run(assets, tmp_path / "full", 6))
    assert full.trainer.global_step == 6

    killed_at = 3

    def kill(self, batch, batch_idx):
        if self.global_step == killed_at:
            raise _Killed(f"simulated kill at step {killed_at}")
        return original(self, batch, batch_idx)

    from lightning_modules.speech_lm_module import SpeechLMModule

    original = SpeechLMModule.on_train_batch_start
    monkeypatch.setattr(SpeechLMModule, "on_train_batch_start", kill)
    with pytest.raises(_Killed):
        run_lightning_cli(_small_run(assets, tmp_path / "part", 6))
    monkeypatch.setattr(SpeechLMModule, "on_train_batch_start", original)
    last = tmp_path / "part" / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == killed_at  # a plain-data checkpoint
    assert not list(last.parent.glob("*.tmp-*"))  # atomic writes leave no temp files

    resumed = run_lightning_cli([*_small_run(assets, tmp_path / "part", 6), "--ckpt_path=last", "--weights_only=true"])
    assert resumed.trainer.global_step == 6
    a, b = _train_losses(tmp_path / "full"), _train_losses(tmp_path / "part")
    steps = [s for s in sorted(a) if s >= killed_at]
    assert steps and len(steps) == 3
    for s in steps:
        assert b[s] == pytest.approx(a[s], rel=1e-5, abs=1e-6), (s, a, b)
    # the exported weights of both runs agree too
    wa, wb = (load_file(str(p / "export" / "model.safetensors")) for p in (tmp_path / "full", tmp_path / "part"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


# --- DDP on two CPU processes ------------------------------------------------------------------------------------


def _fit_subprocess(args: list[str], timeout: int = 300) -> None:
    # Keep the caller's PYTHONPATH: packages may live there (a GPU machine with the repo's needs carried beside).
    path = [str(SUPPORT), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "moss_components.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]


def _ddp_args(assets, out: Path, devices: int, steps: int) -> list[str]:
    global_batch = 4
    return [
        "fit", *_pt1_args(assets, out),
        "--data=lightning_modules.data.SpeechLMDataModule",
        f"--data.init_args.corpus_dir={assets['corpus']}",
        f"--data.init_args.speech_cache_dir={assets['cache']}",
        # speech-only documents truncated to 10 positions (the shortest utterance has 10 ids): every rank holds the
        # same number of label tokens, so DDP's mean of per-rank means equals one process' mean over all of them
        "--data.init_args.tasks={speech: 1}",
        f"--data.init_args.batch_size={global_batch // devices}", "--data.init_args.max_length=10",
        "--data.init_args.samples_per_epoch=32", "--data.init_args.packing=false",
        "--trainer.accelerator=cpu", f"--trainer.devices={devices}",
        f"--trainer.strategy={'ddp' if devices > 1 else 'auto'}",
        f"--trainer.max_steps={steps}", "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0",
        "--trainer.enable_checkpointing=false", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--model.init_args.warmup_steps=0",
    ]  # fmt: skip


def _loss_of_export(assets, export: Path) -> float:
    """Mean loss of an exported model on fixed validation documents (the same for both runs)."""
    from lightning_modules.data import SpeechLMDataModule
    from lightning_modules.speech_lm_module import SpeechLMModule
    from moss_components.trunks import PretrainedTrunk

    module = SpeechLMModule(PretrainedTrunk(assets["text_llm"]), 512, 4, init_from=str(export)).eval()
    dm = SpeechLMDataModule(assets["corpus"], assets["cache"], text_tokenizer=module.tokenizer,
                                   special_ids=module.special_ids, tasks={"speech": 1}, max_length=10, batch_size=4,
                                   val_samples=8)  # fmt: skip
    dm.setup("validate")
    with torch.no_grad():
        return float(torch.stack([module(b).loss for b in dm.val_dataloader()]).mean())


def test_ddp_two_cpu_processes_match_one_process(assets, tmp_path):
    """Global batch 4 for 5 steps: 2 ranks x 2 documents (gloo) against 1 process x 4 documents, same documents.

    Tolerance: |loss difference| < 1e-4 (float32 sums in another order; a lost rank's gradient moves it ~1e-2)."""
    lengths = json.loads((assets["cache"] / "read" / "train.index.json").read_text())["lengths"].values()
    assert min(lengths) >= 10, "every document must fill max_length=10 for equal token counts per rank"
    _fit_subprocess(_ddp_args(assets, tmp_path / "one", 1, 5))
    _fit_subprocess(_ddp_args(assets, tmp_path / "two", 2, 5))
    one, two = (_loss_of_export(assets, tmp_path / n / "export") for n in ("one", "two"))
    assert abs(one - two) < 1e-4, (one, two)


# --- checkpoint writes -------------------------------------------------------------------------------------------


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_write_dies(tmp_path, monkeypatch):
    from lightning_modules.callbacks import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the process is killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1 and sorted(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match="weights_only=False"):
        io.load_checkpoint(path, weights_only=False)


def test_only_a_text_tokenizer_is_linked_to_the_data():
    from types import SimpleNamespace

    from moss_components.cli.lightning_cli import _model_tokenizer
    from moss_components.text.char_tokenizer import build_char_tokenizer

    text = build_char_tokenizer()
    assert _model_tokenizer(SimpleNamespace(tokenizer=text)) is text
    # a speech tokenizer (TokenizerModule, DecoderModule) would be pickled into hparams.yaml
    assert _model_tokenizer(SimpleNamespace(tokenizer=torch.nn.Linear(1, 1))) is None
