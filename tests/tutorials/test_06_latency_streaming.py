"""Tutorial 06 (latency and streaming) in its smoke budget: the resynthesis sweep over chunk size and look-ahead,
and ``chat`` streamed against one-shot, on a reduced grid."""

import json
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_latency_streaming_smoke(run_tutorial, tmp_path):
    proc = run_tutorial("06_latency_streaming.py", tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    chunks, lookaheads = results["chunks"], results["lookaheads"]
    assert chunks == [2, 8] and lookaheads == [0, 3]
    trained = results["decoder"]["lookahead_tokens"]
    assert trained == 3 and results["decoder"]["vocoder_context_frames"] > 0

    # one resynthesis point per (chunk, look-ahead), CERs in [0, inf) with their interval around them
    rs = results["resynthesis"]
    assert rs["clips"] == 1 and all(n > 0 for n in rs["ids_per_clip"])
    assert sorted((p["chunk_tokens"], p["lookahead_tokens"]) for p in rs["points"]) == [
        (c, la) for c in chunks for la in lookaheads
    ]
    for p in rs["points"]:
        assert 0 <= p["cer_lo"] <= p["cer"] <= p["cer_hi"] and math.isfinite(p["cer"])
        assert p["chunk_ms"] == 80 * p["chunk_tokens"]
        if p["exact"]:  # the decoder's own look-ahead: streamed = one-shot up to float rounding
            assert p["lookahead_tokens"] == trained and p["max_abs_diff_vs_one_shot"] < 1e-4
            assert p["snr_db_vs_one_shot_median"] > 80
        else:  # emitting before the look-ahead arrived changes the audio
            assert p["max_abs_diff_vs_one_shot"] > 1e-4 and p["snr_db_vs_one_shot_median"] < 80
    # the paired difference from the trained setting (chunk 8, look-ahead 3) is 0 there, with a 0-wide interval
    ref = next(p for p in rs["points"] if (p["chunk_tokens"], p["lookahead_tokens"]) == (8, trained))
    assert ref["delta_cer_vs_trained"] == ref["delta_lo"] == ref["delta_hi"] == 0
    for p in rs["points"]:
        assert p["delta_lo"] <= p["delta_cer_vs_trained"] <= p["delta_hi"]
        assert abs(p["delta_cer_vs_trained"] - (p["cer"] - ref["cer"])) < 1e-9
    assert 0 <= rs["original_audio_cer"] and 0 <= rs["one_shot_whole_context_cer"]
    assert rs["check_vs_speech_stream_max_abs_diff"] < 1e-4  # the tutorial's stream is the library's at L = 3

    # chat: every chunk size streamed and one-shot; streamed audio equals one-shot audio
    lat = results["latency"]
    assert [e["chunk_tokens"] for e in lat["per_chunk"]] == chunks
    assert len(lat["questions"]) == 1 and lat["questions"][0]["answer_ids"] <= 12
    for e in lat["per_chunk"]:
        assert 0 < e["stream_first_audio_seconds"] <= e["stream_total_seconds"] < 60
        assert 0 < e["one-shot_first_audio_seconds"] <= e["one-shot_total_seconds"] < 60
        assert e["stream_vs_one_shot_same_length"] and e["stream_vs_one_shot_max_abs_diff"] < 1e-4
        for kind in ("stream", "one-shot"):  # CPU time of the one thread, at the first and the last chunk
            assert 0 < e[f"{kind}_first_audio_cpu_seconds"] <= e[f"{kind}_total_cpu_seconds"] < 60
            assert 0 < e[f"{kind}_real_time_factor_cpu"] < 100
    assert 0 < lat["lm_step_seconds"] < 5 and 0 < lat["encode_seconds"] < 5
    assert 0 < lat["lm_step_cpu_seconds"] < 5 and 0 < lat["encode_cpu_seconds"] < 5

    # first-chunk latency per (chunk, look-ahead); waiting for fewer look-ahead ids never waits for more ids
    first = {(p["chunk_tokens"], p["lookahead_tokens"]): p for p in results["first_chunk"]}
    assert sorted(first) == [(c, la) for c in chunks for la in lookaheads]
    for c in chunks:
        assert first[(c, 0)]["ids_waited_for"] <= first[(c, trained)]["ids_waited_for"]
        assert first[(c, trained)]["chat_measured_seconds"] > 0 and first[(c, 0)]["chat_measured_seconds"] is None
    assert all(0 < p["estimate_seconds"] < 60 and 0 < p["estimate_cpu_seconds"] < 60 for p in first.values())

    for name in ("resynthesis_cer.png", "latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the printed tables: one row per (chunk, look-ahead), then one per chunk
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == len(chunks) * len(lookaheads) + len(chunks)
