import math

import numpy as np
import pytest
import torch

from moss_components.audio import resample, to_mono_float32


def test_int16_is_scaled_to_unit_range():
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    out = to_mono_float32(pcm, 16000)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([0.0, 0.5, -1.0, 32767 / 32768]))


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_stereo_is_downmixed_with_a_warning(layout):
    left, right = torch.ones(100), -torch.ones(100) * 0.5
    wav = torch.stack([left, right]) if layout == "channels_first" else torch.stack([left, right], dim=1)
    with pytest.warns(UserWarning, match="2 channels downmixed"):
        out = to_mono_float32(wav, 16000)
    assert torch.allclose(out, torch.full((100,), 0.25))


def test_resampling_keeps_a_tone_and_warns():
    sr_in, sr_out, f = 22050, 16000, 440.0
    t = torch.arange(sr_in) / sr_in
    with pytest.warns(UserWarning, match="22050 Hz -> 16000 Hz"):
        out = to_mono_float32(torch.sin(2 * math.pi * f * t), sr_in, sr_out)
    assert out.numel() == sr_out
    expected = torch.sin(2 * math.pi * f * torch.arange(sr_out) / sr_out)
    assert torch.allclose(out[1000:-1000], expected[1000:-1000], atol=1e-3)


def test_resample_batch_matches_rows():
    x = torch.randn(3, 800)
    y = resample(x, 8000, 16000)
    assert y.shape == (3, 1600)
    assert torch.allclose(y[1], resample(x[1], 8000, 16000))


@pytest.mark.parametrize(
    "wav, match",
    [
        (torch.zeros(0), "empty"),
        (torch.tensor([0.0, float("nan"), 1.0]), "1 of 3 samples are NaN or inf"),
        (torch.tensor([0.0, float("inf")]), "NaN or inf"),
        (torch.zeros(2, 2, 2), r"expected \(T,\) or \(C, T\)"),
    ],
)
def test_bad_audio_raises_a_clear_error(wav, match):
    with pytest.raises(ValueError, match=match):
        to_mono_float32(wav, 16000, name="clip.wav")


def test_shorter_than_one_frame_is_rejected():
    with pytest.raises(ValueError, match="10 samples is shorter than the minimum of 1280"):
        to_mono_float32(torch.zeros(10), 16000, min_samples=1280)
