"""eSpeak NG through ctypes: text in, 16-bit PCM at 22,050 Hz out.

The shared library and its data come from the PyPI package ``espeakng-loader``; no binary is called and nothing is
installed through apt. libespeak-ng is a process-global singleton that is not thread-safe, so one process owns one
:class:`EspeakSynth`; parallel synthesis uses processes (see ``synth_corpus``), never threads.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moss_components.data.random_variants import VARIANT_SLOT, data_dir_with_variant_slot

# espeak_AUDIO_OUTPUT and espeak_PARAMETER values from speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE = 1
ESPEAK_VOLUME = 2
ESPEAK_PITCH = 3
ESPEAK_RANGE = 4
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues synthesis.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# Language voices whose text is English in Latin script (en-Shaw is Shavian script: left out).
ENGLISH_LANGUAGES = (
    "en",
    "en-us",
    "en-029",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-us-nyc",
)


@dataclass(frozen=True)
class VoiceSpec:
    """One eSpeak voice setting.

    Args:
        language: eSpeak language voice (``"en-us"``, ``"en-gb-scotland"``...).
        variant: voice variant file under ``voices/!v`` (``"m3"``, ``"f2"``, ``"klatt"``...), or ``""`` for none.
        rate: speaking rate in words per minute (eSpeak: 80-450; default 175).
        pitch: base pitch 0-100 (default 50).
    """

    language: str
    variant: str = ""
    rate: int = 175
    pitch: int = 50

    @property
    def name(self) -> str:
        """The voice as ``espeak_SetVoiceByName`` takes it and as manifests record it: ``"en-us+m3"``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language


def data_path() -> str:
    import espeakng_loader

    return espeakng_loader.get_data_path()


def available_variants() -> list[str]:
    """Variant names shipped in espeakng-loader's data (``voices/!v``), sorted."""
    vdir = Path(data_path()) / "voices" / "!v"
    return sorted(p.name for p in vdir.iterdir() if p.is_file())


def available_english_languages() -> list[str]:
    """The English language voices of :data:`ENGLISH_LANGUAGES` that espeakng-loader's data actually has."""
    gmw = Path(data_path()) / "lang" / "gmw"
    have = {p.name.lower() for p in gmw.iterdir()}
    return [lang for lang in ENGLISH_LANGUAGES if lang in have]


class EspeakSynth:
    """Synthesize text with libespeak-ng in synchronous mode (one per process).

    Example::

        synth = EspeakSynth.shared()
        pcm = synth.synthesize("the answer is paris", VoiceSpec("en-us", "m3", rate=160, pitch=45))
        # pcm: (T,) int16 at synth.sample_rate (22,050 Hz)
    """

    _instance_pid: int | None = None
    _shared: EspeakSynth | None = None

    @classmethod
    def shared(cls) -> EspeakSynth:
        """This process's synthesizer, created on first use, over a private data directory with the variant file
        that :func:`~moss_components.data.random_variants.write_random_variant` rewrites."""
        if cls._shared is None or cls._instance_pid != os.getpid():
            cls._shared = cls(str(data_dir_with_variant_slot(data_path())))
        return cls._shared

    def __init__(self, data_dir: str | None = None) -> None:
        """``data_dir``: eSpeak's data directory (default espeakng-loader's, :func:`data_path`)."""
        if EspeakSynth._instance_pid == os.getpid():
            raise RuntimeError(
                "libespeak-ng is a process-global singleton: one EspeakSynth per process (use EspeakSynth.shared())"
            )
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.restype = ctypes.c_int
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        # eSpeak's noise (breathy variants, Klatt aspiration) draws from its own RNG, seeded from the clock at
        # initialization, and from libc rand(): both are seeded per utterance for reproducible audio.
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._libc = ctypes.CDLL(None)
        self._lib.espeak_Synth.restype = ctypes.c_int
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.data_dir = data_dir or data_path()
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_dir.encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}); data path {self.data_dir}")
        self.sample_rate: int = int(rate)
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        EspeakSynth._instance_pid = os.getpid()

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def set_voice(self, voice: VoiceSpec) -> None:
        # The slot's file changes between utterances: always reload it.
        if voice.name != self._voice or voice.variant == VARIANT_SLOT:
            err = self._lib.espeak_SetVoiceByName(voice.name.encode())
            if err != EE_OK:
                raise ValueError(
                    f"espeak voice {voice.name!r} not found (error {err}); languages: {available_english_languages()}"
                )
            self._voice = voice.name
        # Rate and pitch are reset by SetVoiceByName, so set them every time.
        self._lib.espeak_SetParameter(ESPEAK_RATE, int(voice.rate), 0)
        self._lib.espeak_SetParameter(ESPEAK_PITCH, int(voice.pitch), 0)

    def synthesize(self, text: str, voice: VoiceSpec, seed: int = 0) -> np.ndarray:
        """Return ``(T,)`` int16 PCM at :attr:`sample_rate` Hz for ``text`` spoken by ``voice``.

        ``seed`` seeds eSpeak's noise generators. The audio also depends slightly on what this process synthesized
        before (eSpeak keeps oscillator state), so identical audio needs the same sequence of calls in a fresh
        process, which is how ``synth_corpus`` renders.
        """
        if not text.strip():
            raise ValueError("cannot synthesize empty text")
        self.set_voice(voice)
        self._lib.espeak_ng_SetRandSeed(int(seed))
        self._libc.srand(int(seed) & 0xFFFFFFFF)
        self._chunks = []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self._lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err} on {text!r}")
        if not self._chunks:
            raise RuntimeError(f"espeak produced no audio for {text!r} with voice {voice.name}")
        return np.concatenate(self._chunks).astype(np.int16, copy=False)

    def synthesize_float(self, text: str, voice: VoiceSpec, sample_rate: int, seed: int = 0) -> np.ndarray:
        """:meth:`synthesize`, as ``(T,)`` float32 in [-1, 1) at ``sample_rate`` Hz (soxr HQ): how the corpus and
        the on-the-fly :class:`~moss_components.data.revoicing.Revoicer` render speech."""
        import soxr

        pcm = self.synthesize(text, voice, seed=seed)
        wav = soxr.resample(pcm.astype(np.float32) / 32768.0, self.sample_rate, sample_rate, quality="HQ")
        return np.clip(wav, -1.0, 32767 / 32768)
