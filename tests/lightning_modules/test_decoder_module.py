"""DecoderModule, and every decoder config parsed and run with fast_dev_run."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lightning_modules.decoder_module import DecoderModule
from moss_components.cli.lightning_cli import run_lightning_cli
from moss_components.decoders import FlowMatchingDecoder, load_decoder
from moss_components.quantizers import CosineVQ
from moss_components.tokenizers import SemanticVQTokenizer, save_pretrained
from moss_components.vocoders import GriffinLimVocoder, VocosVocoder, load_vocoder

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("tok_tests", Path(__file__).with_name("test_tokenizer_module.py"))
_tok_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tok_tests)
make_corpus = _tok_tests.make_corpus


def tiny_tokenizer(path: Path, codebook_size: int = 512) -> Path:
    tok = SemanticVQTokenizer(
        n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, quantizer=CosineVQ(dim=64, codebook_size=codebook_size)
    )
    return save_pretrained(tok, path)


def decoder_args(config: str, tmp: Path, corpus: Path, tok: Path) -> list[str]:
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
        f"--model.init_args.tokenizer_path={tok}",
        f"--model.init_args.decoder_export_dir={tmp / 'decoder'}",
        f"--model.init_args.vocoder_export_dir={tmp / 'vocoder'}",
        "--model.init_args.decoder.init_args.steps=2",
        "--model.init_args.sample_items=1",
    ]


def test_tiny_decoder_config_fast_dev_run_and_export(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    tok = tiny_tokenizer(tmp_path / "tok")
    cli = run_lightning_cli(decoder_args("configs/decoder/tiny.yaml", tmp_path, corpus, tok))
    assert isinstance(cli.model, DecoderModule)
    dec, voc = load_decoder(tmp_path / "decoder"), load_vocoder(tmp_path / "vocoder")
    mel = dec.decode(torch.randint(0, 512, (1, 5)), steps=2)
    assert mel.shape == (1, 80, 20) and voc(mel).shape == (1, 20 * 320)


def test_moss_decoder_config_parses(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    args = ["fit", "-c", str(REPO / "configs/decoder/moss.yaml"), f"--data.init_args.manifest_dir={corpus}"]
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli([*args, "--print_config"])
    assert exit_info.value.code in (0, None)


@pytest.mark.slow
def test_moss_decoder_config_fast_dev_run(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    tok = tiny_tokenizer(tmp_path / "tok", codebook_size=16384)
    args = decoder_args("configs/decoder/moss.yaml", tmp_path, corpus, tok)
    run_lightning_cli([*args, "--trainer.precision=32"])


def test_wrong_vocoder_class_is_rejected(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=2)
    tok = tiny_tokenizer(tmp_path / "tok")
    args = decoder_args("configs/decoder/tiny.yaml", tmp_path, corpus, tok)
    with pytest.raises(SystemExit):
        run_lightning_cli([*args, "--model.init_args.vocoder=moss_components.quantizers.FSQ"])


def test_separate_training_and_checks(tmp_path):
    dec = FlowMatchingDecoder(codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1)
    voc = VocosVocoder(dim=32, depth=1)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        DecoderModule(decoder=dec, vocoder=voc)
    with pytest.raises(ValueError, match="needs a trainable vocoder"):
        DecoderModule(vocoder=GriffinLimVocoder(), train_decoder=False)
    with pytest.raises(ValueError, match="decoder mel"):
        DecoderModule(decoder=dec, vocoder=VocosVocoder(n_mels=64, dim=32, depth=1), train_vocoder=False,
                      tokenizer=SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1,
                                                    quantizer=CosineVQ(dim=64, codebook_size=64)))  # fmt: skip
    m = DecoderModule(vocoder=voc, train_decoder=False, warmup_steps=10, min_lr_ratio=0.1)
    m.trainer = SimpleNamespace(estimated_stepping_batches=100)
    setup = m.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["params"][0] is next(voc.parameters())
    peak = optimizer.param_groups[0]["initial_lr"]
    for _ in range(100):
        optimizer.step(), scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * peak)  # annealed by the run's last step


def test_decoder_and_vocoder_gradients_are_clipped_each_on_its_own():
    dec = FlowMatchingDecoder(codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1)
    voc = VocosVocoder(dim=32, depth=1)
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1,
                              quantizer=CosineVQ(dim=64, codebook_size=64))  # fmt: skip
    m = DecoderModule(decoder=dec, vocoder=voc, tokenizer=tok)

    def set_grads(part, norm):
        grads = [torch.randn_like(p) for p in part.parameters()]
        total = torch.nn.utils.get_total_norm(grads)
        for p, g in zip(part.parameters(), grads):
            p.grad = g * norm / total

    def norm(part):
        return float(torch.nn.utils.get_total_norm([p.grad for p in part.parameters()]))

    set_grads(dec, 0.5), set_grads(voc, 10.0)
    m.configure_gradient_clipping(None, 1.0, "norm")
    # one clip over both would have scaled the decoder's 0.5 by 1 / 10
    assert norm(dec) == pytest.approx(0.5, rel=1e-4) and norm(voc) == pytest.approx(1.0, rel=1e-4)
    set_grads(dec, 3.0), set_grads(voc, 0.2)
    m.configure_gradient_clipping(None, 1.0, "norm")
    assert norm(dec) == pytest.approx(1.0, rel=1e-4) and norm(voc) == pytest.approx(0.2, rel=1e-4)
    m.configure_gradient_clipping(None, 0.001, "value")
    assert max(float(p.grad.abs().max()) for p in [*dec.parameters(), *voc.parameters()]) <= 0.001 + 1e-9


def test_samples_written_to_a_folder(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    from lightning_modules.data import AudioTextDataModule

    corpus = make_corpus(tmp_path / "corpus", n=2)
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, quantizer=CosineVQ(64, 64))
    dec = FlowMatchingDecoder(codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1, steps=2)
    module = DecoderModule(decoder=dec, vocoder=VocosVocoder(dim=32, depth=1), tokenizer=tok)
    logger = CSVLogger(tmp_path)
    trainer = Trainer(
        max_steps=1, limit_val_batches=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, AudioTextDataModule(manifest_dir=str(corpus), batch_size=2))
    samples = list(Path(logger.log_dir, "samples").rglob("*"))
    assert any(p.suffix == ".png" for p in samples) and any(p.suffix == ".wav" for p in samples)
    for key in ("val/fm_loss", "val/stft_loss", "val/decoded_mel_l1", "train/fm_loss", "train/stft_loss"):
        assert key in trainer.callback_metrics, key
