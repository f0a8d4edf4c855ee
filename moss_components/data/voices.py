"""Voice pools of the built-in corpus: training voices, voices never heard in training, and the assistant voice.

A voice is an eSpeak language voice plus a variant (timbre), with a rate and pitch drawn per utterance. The unseen
pool uses variants *and* language voices that the training pool never uses, so a test voice is new in timbre and
accent. Only names present in espeakng-loader's data are used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from moss_components.data.espeak import VoiceSpec, available_english_languages, available_variants

TRAIN_LANGUAGES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-us-nyc")
UNSEEN_LANGUAGES = ("en-029", "en-gb-x-gbcwmd")
# "" = the language voice's own default timbre. Novelty variants (whisper, croak, robots, "fast") are left out: a demo
# needs speech a small recognizer can learn.
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2", "david", "john", "linda")
# Every other variant but the novelty ones and the relatives of unseen ones (klatt3-6, steph2-3), for the `wide` pool:
# 71 variants instead of 15. The tiny tokenizer then read unseen voices at 9.9% CER instead of 12.9% in the same
# 10 CPU-minutes with seed 0 (lr 2e-3); with lr 5e-4 and a 400-step warm-up, seeds 0-6 read them at 8.9-14.4%.
# The tiny demo's decoder and LM do worse with them (see the README).
EXTRA_TRAIN_VARIANTS = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky",
    "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "Reed", "adam", "anika", "announcer", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "ed", "edward", "edward2", "grandma", "grandpa", "gustave", "ian", "iven",
    "iven2", "iven3", "iven4", "kaukovalta", "marcelo", "max", "michel", "miguel", "mike2", "norbert", "pablo",
    "pedro", "quincy", "rob", "robert", "sandro", "shelby", "travis", "victor", "zac",
)  # fmt: skip
UNSEEN_VARIANTS = ("m7", "m8", "f4", "f5", "klatt4", "paul", "steph")
RATE_RANGE = (135, 200)  # words per minute
PITCH_RANGE = (30, 70)
ASSISTANT_VOICE = VoiceSpec("en-us", "", rate=165, pitch=50)


@dataclass
class VoicePool:
    """Draws :class:`VoiceSpec` s from language voices x variants with random rate and pitch."""

    languages: tuple[str, ...]
    variants: tuple[str, ...]
    rate_range: tuple[int, int] = RATE_RANGE
    pitch_range: tuple[int, int] = PITCH_RANGE
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        have_lang, have_var = set(available_english_languages()), set(available_variants()) | {""}
        self.languages = tuple(v for v in self.languages if v in have_lang)
        self.variants = tuple(v for v in self.variants if v in have_var)
        if not self.languages or not self.variants:
            raise RuntimeError(
                f"espeakng-loader's data lacks the voices wanted: languages {self.languages}, variants {self.variants}"
            )
        self.names = [VoiceSpec(lang, var).name for lang in self.languages for var in self.variants]

    def sample(self, rng: random.Random) -> VoiceSpec:
        return VoiceSpec(
            rng.choice(self.languages),
            rng.choice(self.variants),
            rate=rng.randint(*self.rate_range),
            pitch=rng.randint(*self.pitch_range),
        )


def train_pool(wide: bool = False) -> VoicePool:
    """Training voices: 6 accents x 15 variants (90 voices), or x 71 with ``wide`` (426 voices)."""
    return VoicePool(TRAIN_LANGUAGES, TRAIN_VARIANTS + (EXTRA_TRAIN_VARIANTS if wide else ()))


def unseen_pool() -> VoicePool:
    """Voices never heard in training: an unseen variant with any language, or an unseen language."""
    return VoicePool(TRAIN_LANGUAGES + UNSEEN_LANGUAGES, UNSEEN_VARIANTS)
