import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from envs.io import load_torch_checkpoint as load_checkpoint
from vision3d.training import (
    CHECKPOINT,
    FitConfig,
    TrainingDiverged,
    fit,
    load_modules,
    lr_factor,
    seed_everything,
)


class Regression:
    """Fit y = sin(3 x0) + x1 x2 with a small MLP on batches drawn from the loop's generator."""

    def __init__(self, seed: int = 0, nan_at: int | None = None, crash_at: int | None = None) -> None:
        seed_everything(seed)
        self.net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
        self.head = nn.Linear(1, 1)
        self.nan_at, self.crash_at = nan_at, crash_at

    def modules(self):
        return {"net": self.net, "head": self.head}

    def param_groups(self):
        return [{"params": self.net.parameters()}, {"params": self.head.parameters(), "lr": 2e-3}]

    def loss(self, step, generator):
        if step == self.crash_at:
            raise KeyboardInterrupt
        x = torch.rand(64, 3, generator=generator) * 2 - 1
        y = torch.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2]
        loss = ((self.head(self.net(x))[:, 0] - y) ** 2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}


def _config(**kw) -> FitConfig:
    return FitConfig(**{"steps": 20, "lr": 1e-2, "log_every": 4, "checkpoint_every": 5, "progress": False, **kw})


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a = fit(Regression(0), _config(), tmp_path / "a")
    b = fit(Regression(0), _config(), tmp_path / "b")
    c = fit(Regression(1), _config(seed=1), tmp_path / "c")
    assert a.losses == b.losses
    assert a.losses != c.losses
    assert len(a.losses) == 20 and a.steps == 20


def test_resume_gives_the_uninterrupted_loss_curve_exactly(tmp_path):
    full = fit(Regression(), _config(schedule="constant", log_every=5), tmp_path / "full")
    fit(Regression(), _config(steps=10, schedule="constant", log_every=5), tmp_path / "split")
    resumed = fit(Regression(), _config(schedule="constant", log_every=5), tmp_path / "split", resume=True)
    assert resumed.losses == full.losses
    assert [r["loss"] for r in resumed.rows] == [r["loss"] for r in full.rows]


def test_resume_after_a_crash_between_checkpoints(tmp_path):
    full = fit(Regression(), _config(), tmp_path / "full")  # cosine schedule over 20 steps
    with pytest.raises(KeyboardInterrupt):
        fit(Regression(crash_at=13), _config(), tmp_path / "crash")
    assert load_checkpoint(tmp_path / "crash" / CHECKPOINT)["step"] == 10
    resumed = fit(Regression(), _config(), tmp_path / "crash", resume=True)
    assert resumed.losses == full.losses
    net = Regression(5)
    load_modules(tmp_path / "crash", net.modules())
    full_state = load_checkpoint(tmp_path / "full" / CHECKPOINT)["modules"]["net"]
    for key, value in net.net.state_dict().items():
        assert torch.equal(value, full_state[key])


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="step 7"):
        fit(Regression(nan_at=7), _config(schedule="constant"), tmp_path / "nan")
    state = load_checkpoint(tmp_path / "nan" / CHECKPOINT)
    assert state["step"] == 5
    # the kept checkpoint holds exactly the weights of a clean 5-step run
    five = fit(Regression(), _config(steps=5, schedule="constant"), tmp_path / "five")
    assert state["losses"] == five.losses
    clean = load_checkpoint(tmp_path / "five" / CHECKPOINT)["modules"]
    for name in ("net", "head"):
        for key, value in state["modules"][name].items():
            assert torch.equal(value, clean[name][key])


def test_metrics_csv_rows_are_window_means(tmp_path):
    result = fit(Regression(), _config(steps=10), tmp_path / "m")
    with open(tmp_path / "m" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in rows] == [4, 8, 10]
    assert math.isclose(float(rows[0]["loss"]), float(np.mean(result.losses[:4])), rel_tol=1e-9)
    assert math.isclose(float(rows[2]["loss"]), float(np.mean(result.losses[8:10])), rel_tol=1e-9)
    assert math.isclose(float(rows[2]["mse"]), float(np.mean(result.losses[8:10])), rel_tol=1e-6)


def test_fit_reduces_the_loss(tmp_path):
    result = fit(Regression(), _config(steps=300, log_every=50, checkpoint_every=300), tmp_path / "r")
    assert np.mean(result.losses[-20:]) < 0.2 * np.mean(result.losses[:20])


def test_lr_factor_closed_form_and_per_group_rates(tmp_path):
    assert lr_factor(0, 100, "cosine", 0.1) == 1.0
    assert math.isclose(lr_factor(50, 100, "cosine", 0.1), 0.55)
    assert math.isclose(lr_factor(100, 100, "cosine", 0.1), 0.1)
    assert lr_factor(70, 100, "constant", 0.1) == 1.0
    fit(Regression(), _config(steps=10, lr=1e-2), tmp_path / "g")
    groups = load_checkpoint(tmp_path / "g" / CHECKPOINT)["optimizer"]["param_groups"]
    factor = lr_factor(9, 10, "cosine", 0.05)  # the rate of the last step
    assert math.isclose(groups[0]["lr"], 1e-2 * factor) and math.isclose(groups[1]["lr"], 2e-3 * factor)


def test_config_checks():
    with pytest.raises(ValueError, match="steps"):
        FitConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        FitConfig(lr=-1.0)
