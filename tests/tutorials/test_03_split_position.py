"""Tutorial 03 (where to split) in its smoke budget: the sweep retrained and scored, the probe run, the files
written."""

import json
import math
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
POINTS = ["0", "3", "6"]  # the smoke budget's split points


def test_smoke_budget(run_tutorial, tmp_path):
    run_tutorial("03_split_position.py", tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    layers = results["num_hidden_layers"]
    assert layers == 6 and list(results["points"]) == POINTS
    for k, row in results["points"].items():
        for key in ("spoken_cloze_accuracy", "text_cloze_accuracy", "text_cloze_accuracy_base"):
            assert 0.0 <= row[key] <= 1.0, (k, key, row[key])
        for key in ("speech_nll_after_pt1", "speech_nll_after_pt2", "text_ppl_ratio_after_pt2",
                    "text_ppl_ratio_after_sft"):  # fmt: skip
            assert math.isfinite(row[key]) and row[key] > 0, (k, key, row[key])
        assert row["text_path_unchanged_after_pt1"] is True, k
        for curve in row["probe_sft"].values():
            assert len(curve) == layers + 1 and all(-1.0 <= c <= 1.0 for c in curve)
        # every stage of the point was trained with its split, and the exported model has it
        run = tmp_path / f"shared{k}"
        for stage in ("pt1", "pt2", "sft"):
            config = yaml.safe_load((run / stage / "config.yaml").read_text())
            assert config["model"]["init_args"]["num_shared_layers"] == int(k)
        exported = json.loads((run / "sft" / "export" / "config.json").read_text())
        assert exported["num_shared_layers"] == int(k) and exported["num_modality_layers"] == layers - int(k)
    for name in ("PT-1 init", "after PT-1", "after SFT"):
        assert len(results["base_probes"][name]["paired"]) == layers + 1
    # a fresh, untrained speech embedding carries nothing of the sentence: its paired and unpaired cosines at the
    # embedding layer are both near zero
    init = results["base_probes"]["PT-1 init"]
    assert abs(init["paired"][0]) < 0.2 and abs(init["unpaired"][0]) < 0.2

    # PT-1 retrained with another seed at the spread point: a second value, from a run with that seed
    spread = results["pt1_seed_spread"]["6"]
    assert (
        len(spread["speech_nll_after_pt1"]) == 2
        and spread["speech_nll_after_pt1"][0] == (results["points"]["6"]["speech_nll_after_pt1"])
    )
    assert all(math.isfinite(v) and v > 0 for v in spread["speech_nll_after_pt1"]) and spread["std"] >= 0
    config = yaml.safe_load((tmp_path / "shared6-seed1" / "pt1" / "config.yaml").read_text())
    assert config["seed_everything"] == 1 and config["data"]["init_args"]["seed"] == 1

    table = (tmp_path / "table.md").read_text().strip().splitlines()
    assert len(table) == 2 + len(POINTS) and [line.split("|")[1].strip() for line in table[2:]] == POINTS
    for png in ("split_sweep.png", "split_probe.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
