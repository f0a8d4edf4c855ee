import pytest
import torch

from moss_components.features import LogMel
from moss_components.tokenizers import save_pretrained
from moss_components.vocoders import (
    GriffinLimVocoder,
    MultiResolutionSTFTLoss,
    Vocoder,
    VocosVocoder,
    load_vocoder,
)


def test_vocos_shapes_and_gradients():
    voc = VocosVocoder(n_mels=20, n_fft=256, hop_length=64, dim=32, depth=2)
    assert isinstance(voc, Vocoder) and voc.trainable
    mel = torch.randn(2, 20, 15) - 5
    wav = voc(mel)
    assert wav.shape == (2, 15 * 64)
    wav.pow(2).mean().backward()
    assert voc.embed.weight.grad is not None


def test_vocos_learns_a_tone():
    torch.manual_seed(0)
    voc = VocosVocoder(n_mels=32, n_fft=256, hop_length=64, dim=32, depth=1)
    t = torch.arange(64 * 20) / 16000
    wav = (0.5 * torch.sin(2 * torch.pi * 440 * t))[None]
    mel = voc.mel(wav)[..., :20]
    loss_fn = MultiResolutionSTFTLoss([(128, 32), (256, 64)])
    opt = torch.optim.Adam(voc.parameters(), 1e-2)
    first = None
    for _ in range(25):
        loss = loss_fn(voc(mel), wav)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.85 * first


def test_griffin_lim_reconstructs_spectrum():
    gl = GriffinLimVocoder(n_mels=80, n_fft=512, hop_length=128, n_iter=16)
    assert not gl.trainable
    t = torch.arange(16000) / 16000
    wav = (0.3 * torch.sin(2 * torch.pi * 500 * t) + 0.2 * torch.sin(2 * torch.pi * 1500 * t))[None]
    mel = gl.mel(wav)
    out = gl(mel)
    assert out.shape == (1, mel.shape[-1] * 128)
    # spectral convergence of the (linear) mel magnitudes; log-mel of empty bands is dominated by the floor
    got, ref = gl.mel(out[:, :16000])[..., 2:-2].exp(), mel[..., 2:-2].exp()
    assert torch.linalg.norm(got - ref) / torch.linalg.norm(ref) < 0.35


def test_stft_loss_zero_for_identical():
    x = torch.randn(2, 4000)
    assert MultiResolutionSTFTLoss()(x, x) < 1e-4


def test_bad_mel_shape_and_values():
    voc = VocosVocoder(n_mels=20, n_fft=256, hop_length=64, dim=16, depth=1)
    with pytest.raises(ValueError, match=r"expected a \(B, 20, frames\) log-mel"):
        voc(torch.randn(1, 10, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        voc(torch.full((1, 20, 5), float("nan")))


def test_save_load(tmp_path):
    voc = VocosVocoder(n_mels=20, n_fft=256, hop_length=64, dim=16, depth=1).eval()
    save_pretrained(voc, tmp_path / "v")
    again = load_vocoder(tmp_path / "v")
    mel = torch.randn(1, 20, 6)
    torch.testing.assert_close(voc(mel), again(mel))
    assert isinstance(again.mel, LogMel)
