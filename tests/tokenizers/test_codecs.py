"""Codec wrappers over transformers' models, built from tiny random configs (no downloads)."""

import math

import pytest
import torch

from moss_components.tokenizers import DacTokenizer, EncodecTokenizer, MimiTokenizer, SpeechTokenizer

MIMI = dict(
    hidden_size=32, num_filters=8, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2,
    num_key_value_heads=2, head_dim=16, codebook_size=64, codebook_dim=16, num_quantizers=4,
    vector_quantization_hidden_dimension=16, upsample_groups=32,
)  # fmt: skip
ENCODEC = dict(hidden_size=16, num_filters=4, codebook_size=64, num_lstm_layers=1)
DAC = dict(
    encoder_hidden_size=8, decoder_hidden_size=32, n_codebooks=3, codebook_size=64, codebook_dim=4,
    downsampling_ratios=[2, 4, 5, 8],
)  # fmt: skip


@pytest.mark.parametrize(
    "cls,config,q,rate",
    [(MimiTokenizer, MIMI, 4, 12.5), (EncodecTokenizer, ENCODEC, 2, 75.0), (DacTokenizer, DAC, 3, 50.0)],
    ids=["mimi", "encodec", "dac"],
)
def test_encode_decode_shapes_and_rates(cls, config, q, rate):
    tok = cls(config=config, num_codebooks=q)
    assert isinstance(tok, SpeechTokenizer) and tok.can_decode
    assert tok.frame_rate == rate and tok.num_codebooks == q and tok.codebook_size == 64
    sr = tok.sample_rate
    out = tok.encode(torch.randn(2, sr) * 0.1, sr)
    n = math.ceil(rate)  # 1 s of audio; a partial last frame counts
    assert out.ids.shape == (2, q, n) and out.ids.max() < 64
    wav = tok.decode(out.ids)
    assert wav.shape[0] == 2 and abs(wav.shape[-1] - n * tok.samples_per_frame) < tok.samples_per_frame
    # what the LM consumes
    assert tok.lm_ids(out.ids).shape == (2, n)
    assert torch.equal(tok.from_lm_ids(tok.lm_ids(out.ids))[:, 0], out.ids[:, 0])


def test_flatten_mode_roundtrip():
    tok = DacTokenizer(config=DAC, lm_mode="flatten")
    codes = torch.randint(0, 64, (2, 3, 5))
    flat = tok.lm_ids(codes)
    assert flat.shape == (2, 15) and flat.max() < tok.lm_vocab_size == 192
    assert torch.equal(tok.from_lm_ids(flat), codes)


def test_codec_bad_input():
    tok = DacTokenizer(config=DAC)
    with pytest.raises(ValueError, match="speech id 64 is outside the codebook"):
        tok.decode(torch.full((1, 3, 4), 64))
    with pytest.raises(ValueError, match="num_codebooks 5 out of range"):
        DacTokenizer(config=DAC, num_codebooks=5)
