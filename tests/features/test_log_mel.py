import numpy as np
import pytest
import torch

from moss_components.features import LogMel


def test_causal_frame_count_and_stream_equals_whole():
    mel = LogMel(16000, n_fft=400, hop_length=160, n_mels=40, causal=True)
    wav = torch.randn(2, 16000) * 0.1
    whole = mel(wav)
    assert whole.shape == (2, 40, 100)
    state, parts = None, []
    for piece in wav.split(333, dim=1):
        out, state = mel.stream(piece, state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, -1), whole, rtol=1e-5, atol=1e-5)


def test_causal_frames_do_not_look_ahead():
    mel = LogMel(16000, n_fft=400, hop_length=160, n_mels=40, causal=True)
    wav = torch.randn(1, 8000)
    a = mel(wav)
    wav2 = wav.clone()
    wav2[:, 4000:] = 0
    b = mel(wav2)
    torch.testing.assert_close(a[..., : 4000 // 160], b[..., : 4000 // 160])


def test_centered_matches_numpy_reference():
    sr, n_fft, hop = 16000, 512, 128
    mel = LogMel(sr, n_fft=n_fft, hop_length=hop, n_mels=32, causal=False)
    wav = torch.randn(3000)
    got = mel(wav)[0]
    assert got.shape == (32, 3000 // hop + 1)
    # reference: numpy rfft on reflect-padded frames with the same filter bank
    x = np.pad(wav.numpy().astype(np.float64), n_fft // 2, mode="reflect")
    win = torch.hann_window(n_fft).double().numpy()
    frames = np.stack([x[i * hop : i * hop + n_fft] * win for i in range(got.shape[1])])
    mag = np.abs(np.fft.rfft(frames, axis=-1)).T
    ref = np.log(np.maximum(mel.mel_fb.double().numpy() @ mag, 1e-5))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-3, atol=1e-3)


def test_tone_peaks_in_right_band():
    mel = LogMel(16000, n_fft=1024, hop_length=320, n_mels=80, causal=False)
    t = torch.arange(16000) / 16000
    low = mel(torch.sin(2 * torch.pi * 300 * t)).mean(-1).argmax()
    high = mel(torch.sin(2 * torch.pi * 4000 * t)).mean(-1).argmax()
    assert low < high


def test_bad_settings():
    with pytest.raises(ValueError, match="win_length"):
        LogMel(n_fft=256, win_length=512)


def test_float32_under_bf16_autocast():
    mel = LogMel(16000, 400, 160, n_mels=40, causal=False)
    wav = torch.randn(2, 4000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = mel(wav)
    assert under.dtype == torch.float32 and torch.equal(under, mel(wav))
