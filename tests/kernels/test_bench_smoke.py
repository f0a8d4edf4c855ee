"""The two kernel benches run end to end at toy sizes (no timing is asserted)."""

import pytest
import torch

from moss_components.cli import bench_attention as bench_attention_module
from moss_components.cli.bench_loss import bench_loss
from tests.kernels.kernel_checks import requires_triton


def test_bench_loss_prints_a_row_per_method(capsys):
    rows = bench_loss(vocab_sizes=[300], num_tokens=64, hidden_size=32, device="cpu")
    assert [(r["vocab"], r["method"]) for r in rows] == [(300, "naive"), (300, "fused")]
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-5)
    assert "peak MiB" in capsys.readouterr().out


@requires_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the bench times the kernels instead")
def test_bench_attention_without_gpu_runs_the_sweep(monkeypatch, capsys):
    tiny = [("dense", 1, 2, 2, [5], 32, True, torch.float32), ("varlen", 1, 2, 1, [3, 4], 32, False, torch.bfloat16)]
    monkeypatch.setattr(bench_attention_module, "_sweep_cases", lambda full: iter(tiny))
    assert bench_attention_module.bench_attention() == 0
    out = capsys.readouterr().out
    assert "needs a CUDA GPU" in out and "0 failure(s)" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the search runs")
def test_attention_tune_without_gpu_says_it_needs_one():
    from moss_components.cli.tune_attention import tune_attention

    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        tune_attention()


@requires_triton
@pytest.mark.parametrize("head_dim", [32, 64, 96, 128])
def test_gpu_launches_fit_the_kernels(monkeypatch, head_dim):
    """The compiled-GPU settings (not the interpreter's): the causal forward's tile rule and tensor-core-sized tiles."""
    import importlib

    flash = importlib.import_module("kernels.flash_attention")
    monkeypatch.setattr(flash, "triton_interpreting", lambda: False)
    launches = flash._launch_config(head_dim)
    assert set(launches) == {"fwd", "dkdv", "dq"}
    assert launches["fwd"].block_m % launches["fwd"].block_n == 0
    for launch in launches.values():
        assert launch.block_m >= 16 and launch.block_n >= 16 and launch.num_warps in (4, 8)
