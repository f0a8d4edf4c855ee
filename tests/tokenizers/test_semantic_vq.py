import warnings

import numpy as np
import pytest
import torch

from moss_components.quantizers import FSQ, CosineVQ
from moss_components.tokenizers import SemanticVQTokenizer, SpeechTokenizer, load_speech_tokenizer, save_pretrained


def tiny(quantizer=None, downsample="stack", running_mean_frames=0, encoder_ctc_weight=0.0):
    return SemanticVQTokenizer(
        n_mels=32,
        dim=64,
        depth=2,
        heads=2,
        ctc_depth=1,
        quantizer=quantizer,
        downsample=downsample,
        running_mean_frames=running_mean_frames,
        encoder_ctc_weight=encoder_ctc_weight,
    ).eval()


def test_interface_and_rates():
    tok = tiny()
    assert isinstance(tok, SpeechTokenizer)
    assert tok.sample_rate == 16000 and tok.frame_rate == 12.5 and tok.num_codebooks == 1
    assert tok.codebook_size == 512 and tok.samples_per_frame == 1280
    out = tok.encode(torch.randn(2, 16000) * 0.1, 16000, wav_lengths=torch.tensor([16000, 6400]))
    assert out.ids.shape == (2, 12) and out.lengths.tolist() == [12, 5]
    assert out.ids.dtype == torch.long and out.ids.max() < 512


@pytest.mark.parametrize("downsample,running_mean_frames", [("stack", 0), ("mean", 0), ("stack", 30)])
def test_chunked_encoding_gives_the_ids_of_encoding_at_once(downsample, running_mean_frames):
    tok = tiny(downsample=downsample, running_mean_frames=running_mean_frames)
    wav = torch.randn(2, 3 * 16000 + 517) * 0.1
    whole = tok.encode(wav, 16000).ids
    for piece_len in (777, 1280, 4000):
        with tok.streaming(batch_size=2) as s:
            ids = torch.cat([s.encode_chunk(p) for p in wav.split(piece_len, dim=1)], dim=1)
        assert torch.equal(ids, whole), piece_len


@pytest.mark.parametrize("downsample,running_mean_frames", [("stack", 0), ("mean", 0), ("stack", 30)])
def test_causal_future_audio_does_not_change_past_ids(downsample, running_mean_frames):
    tok = tiny(downsample=downsample, running_mean_frames=running_mean_frames)
    wav = torch.randn(1, 32000) * 0.1
    a = tok.encode(wav, 16000).ids
    b = tok.encode(torch.cat([wav, torch.randn(1, 16000)], 1), 16000).ids
    assert torch.equal(a, b[:, : a.shape[1]])


def test_running_mean_takes_out_a_constant_band_offset_as_it_is_heard():
    # A gain or a fixed spectral tilt adds c to every frame of a log-mel band. The running mean, started from the
    # fixed mean weighted as k frames, has absorbed a fraction t / (k + t) of it after t frames.
    k = 30
    enc = tiny(running_mean_frames=k).encoder
    mel = torch.randn(2, 32, 200) - 5.0
    offset = torch.linspace(-3.0, 3.0, 32)[None, :, None]
    t = torch.arange(1, 201, dtype=torch.float32)
    expected = offset * (k / (k + t)) / enc.mel_std
    torch.testing.assert_close(enc._front(mel + offset) - enc._front(mel), expected.expand(2, -1, -1))
    with pytest.raises(ValueError, match="running_mean_frames -1"):
        tiny(running_mean_frames=-1)


def test_ctc_forward_upsamples_for_the_head_only():
    tok = tiny().train()
    out = tok.ctc_forward(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12800]))
    assert out.ids.shape == (2, 12) and out.ids_lengths.tolist() == [12, 10]
    assert out.log_probs.shape == (2, 36, 29) and out.lengths.tolist() == [36, 30]
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(2, 36))


def test_encoder_ctc_reads_the_features_before_the_quantizer_in_training_only():
    tok = tiny(encoder_ctc_weight=0.3).train()
    wav, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12800])
    out = tok.ctc_forward(wav, lengths)
    ((log_probs, inter_lengths, weight),) = out.intermediate
    assert log_probs.shape == (2, 36, 29) and inter_lengths.tolist() == [36, 30] and weight == 0.3
    # its gradient reaches the encoder without passing the quantizer
    log_probs.sum().backward()
    assert tok.encoder.stack.weight.grad.abs().sum() > 0 and tok.quantizer.proj_in.weight.grad is None
    assert not tok.eval().ctc_forward(wav, lengths).intermediate
    assert tiny().encoder_ctc_head is None and not tiny().train().ctc_forward(wav, lengths).intermediate
    with pytest.raises(ValueError, match="encoder_ctc_weight -0.1 must be >= 0"):
        tiny(encoder_ctc_weight=-0.1)


def test_fsq_quantizer_is_swappable():
    tok = tiny(FSQ(dim=64, levels=[4, 4, 4]))
    assert tok.codebook_size == 64
    assert tok.encode(torch.randn(1, 16000) * 0.1, 16000).ids.max() < 64


def test_unknown_downsampling_is_named():
    with pytest.raises(ValueError, match="downsample 'max' is not 'stack' or 'mean'"):
        tiny(downsample="max")


def test_quantizer_dim_mismatch():
    with pytest.raises(ValueError, match="quantizer dim 32 does not match the encoder dim 64"):
        tiny(CosineVQ(dim=32))


def test_save_and_load_roundtrip(tmp_path):
    tok = tiny(CosineVQ(dim=64, codebook_size=128))
    save_pretrained(tok, tmp_path / "tok")
    assert (tmp_path / "tok" / "model.safetensors").is_file() and (tmp_path / "tok" / "config.yaml").is_file()
    again = load_speech_tokenizer(tmp_path / "tok")
    assert again.codebook_size == 128
    wav = torch.randn(1, 20000) * 0.1
    assert torch.equal(tok.encode(wav, 16000).ids, again.encode(wav, 16000).ids)


# -- bad input (issue 4, section 5) -------------------------------------------------------------------------------
def test_empty_audio():
    with pytest.raises(ValueError, match="empty"):
        tiny().encode(torch.zeros(0), 16000)


def test_shorter_than_one_frame():
    with pytest.raises(ValueError, match="1000 samples is shorter than the minimum of 1280"):
        tiny().encode(torch.zeros(1000), 16000)


def test_nan_and_inf():
    wav = torch.zeros(16000)
    wav[5] = float("nan")
    wav[6] = float("inf")
    with pytest.raises(ValueError, match="2 of 16000 samples are NaN or inf"):
        tiny().encode(wav, 16000)


def test_wrong_rate_is_resampled_with_warning():
    tok = tiny()
    with pytest.warns(UserWarning, match="resampling 8000 Hz -> 16000 Hz"):
        out = tok.encode(torch.randn(8000) * 0.1, 8000)
    assert out.ids.shape == (1, 12)


def test_stereo_is_downmixed():
    tok = tiny()
    left = torch.randn(16000) * 0.1
    with pytest.warns(UserWarning, match="2 channels downmixed"):
        stereo = tok.encode([torch.stack([left, left])], 16000).ids
    assert torch.equal(stereo, tok.encode(left, 16000).ids)


def test_int16_is_converted():
    tok = tiny()
    x = (np.random.default_rng(0).standard_normal(16000) * 3000).astype(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = tok.encode(torch.from_numpy(x), 16000).ids
    assert torch.equal(ids, tok.encode(torch.from_numpy(x.astype(np.float32) / 32768), 16000).ids)


def test_ids_outside_codebook():
    tok = tiny()
    with pytest.raises(ValueError, match="speech id 600 is outside the codebook.*codebook size 512"):
        tok.ids_to_ctc(torch.tensor([[1, 600]]), torch.tensor([2]))
