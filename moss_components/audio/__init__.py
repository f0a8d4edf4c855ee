"""Waveform handling shared by every audio component."""

from moss_components.audio.waveform import resample, to_mono_float32

__all__ = ["resample", "to_mono_float32"]
