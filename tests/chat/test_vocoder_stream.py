"""Streaming synthesis: the vocoder stream and the decoder + vocoder stream equal their one-shot output."""

import pytest
import torch

from moss_components.chat import SpeechStream, VocoderStream, vocoder_context_frames
from moss_components.decoders import FlowMatchingDecoder
from moss_components.vocoders import GriffinLimVocoder, VocosVocoder


@pytest.mark.parametrize(("depth", "piece"), [(1, 3), (3, 16), (2, 200)])
def test_vocoder_stream_equals_one_shot(depth, piece):
    vocoder = VocosVocoder(dim=32, depth=depth).eval()
    mel = torch.randn(2, 80, 41) - 5
    one = vocoder(mel)
    stream = VocoderStream(vocoder)
    parts = [stream.push(mel[..., i : i + piece]) for i in range(0, 41, piece)] + [stream.flush()]
    # exact in practice (the same frames meet the same kernels); 1e-5 leaves room for BLAS blocking
    torch.testing.assert_close(torch.cat(parts, -1), one, atol=1e-5, rtol=0)


def test_context_is_the_receptive_field():
    vocoder = VocosVocoder(dim=32, depth=2).eval()
    assert vocoder_context_frames(vocoder) == 3 + 2 * 3  # embed conv k=7, one k=7 depthwise conv per block
    mel = torch.randn(1, 80, 50) - 5
    one = vocoder(mel)
    blind = VocoderStream(vocoder, context_frames=0)  # too little context: the stream's edges show
    parts = [blind.push(mel[..., i : i + 4]) for i in range(0, 50, 4)] + [blind.flush()]
    assert (torch.cat(parts, -1) - one).abs().max() > 1e-3


def test_audio_is_released_before_the_end():
    vocoder = VocosVocoder(dim=32, depth=1).eval()
    stream = VocoderStream(vocoder)
    ctx = vocoder_context_frames(vocoder)
    assert stream.push(torch.randn(1, 80, ctx) - 5).shape[-1] == 0  # nothing is final yet
    assert stream.push(torch.randn(1, 80, 10) - 5).shape[-1] > 0


def test_griffin_lim_streams_the_right_length():
    vocoder = GriffinLimVocoder(n_iter=4)
    mel = torch.randn(1, 80, 30) - 5
    stream = VocoderStream(vocoder)
    out = torch.cat([stream.push(mel[..., i : i + 8]) for i in range(0, 30, 8)] + [stream.flush()], -1)
    assert out.shape == vocoder(mel).shape and torch.isfinite(out).all()


def test_speech_stream_equals_decode_then_vocode():
    decoder = FlowMatchingDecoder(
        codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1, steps=2, chunk_tokens=4,
        lookahead_tokens=2,
    ).eval()  # fmt: skip
    vocoder = VocosVocoder(dim=32, depth=2).eval()
    ids = torch.randint(0, 64, (19,))
    one = vocoder(decoder.decode(ids[None], seed=3))[0].clamp(-1, 1)
    pieces = []
    with SpeechStream(decoder, vocoder, seed=3) as stream:
        for i in range(19):
            pieces.append(stream.push(ids[i : i + 1]))
        pieces.append(stream.flush())
    # audio starts once the first chunk (4 ids) and its look-ahead (2 ids) have arrived, long before the end
    assert all(p.numel() == 0 for p in pieces[:5]) and pieces[5].numel() > 0
    # the decoder's chunked attention rounds differently from one shot (see tests/decoders): 1e-4
    torch.testing.assert_close(torch.cat(pieces), one, atol=1e-4, rtol=0)


def test_speech_stream_needs_matching_mels():
    decoder = FlowMatchingDecoder(codebook_size=8, dim=32, heads=2, encoder_depth=1, estimator_depth=1, n_mels=40)
    with pytest.raises(ValueError, match="40-band mels at 16000 Hz but the vocoder expects 80 bands"):
        SpeechStream(decoder, VocosVocoder(dim=32, depth=1))
