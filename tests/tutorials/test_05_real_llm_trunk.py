"""Tutorial 05 (a real LLM trunk): PT-1 on SmolLM2-135M for a few steps keeps its text answers and logits."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tutorials" / "05_real_llm_trunk.py"


def test_smoke_budget(smoke_base, tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--budget", "smoke", "--base", str(smoke_base), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

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
