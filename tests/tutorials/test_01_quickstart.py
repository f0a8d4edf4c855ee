"""Tutorial 01 (quickstart) in its smoke budget: PT-1 and SFT from configs/quickstart/, then ``chat`` on the result."""

import json
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_smoke(smoke_base, run_tutorial, tmp_path):
    proc = run_tutorial("01_quickstart.py", tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    # both stages trained for the smoke budget's steps and exported a speech LM chat can load
    for stage in ("pt1", "sft"):
        assert results["training"][stage]["steps"] == 2
        assert 0 < results["training"][stage]["last_loss"] < 20
        assert (tmp_path / stage / "export" / "config.json").is_file()
    assert json.loads((tmp_path / "sft" / "export" / "config.json").read_text())["num_shared_layers"] == 4

    # the question is a test-split WAV of the base corpus, asked by a voice unseen in training
    question = results["question"]
    assert question["unseen_voice"] and (smoke_base / "corpus" / question["question_audio"]).is_file()

    # one answer (smoke asks only the quickstart model), a WAV whose length matches the reported seconds
    assert list(results["answers"]) == ["quickstart"]
    answer = results["answers"]["quickstart"]
    data, rate = sf.read(answer["output"])
    assert rate == 16000
    assert abs(len(data) / rate - answer["audio_seconds"]) < 1e-2
    assert answer["stopped"] in ("end_of_speech", "eos", "max_new_tokens")
    assert answer["speech_ids"] <= 12  # the smoke budget's max_new_tokens
    assert isinstance(answer["transcript"], str) and isinstance(answer["correct"], bool)
    assert 0 < answer["first_audio_seconds"] <= answer["total_seconds"] < 120
    if answer["audio_seconds"] > 0:
        assert 0 < answer["real_time_factor"] < 100

    # moss-speech evaluate ran on the quickstart run (the base's links make it a whole run directory)
    figures = results["evaluation"]
    assert figures["max_items"] == 1 and figures["quickstart"]["text_path_unchanged"] is True
    for name in ("s2s_text_free_accuracy", "s2t_accuracy", "t2t_accuracy"):
        assert 0 <= figures["quickstart"][name] <= 1 and 0 <= figures["base"][name] <= 1
    assert "| t2t_accuracy |" in proc.stdout

    # the spectrogram PNG has the question's panel and the answer's, with log-mel values above the floor
    png = Path(results["spectrogram"]["png"])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = results["spectrogram"]["panels"]
    assert len(panels) == 2 and panels[0]["frames"] > 10
    assert -11.6 < panels[0]["log_mel_min"] < panels[0]["log_mel_max"] < 10
    assert "| quickstart | 2 + 2 |" in proc.stdout
