"""``moss-speech bench generate`` at tiny sizes: it runs, prints its tables, and the baseline shares the layers.

No assertion on timings (tests never assert on wall time)."""

import json

import torch

from moss_components.cli.bench_generate import bench_generate, plain_model_sharing_layers, stage_times
from moss_components.cli.main import main
from moss_components.model import LayerSplitSpeechLM
from moss_components.model.tiny import tiny_special_ids, tiny_text_model

TINY = "--num_layers 3 --num_shared_layers 1 --hidden_size 32 --text_vocab_size 64 --speech_codes 16 --prompt_len 8"
TINY = [*TINY.split(), "--new_tokens", "4", "--repeats", "1", "--warmup", "0"]


def test_plain_model_uses_the_split_models_layer_objects():
    split = LayerSplitSpeechLM.from_text_model(tiny_text_model(num_layers=3), 1, 32, tiny_special_ids()).eval()
    plain = plain_model_sharing_layers(split, 132, "sdpa")
    shared = [*split.shared_layers, *split.text_layers, *split.speech_layers]
    assert len(plain.model.layers) == 1 + 2 * 2 and all(a is b for a, b in zip(plain.model.layers, shared))
    out = plain.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_bench_prints_table_ratio_and_stage_times(tmp_path, capsys):
    stages = tmp_path / "run" / "stages"
    stages.mkdir(parents=True)
    for name, seconds in [("sft", 180.0), ("corpus", 30.5), ("tokenizer", 240.0)]:
        (stages / f"{name}.json").write_text(json.dumps({"stage": name, "wall_seconds": seconds}))
    assert [s for s, _ in stage_times(tmp_path / "run")] == ["corpus", "tokenizer", "sft"]  # pipeline order

    main(["bench", "generate", *TINY, "--run", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "split model, generation.generate" in out and "plain LM (same layers), HF generate" in out
    assert "ratio split / plain tokens/s" in out and "goal >= 0.9" in out
    assert "pipeline stage times" in out and "450.5" in out  # the total


def test_bench_returns_its_numbers():
    result = bench_generate(num_layers=2, num_shared_layers=2, hidden_size=32, text_vocab_size=64, speech_codes=16,
                            prompt_len=4, new_tokens=3, repeats=1, warmup=0)  # fmt: skip
    assert result["ratio"] > 0 and result["split_tokens_per_second"] > 0 and "stage_seconds" not in result
