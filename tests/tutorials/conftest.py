"""One smoke pipeline run shared by every tutorial's smoke test (and by both xdist workers, through a file lock)."""

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
