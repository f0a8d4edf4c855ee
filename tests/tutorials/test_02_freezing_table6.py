"""Tutorial 02 (Table 6) in its smoke budget: every variant retrained and scored, the table and the plots written."""

import json
import math
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ["FP-Full", "FP-Shared", "FP-Layerwise", "NF", "NF-NoSplit"]


def test_smoke_budget(run_tutorial, tmp_path):
    run_tutorial("02_freezing_table6.py", tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["variants"]) == VARIANTS
    for variant, row in results["variants"].items():
        for key in ("spoken_cloze_accuracy", "text_cloze_accuracy", "text_cloze_accuracy_after_pt2",
                    "s2s_text_free_accuracy", "s2t_accuracy", "t2t_accuracy"):  # fmt: skip
            assert 0.0 <= row[key] <= 1.0, (variant, key, row[key])
        assert row["spoken_cloze_n"] > 0 and row["text_cloze_n"] > 0
        for key in ("text_ppl_ratio_after_pt2", "text_ppl_ratio_after_sft"):
            assert math.isfinite(row[key]) and row[key] > 0, (variant, key)
    # FP-Full keeps the text LLM frozen through PT-2: its text perplexity is the base LLM's; NF's is not
    assert abs(results["variants"]["FP-Full"]["text_ppl_ratio_after_pt2"] - 1.0) < 1e-6
    assert abs(results["variants"]["NF"]["text_ppl_ratio_after_pt2"] - 1.0) > 1e-6

    # each variant trained what it says
    def stage_config(variant, stage):
        return yaml.safe_load((tmp_path / variant / "seed0" / stage / "config.yaml").read_text())["model"]

    freezing = {v: stage_config(v, "pt2")["init_args"]["freezing"]["class_path"].rsplit(".", 1)[1] for v in VARIANTS}
    assert freezing == {"FP-Full": "FreezeFull", "FP-Shared": "FreezeShared", "FP-Layerwise": "FreezeLayerwise",
                        "NF": "NoFreeze", "NF-NoSplit": "NoFreeze"}  # fmt: skip
    for stage in ("pt1", "pt2", "sft"):
        assert stage_config("NF-NoSplit", stage)["init_args"]["router"]["class_path"].endswith("NoSplitRouter")
    # the split variants share one retrained PT-1; NF-NoSplit trains its own, with the same steps
    assert (tmp_path / "FP-Full" / "seed0" / "pt1").resolve() == (tmp_path / "PT-1" / "seed0" / "pt1").resolve()
    assert not (tmp_path / "NF-NoSplit" / "seed0" / "pt1").is_symlink()
    pt1_steps = [
        yaml.safe_load((run / "pt1" / "config.yaml").read_text())["trainer"]["max_steps"]
        for run in (tmp_path / "PT-1" / "seed0", tmp_path / "NF-NoSplit" / "seed0")
    ]
    assert pt1_steps[0] == pt1_steps[1] == results["budget_spec"]["pt1_steps"]

    # PT-2 retrained with another seed (weights, data order) from the same PT-1, scored after PT-2
    for variant in VARIANTS:
        seeds = results["per_seed"][variant]
        assert len(seeds) == 2 and set(seeds[1]) == {"text_cloze_accuracy_after_pt2", "text_ppl_ratio_after_pt2",
                                                     "speech_nll_after_pt2"}  # fmt: skip
        config = yaml.safe_load((tmp_path / variant / "seed1-pt2" / "pt2" / "config.yaml").read_text())
        assert config["seed_everything"] == 1 and config["data"]["init_args"]["seed"] == 1
    assert abs(results["per_seed"]["FP-Full"][1]["text_ppl_ratio_after_pt2"] - 1.0) < 1e-6
    assert results["variants"]["NF"]["speech_nll_after_pt2_seed_std"] > 0  # the seeds trained differently

    table = (tmp_path / "table.md").read_text().strip().splitlines()
    assert len(table) == 2 + len(VARIANTS) and [line.split("|")[1].strip() for line in table[2:]] == VARIANTS
    for png in ("table6_variants.png", "table6_vs_paper.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["wall_seconds"]["total"] > 0
