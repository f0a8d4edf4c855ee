import random
from pathlib import Path

import espeakng_loader
import numpy as np

from moss_components.data.espeak import EspeakSynth, VoiceSpec
from moss_components.data.random_variants import VARIANT_SLOT, random_variant, write_random_variant

KEYWORDS = {"language", "name", "gender", "pitch", "formant", "voicing", "consonants", "flutter", "roughness",
            "stressAdd", "stressAmp", "breath", "breathw", "tone", "echo", "klatt"}  # fmt: skip


def test_the_private_data_dir_has_every_shipped_file_and_the_slot():
    shipped, ours = Path(espeakng_loader.get_data_path()), Path(EspeakSynth.shared().data_dir)
    assert ours != shipped
    assert {p.name for p in shipped.iterdir()} == {p.name for p in ours.iterdir()}
    variants = {p.name for p in (ours / "voices" / "!v").iterdir()}
    assert {p.name for p in (shipped / "voices" / "!v").iterdir()} | {VARIANT_SLOT} == variants
    assert (ours / "lang" / "gmw" / "en-US").resolve() == (shipped / "lang" / "gmw" / "en-US").resolve()


def test_random_variants_are_reproducible_and_use_only_espeak_keywords():
    a = [random_variant("x", random.Random(seed)) for seed in range(50)]
    assert a == [random_variant("x", random.Random(seed)) for seed in range(50)]
    assert len(set(a)) == 50
    for text in a:
        assert {line.split()[0] for line in text.splitlines() if line} <= KEYWORDS
        pitch = next(line for line in text.splitlines() if line.startswith("pitch")).split()
        assert 60 <= int(pitch[1]) < int(pitch[2]) <= 330  # Hz, base below top


def test_espeak_rereads_the_slot_before_each_utterance():
    synth, rng = EspeakSynth.shared(), random.Random(0)
    voice = VoiceSpec("en-us", VARIANT_SLOT, rate=170, pitch=50)
    spectra = []
    for _ in range(3):
        write_random_variant(synth.data_dir, rng)
        pcm = synth.synthesize("the capital of japan is tokyo.", voice).astype(np.float32)
        assert np.abs(pcm).max() > 1000  # speech, not silence
        spectrum = np.abs(np.fft.rfft(pcm, n=2**16))
        spectra.append(spectrum / spectrum.sum())
    # each new variant gives another timbre: spectral centroids apart by more than 5%
    centroids = sorted(float((s * np.arange(s.size)).sum()) for s in spectra)
    assert all(b > 1.05 * a for a, b in zip(centroids, centroids[1:])), centroids
