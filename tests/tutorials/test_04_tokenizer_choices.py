"""Tutorial 04 (tokenizer choices): the smoke budget end to end, and the Mimi swap config with random weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MIMI_CONFIG = REPO / "configs" / "tokenizer" / "codecs" / "mimi.yaml"
SMOKE_VARIANTS = {"256@12.5Hz": (256, 12.5, "cb256_12.5hz"), "512@25Hz": (512, 25.0, "cb512_25hz")}
# a tiny random Mimi (the shape tests/tokenizers/test_codecs.py uses): 64 codes, 12.5 Hz
MIMI = dict(
    hidden_size=32, num_filters=8, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
    num_key_value_heads=2, head_dim=16, codebook_size=64, codebook_dim=16, num_quantizers=4,
    vector_quantization_hidden_dimension=16, upsample_groups=32,
)  # fmt: skip


def test_smoke_budget(run_tutorial, tmp_path):
    proc = run_tutorial("04_tokenizer_choices.py", tmp_path, timeout=300)

    results = json.loads((tmp_path / "results" / "results.json").read_text())
    rows = {r["variant"]: r for r in results["variants"]}
    assert set(rows) == set(SMOKE_VARIANTS)
    for name, (codes, rate, folder) in SMOKE_VARIANTS.items():
        r = rows[name]
        assert r["codebook_size"] == codes and r["frame_rate_hz"] == rate
        assert 0 <= r["tokenizer_cer"] <= 10 and 0 < r["codebook_usage"] <= 1
        assert list(r["tokenizer_cer_by_seed"]) == ["0", "1"] and r["tokenizer_cer_by_seed"]["0"] == r["tokenizer_cer"]
        assert all(0 <= c <= 10 for c in r["tokenizer_cer_by_seed"].values())
        assert 0 < r["code_entropy_nats_per_second"] <= math.log(codes) * r["speech_ids_per_second"] + 1e-9
        assert 0 <= r["s2t_accuracy"] <= 1 and 0 <= r["t2t_accuracy"] <= 1 and r["s2t_n"] > 0
        assert math.isfinite(r["speech_nats_per_second"]) and r["speech_nats_per_second"] > 0
        # nats/s = nats/id * ids/s, and ids/s is the tokenizer's rate (a clip's last partial frame counts)
        assert r["speech_nats_per_second"] == pytest.approx(r["speech_nats_per_id"] * r["speech_ids_per_second"])
        assert rate * 0.9 <= r["speech_ids_per_second"] <= rate * 1.25
        assert r["step_seconds"] > 0
        # the variant really was retrained with its tokenizer: its id cache and its speech LM have its codebook
        run = tmp_path / folder
        index = json.loads((run / "speech_ids" / "read" / "train.index.json").read_text())
        assert (index["codebook_size"], index["frame_rate"]) == (codes, rate)
        # the second tokenizer seed: the same tokenizer, another seed
        again = yaml.safe_load((tmp_path / f"{folder}_seed1" / "tokenizer" / "config.yaml").read_text())
        tok = again["model"]["init_args"]["tokenizer"]["init_args"]
        assert again["seed_everything"] == 1
        assert (tok["quantizer"]["init_args"]["codebook_size"], 50 / tok["pool"]) == (codes, rate)
        for stage in ("pt1", "pt2", "sft"):
            assert not (run / stage).is_symlink()
            lm = json.loads((run / stage / "export" / "config.json").read_text())
            assert lm["moss_speech"]["special_ids"]["num_speech_codes"] == codes
    assert rows["256@12.5Hz"]["step_ratio"] == 1.0
    for png in ("tokenizer_choices.png", "training_curves.png"):
        assert (tmp_path / "results" / png).stat().st_size > 10_000
    table = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and "@" in ln]
    assert sorted(ln.split("|")[1].strip() for ln in table) == sorted(SMOKE_VARIANTS)


def test_mimi_swap_config_with_random_weights(smoke_base, tmp_path):
    """The config shown in the tutorial: a local MimiModel directory -> speech-id cache -> PT-1 with its codebook."""
    from transformers import MimiConfig, MimiModel

    from moss_components.cli.lightning_cli import run_lightning_cli
    from moss_components.cli.tokenize import tokenize

    checkpoint = tmp_path / "mimi"
    MimiModel(MimiConfig(**MIMI)).save_pretrained(checkpoint)
    spec = yaml.safe_load(MIMI_CONFIG.read_text())
    assert spec["class_path"] == "moss_components.tokenizers.MimiTokenizer"
    spec["init_args"]["pretrained"] = str(checkpoint)  # the one line a user edits
    config = tmp_path / "mimi.yaml"
    config.write_text(yaml.safe_dump(spec))

    cache = tmp_path / "speech_ids"
    corpus = smoke_base / "corpus"
    for split in ("train", "validation"):
        tokenize(str(config), str(corpus / "read" / f"{split}.jsonl"), str(cache), progress=False)
    index = json.loads((cache / "read" / "train.index.json").read_text())
    assert (index["codebook_size"], index["frame_rate"], index["num_codebooks"]) == (64, 12.5, 1)
    assert index["tokenizer"] == "MimiTokenizer" and len(index["keys"]) > 0

    def pt1(num_speech_codes: int):
        return run_lightning_cli([
            "fit", "-c", str(REPO / "configs" / "pt1" / "tiny.yaml"), "--trainer.fast_dev_run=true",
            "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'pt1'}",
            f"--model.init_args.num_speech_codes={num_speech_codes}", "--model.init_args.export_dir=null",
            "--model.init_args.speech_embedding_init=null",  # a codec has no CTC head to align the ids with
            f"--model.init_args.trunk.init_args.path={smoke_base / 'text_llm' / 'export'}",
            f"--data.init_args.corpus_dir={corpus}", f"--data.init_args.speech_cache_dir={cache}",
            "--data.init_args.batch_size=2",
        ])  # fmt: skip

    assert pt1(64).trainer.global_step == 1
    with pytest.raises(ValueError, match="codebook_size 64.*num_speech_codes=32"):
        pt1(32)
