"""Tracking a run (envs/io/tracking.py through envs/io/run.py): TensorBoard event files read back with
TensorBoard's own reader, resume without duplicated steps, W&B in offline mode read back from its run
file, the engine's evaluation images, and one-line errors when a package is missing."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from envs.io import tracking
from envs.io.run import CHECKPOINT, RunFolder
from envs.io.tracking import wandb_mode

ROOT = Path(__file__).resolve().parents[2]


def accumulator(folder: Path):
    """TensorBoard's reader over ``folder/tensorboard``, keeping every scalar and image."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

    return EventAccumulator(str(folder / "tensorboard"), size_guidance={SCALARS: 0, IMAGES: 0}).Reload()


def picture(seed: int, shape: tuple[int, ...] = (6, 10, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------------- TensorBoard by default
def test_a_default_run_folder_logs_rows_and_images_to_tensorboard(tmp_path):
    with RunFolder(tmp_path / "run", config={"lr": 0.1}) as run:
        assert run.logs_images
        for step in (1, 2, 3):
            run.log({"step": step, "loss": 1.0 / step, "accuracy": np.float32(0.25 * step), "method": "x"})
        run.log_image("samples", picture(0), step=3)
        run.log_image("grey", picture(1, (5, 7)), step=3)
    events = accumulator(tmp_path / "run")
    assert sorted(events.Tags()["scalars"]) == ["accuracy", "loss"]  # the step and the string are not curves
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert [e.value for e in events.Scalars("accuracy")] == [0.25, 0.5, 0.75]
    import imageio.v3 as iio

    (image,) = events.Images("samples")
    assert (image.step, image.width, image.height) == (3, 10, 6)
    assert np.array_equal(iio.imread(image.encoded_image_string), picture(0))
    (grey,) = events.Images("grey")
    assert np.array_equal(iio.imread(grey.encoded_image_string), picture(1, (5, 7)))


def test_tensorboard_off_writes_nothing_and_bad_images_are_one_line_errors(tmp_path):
    with RunFolder(tmp_path / "off", tensorboard=False) as run:
        assert not run.logs_images
        run.log({"step": 1, "loss": 1.0})
        run.log_image("samples", picture(0), 1)  # goes nowhere
        for bad, what in ((np.zeros((4, 4, 3)), "float64"), (np.zeros((4, 4, 4), np.uint8), r"\[4, 4, 4\]")):
            with pytest.raises(ValueError, match=f"image must be uint8 .*{what}"):
                run.log_image("bad", bad, 1)
    assert not (tmp_path / "off" / "tensorboard").exists()


def test_only_the_writer_process_writes_tensorboard(tmp_path):
    with RunFolder(tmp_path / "run") as rank0, RunFolder(tmp_path / "run", writer=False) as rank1:
        assert rank0.logs_images and not rank1.logs_images
        for run in (rank0, rank1):
            run.log({"step": 1, "loss": 1.0})
            run.log_image("samples", picture(0), 1)
    assert len(list((tmp_path / "run" / "tensorboard").iterdir())) == 1
    assert len(accumulator(tmp_path / "run").Scalars("loss")) == 1


def test_tracking_a_run_imports_no_torch():
    code = ("import sys, tempfile, numpy as np; from envs.io.run import RunFolder\n"
            "with RunFolder(tempfile.mkdtemp() + '/run') as run:\n"
            "    run.log({'step': 1, 'loss': 0.5}); run.log_image('x', np.zeros((4, 4, 3), np.uint8), 1)\n"
            "print('torch' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["False", "False"]


def test_a_resumed_run_shows_every_step_once_in_tensorboard(tmp_path):
    folder = tmp_path / "run"
    with RunFolder(folder) as run:
        for step in (1, 2, 3, 4):
            run.log({"step": step, "loss": float(step)})
            run.log_image("samples", picture(step), step)
            if step == 2:
                run.save({"run": run.state_dict()})  # the checkpoint; steps 3 and 4 are lost when the run is killed
    with RunFolder(folder, resume=True) as run:
        run.load_state_dict(run.load(CHECKPOINT)["run"])
        for step in (3, 4, 5):
            run.log({"step": step, "loss": 10.0 * step})
            run.log_image("samples", picture(10 * step), step)
    assert len(list((folder / "tensorboard").iterdir())) == 2
    events = accumulator(folder)
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]
    assert [e.step for e in events.Images("samples")] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------- missing packages
def test_a_missing_tensorboard_gives_one_note_by_default_and_an_error_when_asked(tmp_path, monkeypatch, capsys):
    for name in ["tensorboard", *(m for m in sys.modules if m.startswith("tensorboard."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed (submodules imported earlier too)
    monkeypatch.setattr(tracking, "_notes", set())
    for name in ("a", "b"):
        with RunFolder(tmp_path / name) as run:
            assert not run.logs_images
            run.log({"step": 1, "loss": 1.0})
    assert capsys.readouterr().err.count("note: the tensorboard package is not installed") == 1
    assert not (tmp_path / "a" / "tensorboard").exists() and (tmp_path / "a" / "metrics.csv").exists()
    with pytest.raises(ValueError, match="^--tensorboard needs the tensorboard package: pip install tensorboard$"):
        RunFolder(tmp_path / "c", tensorboard=True)
    assert not (tmp_path / "c" / ".lock").exists()


def test_a_missing_wandb_is_one_line_before_the_run_starts(tmp_path, monkeypatch):
    from generative.training import FitConfig, fit

    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError, match="^--wandb needs the wandb package: pip install wandb$"):
        RunFolder(tmp_path / "a", wandb=True)
    assert not (tmp_path / "a" / ".lock").exists()

    class NeverRun(Regression):
        def loss(self, step, generator):
            raise AssertionError("a step ran")

    with pytest.raises(ValueError, match="^--wandb needs the wandb package"):
        fit(NeverRun(), FitConfig(steps=2, progress=False, wandb=True), tmp_path / "b")


# ---------------------------------------------------------------------- Weights & Biases, offline
def test_wandb_mode_is_offline_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode({}) == "offline"
    assert wandb_mode({"WANDB_API_KEY": "k"}) == "online"
    assert wandb_mode({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}) == "disabled"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_mode({}) == "online"


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): a 7-byte header, then LevelDB-log blocks of 32 KiB
    whose chunks (7-byte header: CRC, length, type) hold serialised ``Record`` messages."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # too little room left in the block for a chunk header: padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            records.append(Record.FromString(pending))
            pending = b""
    return records


def wandb_history(run_file: Path) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """``{step: {key: value_json}}`` of the logged rows and the run's config ``{key: value_json}``."""
    history, config = {}, {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            history.setdefault(record.history.step.num, {}).update(items)
        elif kind == "run":
            config.update({item.key: item.value_json for item in record.run.config.update})
    return history, config


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-elsewhere"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_STATS", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    pytest.importorskip("wandb")


def test_wandb_offline_logs_rows_images_and_config_and_a_resume_keeps_the_id(tmp_path, offline_wandb):
    folder = tmp_path / "my-run"
    with RunFolder(folder, config={"lr": 0.1, "model": "vae"}, wandb=True) as run:
        for step in (1, 2):
            run.log({"step": step, "loss": 1.0 / step})
            run.save({"run": run.state_dict()})
        run.log_image("samples", picture(0), 2)
    run_id = json.loads((folder / "wandb.json").read_text())["id"]
    (first,) = (folder / "wandb").glob(f"offline-run-*-{run_id}")
    history, config = wandb_history(first / f"run-{run_id}.wandb")
    assert {step: json.loads(row["loss"]) for step, row in history.items()} == {1: 1.0, 2: 0.5}
    assert json.loads(history[2]["samples/_type"]) == "image-file"
    assert (json.loads(history[2]["samples/width"]), json.loads(history[2]["samples/height"])) == (10, 6)
    assert json.loads(config["lr"]) == 0.1 and json.loads(config["model"]) == "vae"
    assert not (tmp_path / "wandb-elsewhere").exists()  # the run folder holds W&B's files, not WANDB_DIR

    with RunFolder(folder, resume=True, wandb=True) as run:
        run.load_state_dict(run.load(CHECKPOINT)["run"])
        run.log({"step": 3, "loss": 0.25})
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run_id) for r in runs)  # one W&B run, continued
    resumed = next(r for r in runs if r != first)
    assert json.loads(wandb_history(resumed / f"run-{run_id}.wandb")[0][3]["loss"]) == 0.25


# ---------------------------------------------------------------------- the engine
class Regression:
    """A tiny objective: fit y = sin(3 x0) + x1 x2 on batches drawn from the loop's generator; its
    ``pictures`` hook draws a picture of its weights (a pure function of them) and counts its calls."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
        self.drawn: list[int] = []

    def modules(self):
        return {"net": self.net}

    def param_groups(self):
        return [{"params": self.net.parameters()}]

    def loss(self, step, generator):
        x = torch.rand(32, 3, generator=generator) * 2 - 1
        y = torch.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2]
        return ((self.net(x).squeeze(1) - y) ** 2).mean(), {}

    def evaluate(self, step):
        return {"weight_norm": float(self.net[0].weight.detach().norm())}

    def pictures(self, step):
        self.drawn.append(step)
        weights = self.net[0].weight.detach().numpy()  # [16, 3]
        return {"weights": np.round(255 * (weights - weights.min()) / np.ptp(weights)).astype(np.uint8)}


def test_the_engine_logs_evaluation_images_and_tracking_does_not_change_the_numbers(tmp_path):
    from generative.training import FitConfig, fit

    config = FitConfig(steps=6, lr=1e-2, log_every=2, eval_every=3, checkpoint_every=3, progress=False)
    drawing = Regression()
    on = fit(drawing, config, tmp_path / "on")
    assert drawing.drawn == [3, 6]
    events = accumulator(tmp_path / "on")
    assert [e.step for e in events.Images("weights")] == [3, 6]
    assert [e.step for e in events.Scalars("loss")] == [2, 3, 4, 6]
    assert [e.value for e in events.Scalars("weight_norm")] == pytest.approx([r["weight_norm"] for r in on.rows[1::2]])
    silent = Regression()
    off = fit(silent, dataclasses.replace(config, tensorboard=False), tmp_path / "off")
    assert silent.drawn == [] and not (tmp_path / "off" / "tensorboard").exists()  # nobody to show them to
    assert off.losses == on.losses
    assert json.loads((tmp_path / "on" / "config.json").read_text())["tensorboard"] is True


def test_a_fit_into_a_folder_its_caller_opened_follows_the_fit_config(tmp_path):
    from generative.training import FitConfig, fit

    with RunFolder(tmp_path / "run", config={"command": "train"}) as run:  # as the commands open it
        fit(Regression(), FitConfig(steps=3, eval_every=3, progress=False, tensorboard=False), run)
        assert not run.logs_images
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_the_generative_train_command_offers_wandb_and_tensorboard(capsys):
    from generative.__main__ import main

    with pytest.raises(SystemExit):
        main(["train", "mlp", "--help"])
    text = capsys.readouterr().out
    assert "--config.fit.wandb" in text and "--config.fit.no-tensorboard" in text


def test_sample_pictures_keep_their_pixels_and_put_positive_y_at_the_top():
    from generative.tasks.density import grid_image, points_image

    x = np.random.default_rng(0).random((3, 1, 2, 2)).astype(np.float32)
    grid = grid_image(x, columns=2, scale=1)  # a 1-pixel grey gap around every image
    assert grid.dtype == np.uint8 and grid.shape == (7, 7)
    assert np.array_equal(grid[1:3, 4:6], np.round(x[1, 0] * 255).astype(np.uint8)) and grid[0, 0] == 128
    image = points_image(np.array([[2.5, 2.5]] * 3 + [[-2.5, -2.5]]), extent=3.0, size=6)
    assert image[0, 5] == 0 and image[5, 0] == round(255 * (1 - np.sqrt(1 / 3)))  # top right: the fullest cell
    assert (image == 255).sum() == 34
