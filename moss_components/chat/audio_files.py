"""Audio files of a chat: read a question in any rate / channel layout / sample format, write the answer as it comes.

Reading goes through :func:`moss_components.audio.to_mono_float32`, which downmixes and resamples with a warning.
A file that cannot be used raises :class:`AudioFileError` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from moss_components.audio import to_mono_float32

__all__ = ["AudioFileError", "StreamingWavWriter", "read_question_audio"]


class AudioFileError(ValueError):
    """An input audio file that cannot be read or used; the message names the file."""


def read_question_audio(path: str | Path, target_rate: int, min_samples: int = 1) -> torch.Tensor:
    """``(T,)`` float32 mono in [-1, 1] at ``target_rate`` Hz from any file libsndfile reads (WAV, FLAC, OGG ...).

    Int PCM is scaled, several channels are averaged, another rate is resampled (soxr), each with a warning.

    Raises:
        AudioFileError: the file is missing, not audio, empty, has NaN/inf samples, or is shorter than
            ``min_samples`` after resampling (e.g. less than one speech-tokenizer frame).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"question audio {str(path)!r} does not exist (expected a WAV file)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or TypeError depending on the damage
        raise AudioFileError(
            f"cannot read question audio {str(path)!r}: {err} (expected a WAV/FLAC/OGG file libsndfile can open)"
        ) from err
    if data.shape[0] == 0:
        raise AudioFileError(f"question audio {str(path)!r} has 0 samples")
    if not np.isfinite(data).all():
        raise AudioFileError(f"question audio {str(path)!r}: {int((~np.isfinite(data)).sum())} samples are NaN/inf")
    try:
        return to_mono_float32(
            torch.from_numpy(data.T.copy()), rate, target_rate, channels_first=True, min_samples=min_samples,
            name=str(path),
        )  # fmt: skip
    except ValueError as err:
        raise AudioFileError(str(err)) from err


class StreamingWavWriter:
    """A mono 16-bit WAV written chunk by chunk; the header is brought up to date after each chunk, so a reader
    sees a valid, growing file.

    ``with StreamingWavWriter(path, 16000) as w: w.write(chunk)``; ``chunk`` is ``(T,)`` float in [-1, 1].
    """

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.samples = 0
        self._file = sf.SoundFile(str(self.path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16")

    def write(self, chunk: torch.Tensor) -> None:
        if chunk.numel() == 0:
            return
        self._file.write(chunk.detach().float().clamp(-1, 1).cpu().numpy())
        self._file.flush()
        self.samples += chunk.numel()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StreamingWavWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
