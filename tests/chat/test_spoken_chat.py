"""SpokenChat on a fake run of tiny parts: one-shot and streamed answers, both modes, any input audio, errors."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from fake_run import FIRST_CODE, LAST_CODE, TEXT_ANSWER, make_run, write_question  # noqa: E402

from moss_components.chat import AudioFileError, SpokenChat, read_question_audio  # noqa: E402
from moss_components.decoders import FlowMatchingDecoder  # noqa: E402
from moss_components.generation import SamplingConfig  # noqa: E402

GREEDY = SamplingConfig(greedy=True, max_new_tokens=40)
ANSWER_IDS = list(range(FIRST_CODE, LAST_CODE + 1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def bot(run):
    return SpokenChat.from_run(run.root)


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    path = write_question(tmp_path_factory.mktemp("q") / "q.wav")
    return read_question_audio(path, 16000)


@pytest.fixture(scope="module")
def one_shot(bot, question):
    return bot.answer(question, 16000, sampling=GREEDY)


def test_text_free_answer(bot, one_shot):
    samples = len(ANSWER_IDS) * 4 * 320  # 4 mel frames per id, hop 320
    assert one_shot.speech_ids == ANSWER_IDS and one_shot.stopped == "end_of_speech"
    assert one_shot.audio.shape == (samples,) and one_shot.sample_rate == 16000
    assert one_shot.audio.abs().max() > 0 and one_shot.audio.abs().max() <= 1
    assert isinstance(one_shot.transcript, str) and one_shot.text == ""
    assert one_shot.shown_transcript[0].startswith("ASR judge")
    t = one_shot.timings
    assert t.audio_seconds == pytest.approx(samples / 16000)
    assert 0 < t.encode_seconds < t.total_seconds and t.first_audio_seconds == pytest.approx(t.total_seconds, abs=1e-3)
    assert t.new_tokens == len(ANSWER_IDS) + 1 and t.real_time_factor == pytest.approx(t.total_seconds / 1.6)
    # the one-shot path is exactly the evaluation's decoder -> vocoder
    torch.testing.assert_close(one_shot.audio, bot.output.speak([ANSWER_IDS], seed=0)[0])


def test_stream_matches_one_shot(bot, question, one_shot):
    chunks = []
    streamed = bot.answer(question, 16000, stream=True, sampling=GREEDY, on_chunk=chunks.append)
    assert streamed.speech_ids == one_shot.speech_ids
    assert len(chunks) >= 3  # five decoder chunks of 4 ids; the vocoder holds back its context
    assert [c.start for c in chunks] == list(np.cumsum([0] + [c.audio.numel() for c in chunks[:-1]]))
    # the first chunk is out before the answer is complete (ordering only: tests never assert on wall time)
    assert chunks[0].seconds < chunks[-1].seconds and chunks[0].audio.numel() < streamed.audio.numel() / 2
    assert streamed.timings.first_audio_seconds == chunks[0].seconds
    # same ids, same decoder noise: equal up to float rounding of the chunked attention (1e-4, as in tests/decoders)
    torch.testing.assert_close(torch.cat([c.audio for c in chunks]), one_shot.audio, atol=1e-4, rtol=0)
    torch.testing.assert_close(streamed.audio, one_shot.audio, atol=1e-4, rtol=0)


def test_text_guided_answer(bot, question):
    answer = bot.answer(question, 16000, mode="text-guided", sampling=GREEDY)
    assert answer.text == TEXT_ANSWER and answer.speech_ids == ANSWER_IDS
    assert answer.shown_transcript == ("text answer (the model's own text)", TEXT_ANSWER)


def test_any_rate_and_channel_layout(bot):
    # stereo int16 at 44.1 kHz, channels first: downmixed and resampled with a warning each
    t = np.arange(44100) / 44100
    pcm = (np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)]) * 8000).astype(np.int16)
    with pytest.warns(UserWarning) as caught:
        answer = bot.answer(torch.from_numpy(pcm), 44100, sampling=SamplingConfig(greedy=True, max_new_tokens=3))
    messages = " ".join(str(w.message) for w in caught)
    assert "2 channels downmixed" in messages and "44100 Hz -> 16000 Hz" in messages
    assert answer.speech_ids == ANSWER_IDS[:3] and answer.stopped == "max_new_tokens"
    assert answer.audio.shape == (3 * 4 * 320,)


def test_bad_mode(bot, question):
    with pytest.raises(ValueError, match="chat mode 'spoken'; expected one of"):
        bot.answer(question, 16000, mode="spoken", sampling=GREEDY)


def test_parts_from_different_runs(bot):
    other = FlowMatchingDecoder(codebook_size=32, dim=32, heads=2, encoder_depth=1, estimator_depth=1)
    with pytest.raises(ValueError, match="the decoder has 32 codes but the speech LM has 64"):
        SpokenChat(bot.model, bot.text_tokenizer, bot.speech_tokenizer, other, bot.output.vocoder)


def test_missing_parts(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpokenChat.from_run(tmp_path / "nowhere")
    run = make_run(tmp_path / "run", judge=False)
    assert SpokenChat.from_run(run.root).output.judge is None
    (run.decoder / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no decoder: expected .*decoder/decoder/config.yaml"):
        SpokenChat.from_run(run.root)


def test_unreadable_question_files(tmp_path):
    with pytest.raises(AudioFileError, match="'.*missing.wav' does not exist"):
        read_question_audio(tmp_path / "missing.wav", 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioFileError, match="cannot read question audio '.*garbage.wav'"):
        read_question_audio(garbage, 16000)
    short = write_question(tmp_path / "short.wav", seconds=0.001)
    with pytest.raises(AudioFileError, match="short.wav: 16 samples is shorter than the minimum of 1280"):
        read_question_audio(short, 16000, min_samples=1280)
