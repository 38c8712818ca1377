"""The one optimisation engine (generative/training.py): reproducibility, resume, NaN stop, schedules,
clipping (notes §4.3), EMA, hooks, and data-parallel training under torchrun."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from envs.io.checkpoint import load_checkpoint
from generative.training import (
    CHECKPOINT,
    FitConfig,
    TrainingDiverged,
    fit,
    load_modules,
    lr_factor,
    rank_generator,
    seed_everything,
)

ROOT = Path(__file__).resolve().parents[2]


class Regression:
    """Fit y = sin(3 x0) + x1 x2 with a small MLP on batches drawn from the loop's generator.

    ``ranks`` > 1 draws the batch of every rank of a distributed run in one process (the doubled
    batch that a 2-process run must reproduce).
    """

    def __init__(self, seed: int = 0, nan_at: int | None = None, crash_at: int | None = None, batch: int = 64,
                 ranks: int = 1) -> None:
        seed_everything(seed)
        self.net = nn.Sequential(nn.Linear(3, 32), nn.Tanh(), nn.Linear(32, 1))
        self.head = nn.Linear(1, 1)
        self.nan_at, self.crash_at, self.batch = nan_at, crash_at, batch
        self.extra = [rank_generator(seed, r) for r in range(1, ranks)]
        self.evaluations: list[int] = []

    def modules(self):
        return {"net": self.net, "head": self.head}

    def param_groups(self):
        return [{"params": self.net.parameters()}, {"params": self.head.parameters(), "lr": 2e-3}]

    def loss(self, step, generator):
        if step == self.crash_at:
            raise KeyboardInterrupt
        x = torch.cat([torch.rand(self.batch, 3, generator=g) * 2 - 1 for g in [generator, *self.extra]])
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


def test_resume_gives_the_uninterrupted_loss_curve_and_metrics_file_exactly(tmp_path):
    full = fit(Regression(), _config(schedule="constant", log_every=5), tmp_path / "full")
    fit(Regression(), _config(steps=10, schedule="constant", log_every=5), tmp_path / "split")
    resumed = fit(Regression(), _config(schedule="constant", log_every=5), tmp_path / "split", resume=True)
    assert resumed.losses == full.losses
    rows = lambda path: [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(path))]  # noqa: E731
    assert rows(tmp_path / "split" / "metrics.csv") == rows(tmp_path / "full" / "metrics.csv")
    seconds = [float(r["seconds"]) for r in csv.DictReader(open(tmp_path / "split" / "metrics.csv"))]
    assert seconds == sorted(seconds)  # the clock keeps counting across the resume


def test_resume_after_a_crash_between_checkpoints(tmp_path):
    full = fit(Regression(), _config(), tmp_path / "full")  # cosine schedule over 20 steps
    with pytest.raises(KeyboardInterrupt):
        fit(Regression(crash_at=13), _config(), tmp_path / "crash")
    assert load_checkpoint(tmp_path / "crash" / CHECKPOINT)["step"] == 10
    assert not (tmp_path / "crash" / ".lock").exists()  # released on the way out
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
    five = fit(Regression(), _config(steps=5, schedule="constant"), tmp_path / "five")
    assert state["losses"] == five.losses
    clean = load_checkpoint(tmp_path / "five" / CHECKPOINT)["modules"]
    for name in ("net", "head"):
        for key, value in state["modules"][name].items():
            assert torch.equal(value, clean[name][key])


def test_metrics_csv_rows_are_window_means_and_config_json_is_written(tmp_path):
    result = fit(Regression(), _config(steps=10), tmp_path / "m")
    with open(tmp_path / "m" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4, 8, 10]
    assert math.isclose(float(rows[0]["loss"]), float(np.mean(result.losses[:4])), rel_tol=1e-9)
    assert math.isclose(float(rows[2]["loss"]), float(np.mean(result.losses[8:10])), rel_tol=1e-9)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["steps"] == 10


def test_fit_reduces_the_loss(tmp_path):
    result = fit(Regression(), _config(steps=300, log_every=50, checkpoint_every=300), tmp_path / "r")
    assert np.mean(result.losses[-20:]) < 0.2 * np.mean(result.losses[:20])


def test_schedules_in_closed_form_and_per_group_rates(tmp_path):
    cosine = FitConfig(steps=100, lr_min_ratio=0.1)
    assert lr_factor(0, cosine) == 1.0
    assert math.isclose(lr_factor(50, cosine), 0.55)
    assert math.isclose(lr_factor(100, cosine), 0.1)
    assert lr_factor(70, FitConfig(steps=100, schedule="constant")) == 1.0
    assert math.isclose(lr_factor(25, FitConfig(steps=100, schedule="linear", lr_min_ratio=0.0)), 0.75)
    warm = FitConfig(steps=110, warmup_steps=10, lr_min_ratio=0.1)
    assert [lr_factor(s, warm) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert lr_factor(10, warm) == 1.0 and math.isclose(lr_factor(60, warm), 0.55)
    fit(Regression(), _config(steps=10, lr=1e-2), tmp_path / "g")
    groups = load_checkpoint(tmp_path / "g" / CHECKPOINT)["optimizers"]["main"]["param_groups"]
    factor = lr_factor(9, _config(steps=10))  # the rate of the last step
    assert math.isclose(groups[0]["lr"], 1e-2 * factor) and math.isclose(groups[1]["lr"], 2e-3 * factor)


def test_clipping_is_the_notes_rule_inside_the_loop(tmp_path):
    """With a tiny threshold every step moves SGD's weights by exactly lr * k (notes §4.3)."""

    class One:
        def __init__(self):
            self.w = nn.Linear(4, 1, bias=False)

        def modules(self):
            return {"w": self.w}

        def param_groups(self):
            return [{"params": self.w.parameters()}]

        def loss(self, step, generator):
            x = torch.randn(16, 4, generator=generator) * 10
            return (self.w(x) ** 2).mean(), {}

    objective = One()
    before = objective.w.weight.detach().clone()
    config = _config(steps=1, optimizer="sgd", momentum=0.0, schedule="constant", lr=0.5, clip_norm=1e-3)
    result = fit(objective, config, tmp_path / "clip")
    assert result.rows[0]["grad_norm"] > 1e-3
    assert torch.linalg.vector_norm(objective.w.weight.detach() - before).item() == pytest.approx(0.5e-3, rel=1e-5)


def test_ema_weights_are_the_average_and_become_the_result(tmp_path):
    objective = Regression()
    config = _config(steps=10, ema_decay=0.5, schedule="constant")
    raw = Regression()
    fit(raw, _config(steps=10, schedule="constant"), tmp_path / "raw")
    fit(objective, config, tmp_path / "ema")
    state = load_checkpoint(tmp_path / "ema" / CHECKPOINT)
    # the final modules hold the EMA weights, which differ from the raw trajectory's last weights
    assert torch.equal(objective.net[0].weight, state["ema"]["net.0.weight"])
    assert not torch.equal(objective.net[0].weight, raw.net[0].weight)


def test_evaluate_hook_runs_every_eval_every_and_joins_the_rows(tmp_path):
    class Evaluated(Regression):
        def evaluate(self, step):
            self.evaluations.append(step)
            return {"val": float(step)}

    objective = Evaluated()
    result = fit(objective, _config(steps=12, eval_every=5, log_every=4), tmp_path / "ev")
    assert objective.evaluations == [5, 10, 12]
    assert result.evaluation == {"val": 12.0}
    assert [r.get("val") for r in result.rows if "val" in r] == [5.0, 10.0, 12.0]


def test_custom_train_step_and_several_optimizers(tmp_path):
    class TwoPlayers(Regression):
        def optimizers(self, config):
            return {"net": torch.optim.SGD(self.net.parameters(), lr=config.lr),
                    "head": torch.optim.SGD(self.head.parameters(), lr=config.lr)}

        def train_step(self, step, generator, optimizers):
            loss, _ = self.loss(step, generator)
            for opt in optimizers.values():
                opt.zero_grad()
            loss.backward()
            optimizers["net"].step()  # only the first player moves
            return {"loss": float(loss.detach())}

    objective = TwoPlayers()
    head = objective.head.weight.detach().clone()
    fit(objective, _config(steps=5), tmp_path / "two")
    assert torch.equal(objective.head.weight, head)
    assert set(load_checkpoint(tmp_path / "two" / CHECKPOINT)["optimizers"]) == {"net", "head"}


def test_config_checks():
    for bad in (dict(steps=0), dict(lr=-1.0), dict(threads=0), dict(warmup_steps=-1), dict(clip_norm=0.0),
                dict(ema_decay=1.0)):
        with pytest.raises(ValueError):
            FitConfig(**bad)


DDP_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {tests!r})
from test_engine import Regression, _config
from generative.training import fit
torch.set_num_threads(1)
result = fit(Regression(batch=32), _config(steps=8, log_every=1), sys.argv[1])
print("LOSSES", json.dumps(result.losses))
"""


def test_two_torchrun_processes_equal_one_process_with_the_doubled_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = tmp_path / "ddp-run"
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script), str(run)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[:2500] + out.stderr[-1500:]
    lines = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("LOSSES")]
    assert len(lines) == 2 and lines[0] == lines[1]  # every rank logs the rank-averaged loss
    single = fit(Regression(batch=32, ranks=2), _config(steps=8, log_every=1), tmp_path / "single")
    assert np.allclose(lines[0], single.losses, rtol=1e-5, atol=1e-7)
    # one run folder, written by rank 0 alone, and nothing else from the two processes
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv", "tensorboard"]
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp-run", "ddp.py", "single"]


def test_evaluate_can_write_into_the_run_folder_and_tensorboard_gets_the_rows(tmp_path):
    class Drawing(Regression):
        def evaluate(self, step, run_dir):
            (run_dir / f"samples-{step}.txt").write_text(str(step))
            return {"drawn": 1.0}

    fit(Drawing(), _config(steps=6, eval_every=3, tensorboard=True), tmp_path / "draw")
    assert sorted(p.name for p in (tmp_path / "draw").glob("samples-*")) == ["samples-3.txt", "samples-6.txt"]
    events = list((tmp_path / "draw" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
