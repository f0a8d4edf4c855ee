import math

import pytest
import torch

from moss_components.optim import WarmupCosineLR


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_peak_cosine_and_floor():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=6e-5)
    lrs = _lrs(WarmupCosineLR(opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1), opt, 130)
    assert lrs[0] == pytest.approx(6e-5 / 11)
    assert lrs[10] == pytest.approx(6e-5)  # peak right after warm-up
    # halfway through the decay the cosine is at the midpoint between peak and floor
    assert lrs[60] == pytest.approx(6e-6 + (6e-5 - 6e-6) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == pytest.approx(6e-6) and lrs[129] == pytest.approx(6e-6)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"total_steps": 0}, "total_steps must be positive"),
        ({"total_steps": 5, "warmup_steps": 6}, "warmup_steps=6"),
        ({"total_steps": 5, "min_lr_ratio": 2.0}, "min_lr_ratio=2.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=match):
        WarmupCosineLR(opt, **kwargs)


def test_end_at_moves_the_end_of_the_decay_within_warmup_and_total_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosineLR(opt, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    sched.end_at(60)
    lrs = _lrs(sched, opt, 70)
    assert lrs[35] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway from 10 to 60
    assert lrs[60] == pytest.approx(0.1) and lrs[69] == pytest.approx(0.1)
    sched.end_at(1_000)
    assert sched.total_steps == 110  # never later than the constructor's total_steps
    sched.end_at(3)
    assert sched.total_steps == 11  # never inside the warm-up
