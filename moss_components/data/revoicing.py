"""Speak a training transcript again in a fresh training voice, on the fly, with eSpeak NG.

The built-in corpus speaks each training sentence once, in one voice; a tokenizer trained for 20 epochs hears the
same (sentence, voice) pairs 20 times. Re-speaking each item in a voice drawn anew from the training pool gives a new
pair every time, in the voices of the training pool only (the unseen-voice test stays unseen). It is rendered exactly
as ``synth_corpus`` renders the corpus (:meth:`EspeakSynth.synthesize_float`), at about 2.5 ms
per utterance on one core, in the process that calls it (eSpeak is a process-global singleton).
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import torch

from moss_components.data.espeak import EspeakSynth, VoiceSpec
from moss_components.data.random_variants import VARIANT_SLOT, write_random_variant
from moss_components.data.synth_corpus import spoken_form
from moss_components.data.voices import VoicePool, train_pool


class Revoicer:
    """Render ``text`` in a voice drawn from a pool.

    Args:
        voices: ``"tiny"`` (the 90 voices of the tiny corpus), ``"wide"`` (the 426 of ``tiny-wide``), or a
            :class:`~moss_components.data.voices.VoicePool`.
        sample_rate: Hz of the returned audio.
        random_timbres: the share of utterances spoken in a new random variant
            (:func:`~moss_components.data.random_variants.random_variant`) of one of the pool's language voices,
            instead of one of the pool's variants.
    """

    def __init__(self, voices: str | VoicePool = "wide", sample_rate: int = 16000, random_timbres: float = 0.0) -> None:
        if not 0.0 <= random_timbres <= 1.0:
            raise ValueError(f"random_timbres {random_timbres}: expected a share in [0, 1]")
        self.random_timbres = random_timbres
        if isinstance(voices, str):
            if voices not in ("tiny", "wide"):
                raise ValueError(f"voices {voices!r}: expected 'tiny', 'wide' or a VoicePool")
            voices = train_pool(wide=voices == "wide")
        self.pool = voices
        self.sample_rate = sample_rate

    @staticmethod
    def check_corpus(records: list[dict], source: object) -> None:
        """Raise unless every row of ``records`` was spoken by a training voice of the built-in corpus.

        Re-speaking swaps a row's recording for eSpeak speech of its transcript: right for the built-in corpus,
        silently wrong for recorded speech.
        """
        builtin = set(train_pool(wide=True).names)
        foreign = Counter(str(r.get("voice")) for r in records if r.get("voice") not in builtin)
        if foreign:
            voice, n = foreign.most_common(1)[0]
            raise ValueError(
                f"revoice re-speaks the built-in eSpeak corpus, but {sum(foreign.values())} of {len(records)} rows of "
                f"{source} have other voices (most often {voice!r}, {n} rows); set revoice 0 for other corpora"
            )

    def __call__(self, text: str, rng: random.Random, question: bool = False) -> torch.Tensor:
        """``(T,)`` float32 at :attr:`sample_rate` Hz: ``text`` (no end punctuation) in a voice drawn by ``rng``."""
        synth = EspeakSynth.shared()
        voice = self.pool.sample(rng)
        if rng.random() < self.random_timbres:
            write_random_variant(synth.data_dir, rng)
            voice = VoiceSpec(voice.language, VARIANT_SLOT, rate=voice.rate, pitch=voice.pitch)
        wav = synth.synthesize_float(spoken_form(text, question), voice, self.sample_rate, seed=rng.randrange(2**31))
        return torch.from_numpy(wav.astype(np.float32, copy=False))
