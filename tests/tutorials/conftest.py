"""One smoke pipeline run shared by every tutorial's smoke test (and by both xdist workers, through a file lock)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from moss_components.cli.pipeline import pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory, worker_id) -> Path:
    """A finished ``moss-speech pipeline --preset smoke`` run: the base the tutorials' smoke budgets build on."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's folder, common to the workers
    root = shared / "tutorial-smoke-base"
    with FileLock(str(root) + ".lock"):
        if not (root / "stages" / "evaluate.json").is_file():
            pipeline(preset="smoke", out=str(root))
    return root


@pytest.fixture
def run_tutorial(smoke_base):
    """``run(script, out, timeout)``: ``tutorials/<script> --budget smoke`` on the shared smoke run; asserts it exits
    0 and returns the finished process."""

    def run(script: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(REPO / "tutorials" / script), "--budget", "smoke", "--base", str(smoke_base),
               "--out", str(out)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    return run
