import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from moss_components.cli.data import check, import_corpus
from moss_components.data.check import check_manifest
from moss_components.data.manifest import read_manifest


def test_check_passes_on_the_corpus(micro_corpus, capsys):
    check(str(micro_corpus))
    assert "data check passed: 6 manifests" in capsys.readouterr().out


def test_check_fails_with_clear_messages_on_a_corrupted_copy(micro_corpus, tmp_path, capsys):
    root = tmp_path / "bad"
    shutil.copytree(micro_corpus, root)
    m = root / "read" / "train.jsonl"
    recs = read_manifest(m)
    wav = lambda i: root / recs[i]["audio"]  # noqa: E731
    data = wav(0).read_bytes()
    wav(0).write_bytes(data[: len(data) // 2])  # truncated
    x, _ = sf.read(wav(1))
    sf.write(wav(1), np.stack([x, x], axis=1), 16000, subtype="PCM_16")  # stereo
    sf.write(wav(2), x[::2], 8000, subtype="PCM_16")  # 8 kHz
    recs[3]["text"] = ""
    sf.write(wav(4), np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")  # NaN
    sf.write(wav(5), np.zeros(4000, np.float32), 16000, subtype="PCM_16")  # silence
    sf.write(wav(6), np.tile(x, 40)[: 16000 * 31], 16000, subtype="PCM_16")  # over-long (> 30 s)
    recs[7]["audio"] = "wav/nowhere.wav"
    recs[8]["id"] = recs[9]["id"]
    with open(m, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    report = check_manifest(m)
    kinds = {(line, kind) for line, _, kind, _ in report.errors}
    for line, kind in [
        (1, "truncated"),
        (2, "channels"),
        (3, "sample rate"),
        (4, "empty text"),
        (5, "nan or inf"),
        (6, "silent"),
        (7, "too long"),
        (8, "missing file"),
        (10, "duplicate id"),
    ]:
        assert (line, kind) in kinds, (line, kind, sorted(kinds))
    with pytest.raises(SystemExit, match="FAILED"):
        check(str(m))
    out = capsys.readouterr().out
    assert "8000 Hz, expected 16000 Hz" in out and "2 channels, expected mono" in out and "FAILED" in out
    assert "header says" in out and "text is empty" in out


def _tone(path, seconds=0.5, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, rate)


def test_import_librispeech_tree(tmp_path):
    src = tmp_path / "LibriSpeech" / "dev-clean"
    for spk, chap, n in (("84", "121123", 2), ("174", "50561", 1)):
        d = src / spk / chap
        d.mkdir(parents=True)
        lines = []
        for k in range(n):
            uid = f"{spk}-{chap}-{k:04d}"
            _tone(d / f"{uid}.flac")
            lines.append(f"{uid} GO, DO YOU HEAR 2 BELLS")
        lines.append(f"{spk}-{chap}-9999 MISSING AUDIO")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "imported"
    summary = import_corpus(str(src), str(out), split="validation")
    assert summary["layout"] == "librispeech" and summary["utterances"] == 3
    assert summary["skipped"] == {"missing audio": 2}
    recs = read_manifest(out / "read" / "validation.jsonl")
    assert recs[0]["text"] == "go do you hear two bells" and {r["voice"] for r in recs} == {"84", "174"}
    assert check_manifest(out / "read" / "validation.jsonl").ok


def test_import_wav_txt_folder_with_conversion(tmp_path):
    src = tmp_path / "mine" / "alice"
    src.mkdir(parents=True)
    _tone(src / "a.wav", rate=22050, channels=2)
    (src / "a.txt").write_text("Hello World!\n")
    _tone(src / "b.wav")
    (src / "b.txt").write_text("   ")
    out = tmp_path / "imported"
    summary = import_corpus(str(src.parent), str(out), convert=True)
    assert summary["utterances"] == 1 and summary["skipped"] == {"empty text": 1}
    (rec,) = read_manifest(out / "read" / "train.jsonl")
    assert rec["text"] == "hello world" and rec["voice"] == "alice" and rec["sample_rate"] == 16000
    info = sf.info(out / rec["audio"])
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert check_manifest(out / "read" / "train.jsonl").ok
