"""``moss-speech evaluate-codec`` on random tiny parts: the report has every figure, WAVs and PNGs are written."""

import json

import numpy as np
import soundfile as sf
import torch

from moss_components.asr import CTCRecognizer
from moss_components.cli.evaluate_codec import evaluate_codec
from moss_components.decoders import FlowMatchingDecoder
from moss_components.quantizers import CosineVQ
from moss_components.tokenizers import SemanticVQTokenizer, save_pretrained
from moss_components.vocoders import VocosVocoder


def _corpus(root):
    (root / "read").mkdir(parents=True)
    (root / "corpus.json").write_text("{}")
    rows = []
    for i in range(2):
        t = np.arange(12000 + 2000 * i) / 16000
        sf.write(root / f"{i}.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
        rows.append({"id": f"u{i}", "audio": f"{i}.wav", "text": "hello world"})
    (root / "read" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root / "read" / "test.jsonl"


def test_report(tmp_path):
    manifest = _corpus(tmp_path / "corpus")
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, quantizer=CosineVQ(64, 64))
    dec = FlowMatchingDecoder(codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1, steps=2)
    paths = {
        "tokenizer": save_pretrained(tok, tmp_path / "tok"),
        "decoder": save_pretrained(dec, tmp_path / "dec"),
        "vocoder": save_pretrained(VocosVocoder(dim=32, depth=1), tmp_path / "voc"),
        "judge": save_pretrained(CTCRecognizer(n_mels=32, dim=32, depth=1, heads=2, head_depth=1), tmp_path / "j"),
    }
    out = tmp_path / "eval"
    report = evaluate_codec(**{k: str(v) for k, v in paths.items()}, manifest=str(manifest), out=str(out), examples=1)
    for key in (
        "tokenizer_cer",
        "codebook_usage",
        "resynth_cer",
        "encode_rtf",
        "decode_rtf",
        "vocoder_copy_synthesis_cer",
    ):
        assert key in report, key
    assert 0 < report["codebook_usage"] <= 1 and report["utterances"] == 2
    assert json.loads((out / "report.json").read_text())["resynth_cer"] == report["resynth_cer"]
    assert (out / "examples" / "u0_resynth.wav").is_file() and (out / "examples" / "u0.png").is_file()
    lines = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["u0", "u1"] and all("resynth" in line for line in lines)
    assert "tokenizer_cer_by_voice" not in report and "tokenizer_cer_by_kind" not in report  # no voices, no kinds


def test_griffin_lim_and_tokenizer_only(tmp_path):
    manifest = _corpus(tmp_path / "corpus")
    tok = SemanticVQTokenizer(n_mels=32, dim=64, depth=1, heads=2, ctc_depth=1, quantizer=CosineVQ(64, 64))
    dec = FlowMatchingDecoder(codebook_size=64, dim=32, heads=2, encoder_depth=1, estimator_depth=1, steps=1)
    t, d = save_pretrained(tok, tmp_path / "tok"), save_pretrained(dec, tmp_path / "dec")
    threads = torch.get_num_threads()
    only = evaluate_codec(tokenizer=str(t), manifest=str(manifest), out=str(tmp_path / "a"), num_threads=threads + 1)
    assert "resynth_cer" not in only and "tokenizer_cer" in only
    assert torch.get_num_threads() == threads, "the caller's thread count was not restored"
    gl = evaluate_codec(
        tokenizer=str(t), decoder=str(d), vocoder="griffin-lim", manifest=str(manifest), out=str(tmp_path / "b")
    )
    assert gl["vocoder"] == "griffin-lim" and "resynth_cer" in gl


def test_utterances_are_a_seeded_sample_in_manifest_order(tmp_path):
    from moss_components.cli.evaluate_codec import _read_manifest

    path = tmp_path / "test.jsonl"
    rows = [{"id": f"u{i}", "text": "x", "unseen_voice": i % 2 == 0} for i in range(200)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    picked = [r["id"] for r in _read_manifest(path, 20, unseen_only=True, seed=0)]
    assert len(picked) == 20 and len(set(picked)) == 20
    assert all(int(i[1:]) % 2 == 0 for i in picked)  # unseen voices only
    assert picked == sorted(picked, key=lambda i: int(i[1:]))  # manifest order
    assert int(picked[-1][1:]) > 40  # not the first 20 unseen rows: the manifest is ordered by category
    assert picked == [r["id"] for r in _read_manifest(path, 20, unseen_only=True, seed=0)]
    assert picked != [r["id"] for r in _read_manifest(path, 20, unseen_only=True, seed=1)]
    assert len(_read_manifest(path, None, unseen_only=False)) == 200


def test_cer_by_group_groups_by_variant_language_and_kind():
    from moss_components.cli.evaluate_codec import _cer_by_group

    rows = [{"voice": "en+m7", "kind": "question"}, {"voice": "en-029+m7"}, {"voice": "en-029"}, {"kind": "statement"}]
    refs = ["abcd", "abcd", "abcd", "abcd"]
    hyps = ["abcd", "abxx", "a", "zzzz"]  # 0, 2 and 3 edits; the voiceless row counts in no voice group
    by = _cer_by_group(rows, hyps, refs)
    assert by["variant"] == {"(default)": {"cer": 0.75, "utterances": 1}, "m7": {"cer": 0.25, "utterances": 2}}
    assert by["language"] == {"en-029": {"cer": 0.625, "utterances": 2}, "en": {"cer": 0.0, "utterances": 1}}
    assert list(by["language"]) == ["en-029", "en"]  # worst first
    assert by["kind"] == {"statement": {"cer": 1.0, "utterances": 1}, "question": {"cer": 0.0, "utterances": 1}}
    assert _cer_by_group([{}, {"voice": None}], ["a", "b"], ["a", "b"]) == {}
