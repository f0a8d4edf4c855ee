import json
from dataclasses import replace

import numpy as np
import soundfile as sf

from moss_components.data import synth_corpus
from moss_components.data.espeak import EspeakSynth, VoiceSpec, available_english_languages, available_variants
from moss_components.data.facts import load_facts, select_heldout
from moss_components.data.manifest import QA_KEYS, READ_KEYS, read_manifest
from moss_components.data.synth_corpus import build_corpus
from moss_components.data.text_norm import is_normalized, normalize_transcript, number_to_words
from moss_components.data.voices import EXTRA_TRAIN_VARIANTS, train_pool, unseen_pool


def test_number_words_and_normalization():
    assert number_to_words(0) == "zero"
    assert number_to_words(21) == "twenty one"
    assert number_to_words(1905) == "one thousand nine hundred five"
    assert normalize_transcript("Paris, in 2024 -- isn't it?") == "paris in two thousand twenty four isn't it"
    assert normalize_transcript("'quoted' words") == "quoted words"
    assert is_normalized("the answer is paris") and not is_normalized("The answer") and not is_normalized("")


def test_facts_cover_every_category_and_heldout_is_stratified():
    facts = load_facts()
    cats = {f.category for f in facts}
    assert cats == {"addition", "after", "before", "capital", "opposite", "colour"}
    assert sum(f.category == "capital" for f in facts) >= 50
    for f in facts:
        assert all(is_normalized(t) for t in (*f.questions, *f.statements, f.answer, f.answer_text)), f
    held = select_heldout(facts, 0.1, seed=0)
    assert held == select_heldout(facts, 0.1, seed=0) != select_heldout(facts, 0.1, seed=1)
    assert {f.category for f in facts if f.id in held} == cats


def test_espeak_voices_exist_and_synthesize():
    assert "en-us" in available_english_languages() and "m3" in available_variants()
    synth = EspeakSynth.shared()
    a = synth.synthesize("the answer is paris", VoiceSpec("en-us", "m3", rate=150, pitch=40))
    b = synth.synthesize("the answer is paris", VoiceSpec("en-us", "m3", rate=150, pitch=40))
    c = synth.synthesize("the answer is paris", VoiceSpec("en-us", "m3", rate=250, pitch=40))
    assert synth.sample_rate == 22050 and a.dtype == np.int16
    # eSpeak carries state from one utterance to the next (so a and b differ slightly); the corpus builder
    # renders fixed shards in fresh processes for determinism (test_same_seed_same_corpus).
    assert abs(len(a) - len(b)) < 0.01 * len(a)
    assert len(c) < 0.8 * len(a), "a faster rate must give shorter audio"


def test_wide_training_voices_stay_apart_from_the_unseen_ones():
    core, wide, unseen = train_pool(), train_pool(wide=True), unseen_pool()
    assert len(core.names) == 90 and len(wide.names) == 426  # every wanted variant is in espeakng-loader's data
    assert set(core.names) < set(wide.names) and not set(wide.names) & set(unseen.names)
    spec = replace(synth_corpus.PRESETS["micro"], wide_voices=True)
    manifests, _, _ = synth_corpus._Planner(spec, seed=0).plan()
    heard = {r["voice"] for r in manifests["read"]["train"]}
    assert heard <= set(wide.names) and any(v.split("+")[-1] in EXTRA_TRAIN_VARIANTS for v in heard)
    assert synth_corpus.PRESETS["tiny-wide"] == replace(synth_corpus.PRESETS["tiny"], wide_voices=True)


def test_micro_corpus_layout_and_splits(micro_corpus):
    summary = json.loads((micro_corpus / "corpus.json").read_text())
    assert summary["preset"] == "micro" and summary["counts"]["facts"] == 12
    held = set(summary["heldout_fact_ids"])
    assert held
    for split in ("train", "validation", "test"):
        for rec in read_manifest(micro_corpus / "read" / f"{split}.jsonl", READ_KEYS):
            assert is_normalized(rec["text"])
            wav, sr = sf.read(micro_corpus / rec["audio"], dtype="int16")
            assert sr == 16000 and wav.ndim == 1 and abs(len(wav) / sr - rec["duration"]) < 1e-3
            if split != "test":
                # No held-out fact is spoken as a question or a statement outside the test split.
                assert rec.get("fact_id") not in held or rec["kind"] == "answer"
        qa = read_manifest(micro_corpus / "qa" / f"{split}.jsonl", QA_KEYS)
        assert {q["answer_voice"] for q in qa} == {summary["assistant_voice"]["name"]}
        for q in qa:
            assert q["answer_text"] == f"the answer is {q['answer']}"
            assert (micro_corpus / q["question_audio"]).is_file() and (micro_corpus / q["answer_audio"]).is_file()
        if split != "test":
            assert not any(q["heldout"] or q["unseen_voice"] for q in qa)
    test_qa = read_manifest(micro_corpus / "qa" / "test.jsonl")
    assert {q["fact_id"] for q in test_qa if q["heldout"]} == held
    train_voices = {q["question_voice"] for q in read_manifest(micro_corpus / "qa" / "train.jsonl")}
    unseen = {q["question_voice"] for q in test_qa if q["unseen_voice"]}
    assert unseen and not unseen & train_voices
    assert not unseen & set(summary["voices"]["train"])
    text = (micro_corpus / "text" / "train.txt").read_text()
    facts = [json.loads(line) for line in open(micro_corpus / "facts.jsonl")]
    for f in facts:  # held-out facts included: their text is in the text corpus
        assert f["statements"][0] in text


def test_same_seed_same_corpus_on_any_number_of_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_corpus, "SHARD_SIZE", 16)  # several shards even for the micro corpus
    one, two = tmp_path / "one", tmp_path / "two"
    build_corpus(one, preset="micro", seed=0, workers=1, progress=False)
    build_corpus(two, preset="micro", seed=0, workers=2, progress=False)
    for rel in ("read/train.jsonl", "qa/test.jsonl", "text/train.txt"):
        assert (one / rel).read_text() == (two / rel).read_text(), rel
    for rec in read_manifest(one / "read" / "train.jsonl"):
        assert (one / rec["audio"]).read_bytes() == (two / rec["audio"]).read_bytes(), rec["id"]
    other = tmp_path / "other"
    build_corpus(other, preset="micro", seed=1, workers=2, progress=False)
    assert (other / "qa/train.jsonl").read_text() != (one / "qa/train.jsonl").read_text()
