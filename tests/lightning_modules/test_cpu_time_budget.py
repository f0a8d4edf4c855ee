import time
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from lightning_modules.callbacks import CPUTimeBudget
from lightning_modules.callbacks import cpu_time_budget as budget_module
from moss_components.optim import warmup_cosine_schedule


class _Linear(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.lrs = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.optimizers().param_groups[0]["lr"])
        return self.layer(batch).pow(2).mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=1)

    def configure_optimizers(self):
        return warmup_cosine_schedule(torch.optim.SGD(self.parameters(), lr=1.0), 1000, 0, min_lr_ratio=0.1)


@pytest.fixture
def cpu_seconds_per_step(monkeypatch):
    """Each reading of the process clock advances it 1.5 s: a 1-minute budget on 1 thread ends at step 40."""
    clock = iter(range(0, 10**6, 3))
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(process_time=lambda: next(clock) / 2, time=time.time))


@pytest.mark.parametrize("anneal", [True, False])
def test_budget_stops_the_run_and_ends_the_lr_decay_with_it(cpu_seconds_per_step, tmp_path, anneal):
    model = _Linear()
    trainer = Trainer(
        max_steps=1000,
        callbacks=[CPUTimeBudget(minutes=1, threads=1, anneal=anneal)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model)
    assert trainer.global_step == 40
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    if anneal:
        # the projection is 40 steps from a tenth of the budget on, so the LR is at its floor when the budget ends
        assert scheduler.total_steps == 40 and model.lrs[-1] == pytest.approx(0.1, abs=0.01)
        assert all(a >= b for a, b in zip(model.lrs, model.lrs[1:]))
    else:
        assert scheduler.total_steps == 1000 and model.lrs[-1] > 0.99
