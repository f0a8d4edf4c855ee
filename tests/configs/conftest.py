"""Session fixture for the stage-config tests: the small assets every config points at (see ``lm_assets.py``)."""

import importlib.util
from pathlib import Path

import pytest


def _lm_assets_module():
    spec = importlib.util.spec_from_file_location("lm_assets", Path(__file__).with_name("lm_assets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lm_assets(tmp_path_factory):
    return _lm_assets_module().build_lm_assets(tmp_path_factory.getbasetemp() / "lm_assets")
