"""Builds what the stage configs point at, small enough for ``fast_dev_run`` tests (~10 s on one core):

- ``corpus/``: the micro built-in corpus (``build_corpus(preset="micro")``);
- ``tokenizer/``: a random-weight tiny ``SemanticVQTokenizer`` (512 codes, like configs/tokenizer/tiny.yaml) saved
  with ``save_pretrained`` (what ``moss-speech tokenize`` and the decoder stage load);
- ``cache/``: the corpus' speech ids encoded with it;
- ``text_llm/``: a 6-layer random Qwen3 (hidden 64; the configs split it 4 + 2) with the character tokenizer, as a
  Hugging Face directory (the PT-1 trunk).

Test files outside this folder load it by path (``--import-mode=importlib`` puts no test folder on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import torch

CODEBOOK_SIZE = 512
TEXT_LLM_CONFIG = {
    "model_type": "qwen3",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}


def build_lm_assets(root: Path) -> dict[str, Path]:
    """Build (or reuse, when ``root/done`` exists) the assets under ``root``; return their paths by name."""
    from moss_components.data.speech_cache import encode_manifest
    from moss_components.data.synth_corpus import build_corpus
    from moss_components.quantizers import CosineVQ
    from moss_components.tokenizers import SemanticVQTokenizer
    from moss_components.tokenizers.pretrained import save_pretrained
    from moss_components.trunks import ConfigTrunk

    root = Path(root)
    paths = {n: root / n for n in ("corpus", "tokenizer", "cache", "text_llm")}
    if (root / "done").is_file():
        return paths
    build_corpus(paths["corpus"], preset="micro", seed=0, workers=1, progress=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        tok = SemanticVQTokenizer(
            n_mels=32, dim=32, depth=1, heads=2, quantizer=CosineVQ(dim=32, codebook_size=CODEBOOK_SIZE, code_dim=8),
            ctc_depth=1,
        ).eval()  # fmt: skip
    save_pretrained(tok, paths["tokenizer"])
    with torch.inference_mode():
        for sub in ("read", "qa"):
            for split in ("train", "validation", "test"):
                manifest = paths["corpus"] / sub / f"{split}.jsonl"
                encode_manifest(tok, manifest, paths["cache"], batch_size=16, progress=False, log=lambda s: None)
    trunk = ConfigTrunk(TEXT_LLM_CONFIG, seed=0, tokenizer="char")
    trunk.load().save_pretrained(paths["text_llm"], safe_serialization=True)
    trunk.load_tokenizer().save_pretrained(paths["text_llm"])
    (root / "done").write_text("ok\n")
    return paths
