"""``moss-speech chat`` end to end on a fake run: WAV in (any layout) -> WAV out, streamed or not, clear errors."""

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parents[1] / "chat"))
from fake_run import FIRST_CODE, LAST_CODE, TEXT_ANSWER, make_run, write_question  # noqa: E402

from moss_components.cli.main import main  # noqa: E402

SAMPLES = (LAST_CODE - FIRST_CODE + 1) * 4 * 320


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run")).root


@pytest.fixture(scope="module")
def stereo_44k(tmp_path_factory):
    return write_question(tmp_path_factory.mktemp("q") / "q.wav", rate=44100, channels=2, subtype="PCM_16")


def _chat(run, question, out, *extra):
    main(["chat", "--run", str(run), "--input", str(question), "--output", str(out), "--greedy", "true", *extra])


@pytest.fixture(scope="module")
def one_shot(run, stereo_44k, tmp_path_factory):
    """The one-shot answer WAV and what chat printed."""
    out = tmp_path_factory.mktemp("one") / "answer.wav"
    with pytest.warns(UserWarning) as caught:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            _chat(run, stereo_44k, out)
    messages = " ".join(str(w.message) for w in caught)
    assert "2 channels downmixed" in messages and "resampling 44100 Hz -> 16000 Hz" in messages
    return out, printed.getvalue()


def test_chat_answers_a_stereo_44k_question(one_shot):
    path, out = one_shot
    audio, rate = sf.read(path)
    assert rate == 16000 and audio.shape == (SAMPLES,) and np.abs(audio).max() > 0
    assert "ASR judge's transcript of the spoken answer:" in out
    for line in ("time to first audio chunk:", "total time:", "real-time factor:"):
        assert line in out


def test_stream_writes_the_one_shot_audio(run, stereo_44k, one_shot, tmp_path, capsys):
    with pytest.warns(UserWarning):
        _chat(run, stereo_44k, tmp_path / "streamed.wav", "--stream", "true")
    assert "first audio chunk after" in capsys.readouterr().out
    one, _ = sf.read(one_shot[0])
    streamed, _ = sf.read(tmp_path / "streamed.wav")
    # 1e-4 float tolerance, then 16-bit PCM: at most one step apart
    assert streamed.shape == one.shape and np.abs(streamed - one).max() <= 1.5 / 32768


def test_text_guided_prints_the_text_answer(run, stereo_44k, tmp_path, capsys):
    with pytest.warns(UserWarning):
        _chat(run, stereo_44k, tmp_path / "a.wav", "--mode", "text-guided", "--max_new_tokens", "8")
    assert f"text answer (the model's own text): '{TEXT_ANSWER}'" in capsys.readouterr().out


def test_unreadable_input_names_the_file(run, tmp_path):
    bad = tmp_path / "question.wav"
    bad.write_text("this is not audio")
    with pytest.raises(SystemExit, match=r"cannot read question audio '.*question.wav'"):
        _chat(run, bad, tmp_path / "a.wav")
    with pytest.raises(SystemExit, match=r"'.*absent.wav' does not exist"):
        _chat(run, tmp_path / "absent.wav", tmp_path / "a.wav")
    assert not (tmp_path / "a.wav").exists()


def test_bad_run_or_mode(tmp_path, stereo_44k):
    with pytest.raises(SystemExit, match="run directory '.*nowhere' does not exist"):
        _chat(tmp_path / "nowhere", stereo_44k, tmp_path / "a.wav")
    with pytest.raises(SystemExit, match="--mode 'loud' is not one of"):
        _chat(tmp_path / "nowhere", stereo_44k, tmp_path / "a.wav", "--mode", "loud")
