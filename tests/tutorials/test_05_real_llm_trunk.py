"""Tutorial 05 (a real LLM trunk): PT-1 on SmolLM2-135M for a few steps keeps its text answers and logits."""

from __future__ import annotations

import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_smoke_budget(run_tutorial, tmp_path):
    proc = run_tutorial("05_real_llm_trunk.py", tmp_path, timeout=300)

    r = json.loads((tmp_path / "results" / "results.json").read_text())
    assert r["text_logits_equal"] is True and r["answers_unchanged"] is True
    assert len(r["answers"]) >= 2
    for a in r["answers"]:
        assert a["before"].strip() and a["before"] == a["after"]
    # the speech path trained: one log row per step, finite losses, only the speech parts trainable
    assert [row["step"] for row in r["steps_log"]] == list(range(1, r["steps"] + 1))
    assert all(math.isfinite(row["loss"]) and row["loss"] > 0 for row in r["steps_log"])
    speech = [row["speech_loss"] for row in r["steps_log"] if row["speech_tokens"]]
    assert speech and all(math.isfinite(x) and x > 0 for x in speech)
    assert 0 < r["trainable_parameters"] < 0.2 * r["total_parameters"]
    assert r["total_parameters"] > 130e6  # SmolLM2-135M and the speech copies of its top layers
    assert r["seconds_per_step"] > 0 and r["cpu_seconds_per_step"] > 0
    assert (tmp_path / "results" / "loss_curve.png").stat().st_size > 10_000
    assert "| greedy text answers unchanged" in proc.stdout
