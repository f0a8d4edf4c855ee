"""TokenizerModule / ASRModule, and every tokenizer and ASR config parsed and run with fast_dev_run."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_modules.tokenizer_module import TokenizerModule, code_usage_and_perplexity
from moss_components.cli.lightning_cli import run_lightning_cli
from moss_components.tokenizers import SemanticVQTokenizer, load_speech_tokenizer

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["the cat sat", "paris is in france", "one plus one is two", "hello there", "it's blue"]


def make_corpus(root: Path, n: int = 6) -> Path:
    """A few WAVs of tones + noise with read-speech manifests (``read/{train,validation,test}.jsonl``).

    The rows name a built-in training voice, so configs that re-speak the built-in corpus (``revoice``) take them.
    """
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "read").mkdir(exist_ok=True)
    (root / "corpus.json").write_text("{}")
    for split in ("train", "validation", "test"):
        rows = []
        for i in range(n):
            dur = 0.6 + 0.1 * i
            t = np.arange(int(16000 * dur)) / 16000
            wav = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)
            rel = f"wav/{split}-{i}.wav"
            sf.write(root / rel, wav.astype(np.float32), 16000)
            rows.append(
                {"id": f"{split}-{i}", "audio": rel, "text": TEXTS[i % len(TEXTS)], "voice": "en-us+m3",
                 "duration": dur, "sample_rate": 16000}
            )  # fmt: skip
        (root / "read" / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def fit_args(config: str, tmp: Path, corpus: Path, export: str = "export_dir") -> list[str]:
    return [
        "fit",
        "-c",
        str(REPO / config),
        f"--data.init_args.manifest_dir={corpus}",
        "--data.init_args.batch_size=2",
        "--trainer.fast_dev_run=1",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp}",
        "--trainer.logger=false",
        f"--model.init_args.{export}={tmp / 'export'}",
    ]


def test_usage_and_perplexity():
    assert code_usage_and_perplexity(torch.tensor([5, 5, 0, 0])) == (0.5, pytest.approx(2.0))
    assert code_usage_and_perplexity(torch.zeros(3)) == (0.0, 0.0)


def test_tiny_tokenizer_config_fast_dev_run_and_export(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    cli = run_lightning_cli(fit_args("configs/tokenizer/tiny.yaml", tmp_path, corpus))
    assert isinstance(cli.model, TokenizerModule)
    tokenizer = cli.model.tokenizer
    # The tiny preset's budget (<= 3M) is what encoding runs: encoder + quantizer (2.08M). The training-only CTC
    # heads (1.01M after the quantizer, 0.12M on the encoder) bring the whole to 3.20M.
    encoding = sum(p.numel() for m in (tokenizer.encoder, tokenizer.quantizer) for p in m.parameters())
    assert encoding <= 3_000_000 and sum(p.numel() for p in tokenizer.parameters()) <= 3_250_000
    assert tokenizer.codebook_size == 512
    tok = load_speech_tokenizer(tmp_path / "export")
    assert tok.frame_rate == 12.5
    assert tok.encode(torch.randn(16000) * 0.1, 16000).ids.shape == (1, 12)


def test_tiny_asr_config_fast_dev_run(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    cli = run_lightning_cli(fit_args("configs/asr/tiny.yaml", tmp_path, corpus))
    assert cli.model.recognizer.frame_rate == 25.0


def test_wrong_tokenizer_class_is_rejected(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    args = fit_args("configs/tokenizer/tiny.yaml", tmp_path, corpus)
    args.append("--model.init_args.tokenizer=moss_components.vocoders.GriffinLimVocoder")
    with pytest.raises(SystemExit):
        run_lightning_cli(args)


def test_moss_tokenizer_config_parses(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    args = ["fit", "-c", str(REPO / "configs/tokenizer/moss.yaml"), f"--data.init_args.manifest_dir={corpus}"]
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli([*args, "--print_config"])
    assert exit_info.value.code in (0, None)


@pytest.mark.slow
def test_moss_tokenizer_config_fast_dev_run(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    args = fit_args("configs/tokenizer/moss.yaml", tmp_path, corpus)
    cli = run_lightning_cli([*args, "--trainer.precision=32"])
    assert cli.model.tokenizer.codebook_size == 16384


def test_module_logs_cer_usage_and_perplexity(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    from lightning_modules.data import AudioTextDataModule

    corpus = make_corpus(tmp_path / "corpus", n=4)
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1)
    module = TokenizerModule(tok, export_dir=str(tmp_path / "exp"))
    trainer = Trainer(
        max_steps=2, limit_val_batches=1, logger=CSVLogger(tmp_path), enable_checkpointing=False,
        enable_progress_bar=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, AudioTextDataModule(manifest_dir=str(corpus), batch_size=2))
    metrics = trainer.callback_metrics
    for key in ("val/cer", "val/codebook_usage", "val/perplexity", "train/ctc_loss", "train/codebook_usage"):
        assert key in metrics, key
    assert (tmp_path / "exp" / "model.safetensors").is_file()


def test_intermediate_ctc_is_added_to_the_training_loss_at_its_weight():
    torch.manual_seed(0)
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, encoder_ctc_weight=0.5).train()
    module = TokenizerModule(tok)
    batch = {"wav": torch.randn(2, 16000) * 0.1, "wav_lengths": torch.tensor([16000, 12000]), "text": ["ab c", "d"]}
    out, ctc, inter = module._step(batch)
    targets, target_lengths = module._targets(batch["text"], "cpu")
    ((log_probs, lengths, weight),) = out.intermediate
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=0, zero_infinity=True
    )
    torch.testing.assert_close(inter, 0.5 * expected)
    assert inter > 0 and not torch.equal(inter, 0.5 * ctc)
