"""Our ``kernels`` package shares its name with Hugging Face's. transformers probes for theirs when it is imported
and, finding no version metadata (the repo on ``PYTHONPATH`` instead of installed, as on a bare GPU machine), imports
ours. That must not import transformers back."""

import subprocess
import sys
from pathlib import Path

PROBE = """
import importlib.metadata as md
version = md.version
def no_metadata_for_us(name):
    if name.replace("_", "-") in ("kernels", "moss-components"):
        raise md.PackageNotFoundError(name)
    return version(name)
md.version = no_metadata_for_us
from transformers import PreTrainedModel
from transformers.utils.import_utils import is_kernels_available
import kernels
assert not is_kernels_available(), "transformers took our kernels package for Hugging Face's"
assert callable(kernels.register_moss_triton_attention)
"""


def test_transformers_imports_with_our_kernels_package_unregistered():
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=repo, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_importing_kernels_does_not_import_transformers():
    code = "import sys, kernels; assert 'transformers' not in sys.modules, 'kernels imported transformers eagerly'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
