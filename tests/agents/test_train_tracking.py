"""Deep runs log to TensorBoard by default: the metrics.csv rows as scalars and each evaluation's last frame."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np

from agents.__main__ import main
from agents.deep.trainer import last_frame

ARGV = ["train", "dqn", "--env", "mp/GridWorld-v0", "--steps", "60", "--eval-every", "30", "--video-episodes", "0",
        "--no-progress", "--json", "--config.learning-starts", "20"]


def test_tensorboard_is_on_by_default_with_the_evaluations_last_frames(capsys, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main([*ARGV, "--out", str(tmp_path / "on")]) == 0
    logs = EventAccumulator(str(tmp_path / "on" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    logs.Reload()
    with open(tmp_path / "on" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    scalars = logs.Scalars("eval_mean")
    assert [s.step for s in scalars] == [int(r["step"]) for r in rows] == [30, 60]
    np.testing.assert_allclose([s.value for s in scalars], [float(r["eval_mean"]) for r in rows])
    frame = gym.make("mp/GridWorld-v0", render_mode="rgb_array")
    frame.reset(seed=0)
    height, width, _ = frame.render().shape
    images = logs.Images("eval/last_frame")
    assert [(i.step, i.height, i.width) for i in images] == [(30, height, width), (60, height, width)]
    assert main([*ARGV, "--no-tensorboard", "--out", str(tmp_path / "off")]) == 0
    assert (tmp_path / "off" / "metrics.csv").exists() and not (tmp_path / "off" / "tensorboard").exists()
    capsys.readouterr()


def test_last_frame_needs_an_rgb_array_env():
    assert last_frame(gym.make("mp/GridWorld-v0")) is None
    ansi = gym.make("mp/GridWorld-v0", render_mode="ansi")
    ansi.reset(seed=0)
    assert last_frame(ansi) is None
    env = gym.make("mp/GridWorld-v0", render_mode="rgb_array")
    env.reset(seed=0)
    frame = last_frame(env)
    assert frame is not None and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
