import json

import pytest
import torch

from moss_components.data.manifest import read_manifest
from moss_components.data.speech_cache import SpeechCache, cache_paths, encode_manifest


def test_cache_has_every_utterance_at_the_frame_rate(micro_corpus, micro_cache):
    m = micro_corpus / "read" / "train.jsonl"
    cache = SpeechCache(cache_paths(m, micro_cache)[0])
    recs = read_manifest(m)
    assert cache.keys() == [r["id"] for r in recs]
    for r in recs:
        assert abs(len(cache[r["id"]]) - int(r["duration"] * 12.5)) <= 1
    qa = SpeechCache(cache_paths(micro_corpus / "qa" / "train.jsonl", micro_cache)[0])
    q = read_manifest(micro_corpus / "qa" / "train.jsonl")[0]
    assert f"{q['id']}:question" in qa and f"{q['id']}:answer" in qa


def _dies(base, after):
    class Dies(base):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def encode(self, wav, sample_rate, wav_lengths=None):
            self.calls += 1
            if self.calls > after:
                raise KeyboardInterrupt("killed")
            return super().encode(wav, sample_rate)

    return Dies()


def test_resume_after_a_kill_gives_the_same_cache(micro_corpus, micro_cache, tmp_path, standin_tokenizer_cls):
    _Dies = lambda after: _dies(standin_tokenizer_cls, after)  # noqa: E731
    m = micro_corpus / "read" / "train.jsonl"
    with pytest.raises(KeyboardInterrupt):
        encode_manifest(_Dies(after=3), m, tmp_path, batch_size=4, part_size=4, progress=False)
    ids_path, index_path, parts = cache_paths(m, tmp_path)
    assert not ids_path.exists() and len(list(parts.glob("part-*.safetensors"))) == 3
    assert not list(parts.glob("*.tmp"))
    counting = _Dies(after=10**9)
    index = encode_manifest(counting, m, tmp_path, batch_size=4, part_size=4, progress=False)
    n = len(read_manifest(m))
    assert counting.calls == -(-n // 4) - 3  # only what was not done
    assert json.loads(index_path.read_text())["keys"] == index["keys"]
    a, b = SpeechCache(ids_path), SpeechCache(cache_paths(m, micro_cache)[0])
    assert all(torch.equal(a[k], b[k]) for k in b.keys())
    assert not parts.exists()
    again = _Dies(after=0)
    encode_manifest(again, m, tmp_path, progress=False)  # complete: nothing is encoded
