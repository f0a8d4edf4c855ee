"""Every YAML under configs/ is parsed by ``moss-speech fit`` and, where it runs on a CPU, trained for one
``fast_dev_run`` step on the micro corpus (see ``lm_assets.py``). GPU configs (FSDP, bf16) are only parsed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moss_components.cli.lightning_cli import run_lightning_cli

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*/*.yaml"))
# needs more than a CPU, or a real 135M LLM: parsed here, run by the slow test below / on a GPU machine
GPU_ONLY = {"fsdp", "moss"}
SLOW = {"smollm2"}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def _overrides(config: Path, assets: dict, out: Path) -> list[str]:
    """CLI overrides that point a config at the test assets and keep everything it writes under ``out``."""
    cfg = yaml.safe_load(config.read_text())
    model, data = cfg["model"], cfg["data"]
    m, d = model.get("init_args", {}), data.get("init_args", {})
    args = [f"--trainer.default_root_dir={out}", "--trainer.logger=false"]
    if "corpus_dir" in d:
        args += [
            f"--data.init_args.corpus_dir={assets['corpus']}",
            f"--data.init_args.speech_cache_dir={assets['cache']}",
        ]
    if "manifest_dir" in d:
        args.append(f"--data.init_args.manifest_dir={assets['corpus']}")
    if "batch_size" in d:
        args.append("--data.init_args.batch_size=2")
    for key in ("export_dir", "decoder_export_dir", "vocoder_export_dir"):
        if key in m:
            args.append(f"--model.init_args.{key}={out / key}")
    if "tokenizer_path" in m:
        args.append(f"--model.init_args.tokenizer_path={assets['tokenizer']}")
    if "vocoder_path" in m:
        args.append(f"--model.init_args.vocoder_path={assets['vocoder']}")
    trunk = m.get("trunk", {})
    if trunk.get("class_path", "").endswith("PretrainedTrunk"):
        args.append(f"--model.init_args.trunk.init_args.path={assets['text_llm']}")
    if m.get("speech_embedding_init"):
        init = "--model.init_args.speech_embedding_init.init_args"
        args += [f"{init}.tokenizer={assets['tokenizer']}", f"{init}.speech_cache_dir={assets['cache']}"]
    if m.get("init_from"):
        args.append(f"--model.init_args.init_from={assets['speech_lm_export']}")
    return args


@pytest.fixture(scope="module")
def assets(lm_assets, tmp_path_factory):
    """The shared assets plus a PT-1-style export (what PT-2 and SFT start from) and a vocoder."""
    from lightning_modules.speech_lm_module import SpeechLMModule
    from moss_components.tokenizers import save_pretrained
    from moss_components.trunks import PretrainedTrunk
    from moss_components.vocoders import VocosVocoder

    export = tmp_path_factory.mktemp("pt1_export")
    SpeechLMModule(PretrainedTrunk(lm_assets["text_llm"]), num_speech_codes=512, num_shared_layers=4).export(export)
    vocoder = save_pretrained(VocosVocoder(dim=32, depth=1), tmp_path_factory.mktemp("vocoder"))
    return {**lm_assets, "speech_lm_export": export, "vocoder": vocoder}


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_config_parses(config: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "-c", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] and printed["data"]["class_path"]


@pytest.mark.parametrize(
    "config",
    [c for c in CONFIGS if not (set(c.stem.split("_")) & GPU_ONLY or c.stem in SLOW)],
    ids=_id,
)
def test_config_fast_dev_run(config: Path, assets, tmp_path):
    cli = run_lightning_cli(
        ["fit", "-c", str(config), "--trainer.fast_dev_run=true", *_overrides(config, assets, tmp_path)]
    )
    assert cli.trainer.global_step == 1
    assert cli.trainer.state.finished


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in CONFIGS if c.stem in SLOW], ids=_id)
def test_config_fast_dev_run_slow(config: Path, assets, tmp_path):
    cli = run_lightning_cli(
        ["fit", "-c", str(config), "--trainer.fast_dev_run=true", *_overrides(config, assets, tmp_path)]
    )
    assert cli.trainer.global_step == 1
