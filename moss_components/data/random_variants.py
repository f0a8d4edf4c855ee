"""Random eSpeak voice variants: new timbres for training, drawn like the variant files eSpeak ships.

A variant file (``espeak-ng-data/voices/!v/*``) sets a voice's pitch, the frequency, height and width of each formant
(in percent of the language voice's), voicing and consonant strength, a spectral tone, echo and the Klatt
synthesizer. The 71 training variants are a few points in that space; the tokenizer reads voices it never heard
(other variants) worse than its training voices. :func:`random_variant` draws whole new points, within the ranges the
shipped variants span, so that training can hear as many timbres as it has utterances. (In the tiny tokenizer's
10-minute budget these harder timbres slowed the fit more than they widened it: see the README.)

eSpeak only reads variants from its data directory, so :func:`data_dir_with_variant_slot` builds a private one
(``EspeakSynth.shared()`` runs over it): links to every file of espeakng-loader's data, plus one variant file that
:func:`write_random_variant` rewrites. The shipped voices are untouched, so a shipped voice speaks the same audio
through either directory.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from multiprocessing.util import Finalize
from pathlib import Path

# The variant file that :func:`write_random_variant` rewrites: eSpeak lists at most 349 voices and ships 245, so
# new timbres go through one file rewritten before each utterance, not hundreds of files.
VARIANT_SLOT = "moss-random"


def random_variant(name: str, rng: random.Random) -> str:
    """The text of eSpeak variant file ``name``: random pitch, formants, voicing, breath, prosody, tone and echo.

    The ranges are those the shipped variants span (``f2``, ``linda``, ``grandma``, ``steph``...).
    """
    female = rng.random() < 0.5
    base = rng.uniform(120, 220) if female else rng.uniform(60, 130)  # Hz
    lines = ["language variant", f"name {name}", "gender " + ("female" if female else "male")]
    lines.append(f"pitch {base:.0f} {base + rng.uniform(15, 110):.0f}")
    # One vocal-tract scale for all formants (as VTLP), each formant then moved on its own. Heights of the upper
    # formants go down to 10%, as in grandma and steph; the lower ones carry the vowels and stay above 50%.
    scale = rng.uniform(0.95, 1.35) if female else rng.uniform(0.85, 1.1)
    for k in range(9):
        freq = 100 * scale * rng.uniform(0.88, 1.14)
        height = rng.uniform(50, 150) if k < 4 else math.exp(rng.uniform(math.log(10), math.log(150)))
        lines.append(f"formant {k} {freq:.0f} {height:.0f} {rng.uniform(50, 200):.0f}")
    lines.append(f"voicing {rng.uniform(50, 180):.0f}")
    lines.append(f"consonants {rng.uniform(50, 150):.0f} {rng.uniform(50, 150):.0f}")
    if rng.random() < 0.3:
        lines.append(f"flutter {rng.randint(0, 20)}")
    if rng.random() < 0.3:
        lines.append(f"roughness {rng.randint(0, 3)}")
    if rng.random() < 0.4:  # how stress lengthens (ms) and strengthens each stress level
        lines.append("stressAdd " + " ".join(str(rng.randint(-30, 40)) for _ in range(8)))
    if rng.random() < 0.3:
        lines.append("stressAmp " + " ".join(str(rng.randint(14, 28)) for _ in range(8)))
    if rng.random() < 0.25:  # aspiration noise per formant, and its bandwidths
        a = rng.randint(1, 8)
        lines.append(f"breath 0 {a} {a} {a} {a} {a} 0 {rng.randint(0, 10)}")
        lines.append("breathw " + " ".join(str(w) for w in (150, 150, 200, 200, 400, 400, 600, 600)))
    if rng.random() < 0.4:  # an equaliser: (frequency Hz, gain 0-255) points
        freqs = sorted(rng.sample(range(100, 4000, 50), 5))
        lines.append("tone " + " ".join(f"{f} {rng.randint(10, 255)}" for f in freqs))
    if rng.random() < 0.3:
        lines.append(f"echo {rng.randint(50, 150)} {rng.randint(5, 20)}")
    if rng.random() < 0.2:
        lines.append(f"klatt {rng.choice((1, 2))}")
    return "\n".join(lines) + "\n"


_built: dict[str, Path] = {}


def data_dir_with_variant_slot(source: str | os.PathLike) -> Path:
    """A private copy of eSpeak's data directory ``source`` (links) with the writable variant :data:`VARIANT_SLOT`.

    Built once per process (DataLoader workers each rewrite their own slot) in a temporary directory, removed at exit.
    """
    key = f"{source}:{os.getpid()}"
    if key in _built:
        return _built[key]
    source = Path(source)
    root = Path(tempfile.mkdtemp(prefix="moss-espeak-"))
    # Run at exit by this process only, also in DataLoader workers (which skip atexit); a forked child ignores it.
    Finalize(None, shutil.rmtree, args=(root,), kwargs={"ignore_errors": True}, exitpriority=0)
    data = root / "espeak-ng-data"
    data.mkdir()
    for entry in source.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (source / "voices" / "!v").iterdir():
        (variants / entry.name).symlink_to(entry)
    (variants / VARIANT_SLOT).write_text(f"language variant\nname {VARIANT_SLOT}\n")
    _built[key] = data
    return data


def write_random_variant(data_dir: str | os.PathLike, rng: random.Random) -> str:
    """Rewrite :data:`VARIANT_SLOT` in ``data_dir`` with a :func:`random_variant`; return the file's text."""
    text = random_variant(VARIANT_SLOT, rng)
    (Path(data_dir) / "voices" / "!v" / VARIANT_SLOT).write_text(text)
    return text
