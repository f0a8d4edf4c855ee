import pytest
import torch

from moss_components.decoders import FlowMatchingDecoder, SpeechDecoder, frame_noise, load_decoder
from moss_components.decoders.flow_matching import cosine_times
from moss_components.tokenizers import save_pretrained


def tiny(**kw):
    args = dict(codebook_size=64, n_mels=20, dim=32, heads=2, encoder_depth=1, estimator_depth=2, steps=3)
    args.update(kw)
    return FlowMatchingDecoder(**args)


def test_shapes_and_interface():
    dec = tiny().eval()
    assert isinstance(dec, SpeechDecoder) and dec.frames_per_token == 4 and dec.sample_rate == 16000
    ids = torch.randint(0, 64, (2, 7))
    mel = dec.decode(ids, torch.tensor([7, 5]))
    assert mel.shape == (2, 20, 28) and torch.isfinite(mel).all()


def test_loss_backward_and_masking():
    dec = tiny().train()
    ids = torch.randint(0, 64, (2, 6))
    mel = torch.randn(2, 20, 30) - 6
    out = dec.loss(ids, torch.tensor([6, 3]), mel)
    assert set(out) == {"loss", "fm_loss", "mu_l1"}
    out["loss"].backward()
    assert dec.embed.weight.grad is not None and dec.out.weight.grad.abs().sum() > 0


def test_cosine_schedule():
    t = cosine_times(10)
    assert t[0] == 0 and torch.isclose(t[-1], torch.tensor(1.0)) and (t.diff() > 0).all()
    assert t[1] - t[0] < t[-1] - t[-2]  # small steps at the noisy end


def test_same_noise_same_output_and_guidance_changes_it():
    dec = tiny().eval()
    ids = torch.randint(0, 64, (1, 5))
    a, b = dec.decode(ids, seed=1), dec.decode(ids, seed=1)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(dec.decode(ids, seed=1, guidance=0.0), dec.decode(ids, seed=1, guidance=2.0))


def test_temperature_scales_the_starting_noise():
    dec = tiny().eval()
    ids = torch.randint(0, 64, (1, 5))
    noise = frame_noise(1, 20, 20, seed=3)
    scaled = dec.decode(ids, noise=noise, temperature=0.5)
    assert torch.allclose(scaled, dec.decode(ids, noise=0.5 * noise, temperature=1.0), atol=1e-6)
    assert not torch.allclose(scaled, dec.decode(ids, noise=noise), atol=1e-3)
    # at 0 the sample no longer depends on the seed
    assert torch.equal(dec.decode(ids, seed=1, temperature=0.0), dec.decode(ids, seed=2, temperature=0.0))
    dec.temperature = 0.5  # the constructor's default, used when decode is given none
    assert dec.decode(ids, noise=noise).allclose(scaled, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be >= 0, got -1"):
        tiny(temperature=-1)


def test_noise_prefix_is_length_independent():
    torch.testing.assert_close(frame_noise(2, 10, 8, seed=3), frame_noise(2, 25, 8, seed=3)[:, :10])


@pytest.mark.parametrize("chunk,lookahead,piece", [(4, 2, 3), (2, 0, 2), (5, 3, 7)])
def test_streaming_equals_one_shot(chunk, lookahead, piece):
    """Streamed mel equals one-shot mel within 1e-4 (float rounding of different attention shapes)."""
    dec = tiny(chunk_tokens=chunk, lookahead_tokens=lookahead).eval()
    ids = torch.randint(0, 64, (2, 15))
    one = dec.decode(ids, seed=5)
    with dec.streaming(batch_size=2, seed=5) as s:
        parts = [s.push(ids[:, i : i + piece]) for i in range(0, 15, piece)] + [s.flush()]
    torch.testing.assert_close(torch.cat(parts, -1), one, atol=1e-4, rtol=1e-4)


def test_chunk_is_emitted_once_its_lookahead_arrived():
    dec = tiny(chunk_tokens=4, lookahead_tokens=3).eval()
    with dec.streaming() as s:
        assert s.push(torch.randint(0, 64, (1, 6))).shape[-1] == 0
        assert s.push(torch.randint(0, 64, (1, 1))).shape[-1] == 16


def test_speaker_prompt_changes_output():
    dec = tiny().eval()
    ids = torch.randint(0, 64, (1, 5))
    prompt = torch.randn(1, 20, 40) - 5
    assert not torch.allclose(dec.decode(ids, seed=0), dec.decode(ids, prompt_mel=prompt, seed=0))
    with pytest.raises(ValueError, match="speaker prompt must be a"):
        dec.decode(ids, prompt_mel=torch.randn(1, 7, 40))


def test_ids_outside_codebook():
    with pytest.raises(ValueError, match="speech id 64 is outside the codebook.*codebook size 64"):
        tiny().decode(torch.tensor([[3, 64]]))


def test_save_load(tmp_path):
    dec = tiny().eval()
    save_pretrained(dec, tmp_path / "d")
    again = load_decoder(tmp_path / "d")
    ids = torch.randint(0, 64, (1, 4))
    torch.testing.assert_close(dec.decode(ids), again.decode(ids))
