"""`moss-speech bench split-overhead` runs at toy size and reports what it promises (no assertion on time)."""

from moss_components.cli.bench_split_overhead import bench_split_overhead


def test_bench_split_overhead_smoke(capsys):
    result = bench_split_overhead(
        num_layers=3, num_shared_layers=2, hidden_size=32, text_vocab_size=64, speech_codes=16, batch_size=1,
        seq_len=16, steps=1, warmup=0,
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "ratio split / plain" in out and "step CPU (ms)" in out and "FP-Full (PT-1)" in out
    assert result["ratio"] > 0
    full, nf = result["memory"]["FP-Full (PT-1)"], result["memory"]["NF"]
    assert full["frozen_with_state"] == 0 and full["state"] < nf["state"] and full["trainable"] < nf["trainable"]
    # AdamW keeps two moments per trainable parameter (+ a step count each)
    assert nf["state"] >= 2 * nf["trainable"]
