import numpy as np
import pytest
import torch

from moss_components.features.log_mel import LogMel
from moss_components.features.spec_augment import SpecAugment, mel_band_centers, slaney_mel
from moss_components.tokenizers import SemanticVQTokenizer, load_speech_tokenizer, save_pretrained


def test_band_centers_are_where_the_mel_filters_peak():
    mel = LogMel(sample_rate=16000, n_mels=64)
    freqs = np.linspace(0, 8000, 400 // 2 + 1)
    peaks = freqs[mel.mel_fb.argmax(dim=1).numpy()]
    bin_hz = freqs[1]
    np.testing.assert_allclose(mel_band_centers(64, 16000), peaks, atol=bin_hz)


def test_slaney_mel_matches_transformers():
    from transformers.audio_utils import hertz_to_mel

    hz = np.array([0.0, 50.0, 999.0, 1000.0, 1001.0, 4321.0, 8000.0, 11025.0])
    np.testing.assert_allclose(slaney_mel(torch.tensor(hz)).numpy(), hertz_to_mel(hz.copy(), "slaney"), rtol=1e-6)


def test_eval_mode_is_the_identity():
    aug = SpecAugment(64).eval()
    x = torch.randn(2, 64, 30)
    assert aug(x) is x


def test_unit_warp_changes_nothing():
    aug = SpecAugment(64)
    x = torch.randn(3, 64, 20)
    torch.testing.assert_close(aug.warp_bands(x, torch.ones(3)), x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_warp_reads_each_band_at_the_scaled_frequency(alpha):
    """Features equal to each band's centre in Hz come back as ``alpha`` times it (up to band interpolation)."""
    aug = SpecAugment(64, warp=None)
    hz = torch.tensor(mel_band_centers(64, 16000), dtype=torch.float32)
    x = hz[None, :, None].expand(1, 64, 5)
    y = aug.warp_bands(x, torch.tensor([alpha]))[0, :, 0]
    inside = hz * alpha < hz[-1]  # past the last band the warp reads the last band
    spacing = torch.diff(hz).max()
    assert (y[inside] - alpha * hz[inside]).abs().max() < spacing / 4
    assert torch.all(y[~inside] == hz[-1])


def test_warp_moves_a_formant_peak():
    """A longer vocal tract (alpha < 1 read back) moves a spectral peak up in band index, and alpha > 1 down."""
    aug = SpecAugment(64, warp=None)
    x = torch.zeros(2, 64, 1)
    x[:, 40] = 1.0
    y = aug.warp_bands(x, torch.tensor([0.9, 1.1]))
    assert y[0, :, 0].argmax() > 40 > y[1, :, 0].argmax()


def test_masks_cover_at_most_their_widths():
    torch.manual_seed(0)
    aug = SpecAugment(64, warp=None, freq_masks=2, freq_width=5, time_masks=3, time_width=4, fill=-9.0)
    y = aug(torch.randn(16, 64, 200))
    masked = y == -9.0
    full_bands = masked.all(dim=2).sum(dim=1)  # bands masked at every frame
    full_frames = masked.all(dim=1).sum(dim=1)
    assert full_bands.max() <= 2 * 5 and full_frames.max() <= 3 * 4
    assert full_bands.sum() > 0 and full_frames.sum() > 0
    partial = masked & ~masked.all(dim=2, keepdim=True) & ~masked.all(dim=1, keepdim=True)
    assert not partial.any()  # every masked cell lies in a masked band or a masked frame


def test_zero_widths_mask_nothing_and_draws_follow_the_seed():
    x = torch.randn(4, 32, 50)
    assert torch.equal(SpecAugment(32, warp=None, freq_width=0, time_width=0)(x), x)
    aug = SpecAugment(32)
    torch.manual_seed(3)
    a = aug(x)
    torch.manual_seed(3)
    assert torch.equal(aug(x), a)
    assert not torch.equal(a, x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warp": (1.1, 0.9)}, "warp"),
        ({"warp": (0.0, 1.1)}, "warp"),
        ({"time_masks": -1}, "time_masks"),
        ({"freq_width": 64}, "freq_width"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpecAugment(64, **kwargs)


def test_wrong_feature_shape_is_named():
    with pytest.raises(ValueError, match=r"\(B, 64, frames\)"):
        SpecAugment(64)(torch.randn(2, 80, 10))


def test_tokenizer_augments_in_training_only_and_keeps_it_when_saved(tmp_path):
    torch.manual_seed(0)
    plain = SemanticVQTokenizer(n_mels=32, dim=32, depth=1, heads=2, dropout=0.0)
    augmented = SemanticVQTokenizer(n_mels=32, dim=32, depth=1, heads=2, dropout=0.0, augment=SpecAugment(32))
    augmented.load_state_dict(plain.state_dict())
    wav, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    plain.eval(), augmented.eval()
    assert torch.equal(augmented.encode(wav, 16000, lengths).ids, plain.encode(wav, 16000, lengths).ids)
    augmented.train(), plain.train()
    with torch.no_grad():
        feats_aug, _ = augmented.encoder(wav, lengths)
        feats_plain, _ = plain.encoder(wav, lengths)
    assert not torch.allclose(feats_aug, feats_plain)
    loaded = load_speech_tokenizer(save_pretrained(augmented, tmp_path / "tok"))
    assert isinstance(loaded.encoder.augment, SpecAugment) and loaded.encoder.augment.warp == (0.9, 1.1)
