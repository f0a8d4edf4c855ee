"""The data commands through the real ``moss-speech`` dispatcher."""

import json

import pytest

from moss_components.cli.main import main


def test_synth_data_command(tmp_path, capsys):
    out = tmp_path / "c"
    main(["synth-data", "--out", str(out), "--preset", "micro", "--seed", "3", "--progress", "false"])
    text = capsys.readouterr().out
    assert "split" in text and "voices:" in text and "held out" in text
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["seed"] == 3 and summary["counts"]["qa"]["test"] > 0 and summary["audio_hours_total"] > 0
    main(["data", "check", str(out)])
    assert "data check passed" in capsys.readouterr().out


def test_tokenize_command_with_a_yaml_tokenizer(tmp_path, capsys):
    """The real SemanticVQTokenizer (random weights) from a class_path/init_args YAML; resumable rerun."""
    pytest.importorskip("moss_components.tokenizers.semantic_vq")
    from moss_components.data.speech_cache import SpeechCache

    out = tmp_path / "c"
    main(["synth-data", "--out", str(out), "--preset", "micro", "--progress", "false", "--max_facts", "6"])
    cfg = tmp_path / "tok.yaml"
    cfg.write_text(
        "class_path: moss_components.tokenizers.semantic_vq.SemanticVQTokenizer\n"
        "init_args: {n_mels: 32, dim: 32, depth: 1, heads: 2, ctc_depth: 1}\n"
    )
    cache = tmp_path / "cache"
    main(["tokenize", "--tokenizer", str(cfg), "--manifest", str(out), "--out", str(cache), "--progress", "false"])
    text = capsys.readouterr().out
    assert "read/train.jsonl" in text and "qa/test.jsonl" in text
    ids = SpeechCache(cache / "read" / "train.safetensors")
    key = ids.keys()[0]
    assert ids[key].ndim == 1 and int(ids[key].max()) < ids.codebook_size and ids.frame_rate == 12.5
    main(["tokenize", "--tokenizer", str(cfg), "--manifest", str(out), "--out", str(cache), "--progress", "false"])
    assert "complete" in capsys.readouterr().out
