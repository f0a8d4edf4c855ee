"""Test-wide settings (the Triton interpreter on a CPU-only machine, one thread per xdist worker, fixed seeds) and
the shared fixtures: a micro corpus (12 facts) synthesized once per session and its speech-id cache."""

import importlib.util
import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # Must be set before triton is imported anywhere.
    os.environ.setdefault("TRITON_INTERPRET", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

import pytest  # noqa: E402

from moss_components.data.speech_cache import encode_manifest  # noqa: E402
from moss_components.data.synth_corpus import build_corpus  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


class StandInTokenizer(torch.nn.Module):
    """Implements the ``SpeechTokenizer`` methods the data pipeline uses: 12.5 Hz ids from frame log-energy.

    A deterministic test double, so data tests do not depend on a trained tokenizer; the real one is exercised by
    the tokenizer, CLI and pipeline tests.
    """

    sample_rate, frame_rate, codebook_size, num_codebooks, samples_per_frame = 16000, 12.5, 32, 1, 1280

    def encode(self, wav, sample_rate, wav_lengths=None):
        assert sample_rate == self.sample_rate
        clips = list(wav) if isinstance(wav, (list, tuple)) else [w for w in wav]
        n = [max(1, c.numel() // self.samples_per_frame) for c in clips]
        ids = torch.zeros(len(clips), max(n), dtype=torch.long)
        for i, c in enumerate(clips):
            frames = c[: n[i] * self.samples_per_frame].reshape(n[i], -1)
            energy = frames.pow(2).mean(-1).clamp_min(1e-10).log10()  # about -10 .. 0
            ids[i, : n[i]] = ((energy + 10) * 3.2).long().clamp(0, self.codebook_size - 1)
        return ids, torch.tensor(n)


@pytest.fixture
def espeak_calls(monkeypatch):
    """Every ``(text, VoiceSpec)`` this process's shared eSpeak is asked to speak, in order."""
    from moss_components.data.espeak import EspeakSynth

    calls = []
    synth = EspeakSynth.shared()
    speak = synth.synthesize

    def spy(text, voice, seed=0):
        calls.append((text, voice))
        return speak(text, voice, seed)

    monkeypatch.setattr(synth, "synthesize", spy)
    return calls


@pytest.fixture(scope="session")
def micro_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "micro"
    build_corpus(out, preset="micro", seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def micro_cache(micro_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    tok = StandInTokenizer()
    for sub in ("read", "qa"):
        for split in ("train", "validation", "test"):
            encode_manifest(
                tok, micro_corpus / sub / f"{split}.jsonl", out, batch_size=8, progress=False, log=lambda s: None
            )
    return out


@pytest.fixture(scope="session")
def standin_tokenizer_cls():
    return StandInTokenizer


@pytest.fixture(scope="session")
def lm_assets(tmp_path_factory):
    """What the stage configs point at: a micro corpus, a random tiny speech tokenizer and its speech-id cache, and
    a 6-layer text LLM directory (see ``tests/configs/lm_assets.py``)."""
    spec = importlib.util.spec_from_file_location("lm_assets", Path(__file__).parent / "configs" / "lm_assets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_lm_assets(tmp_path_factory.getbasetemp() / "lm_assets")
