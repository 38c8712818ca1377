"""``python -m agents compare``: our runs and Stable-Baselines3's, each read from its own files, on one plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agents.__main__ import main
from agents.compare import Compare, compare
from agents.curves import read_monitors, read_run


def sb3_run(folder: Path, seed: int, steps: int = 300) -> None:
    """A2C on CartPole-v1 for ``steps`` steps with SB3's own Monitor and EvalCallback logs in ``folder``."""
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.monitor import Monitor

    folder.mkdir(parents=True)
    env = Monitor(gym.make("CartPole-v1"), str(folder))  # folder/monitor.csv
    evaluation = EvalCallback(Monitor(gym.make("CartPole-v1")), n_eval_episodes=2, eval_freq=100,
                              log_path=str(folder), verbose=0)  # folder/evaluations.npz
    A2C("MlpPolicy", env, seed=seed, device="cpu", verbose=0).learn(steps, callback=evaluation)
    env.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One SB3 run, two SB3 seeds (RL Zoo's layout: a sub-folder per seed) and one run of ours."""
    root = tmp_path_factory.mktemp("runs")
    sb3_run(root / "a2c", seed=0)
    for seed in (1, 2):
        sb3_run(root / "a2c-seeds" / f"CartPole-v1_{seed}", seed=seed)
    assert main(["train", "actor-critic", "--env", "CartPole-v1", "--steps", "300", "--eval-every", "100",
                 "--config.n-envs", "2", "--video-episodes", "0", "--no-progress", "--json", "--no-tensorboard",
                 "--out", str(root / "ours")]) == 0
    return root


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_ours_and_sb3_on_one_plot_with_numbers_from_their_own_files(runs, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "ours"), str(runs / "a2c"), str(runs / "a2c-seeds"), "--labels", "ours", "sb3",
                 "sb3 x2", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out / "compare.png").stat().st_size > 0 and summary["plot"] == str(out / "compare.png")
    rows = {r["run"]: r for r in table(out / "compare.csv")}
    assert [rows[k]["source"] for k in ("ours", "sb3", "sb3 x2")] == ["ours metrics.csv", "sb3 evaluations.npz",
                                                                        "sb3 evaluations.npz"]
    assert [int(rows[k]["seeds"]) for k in ("ours", "sb3", "sb3 x2")] == [1, 1, 2]
    ours = table(runs / "ours" / "metrics.csv")
    assert float(rows["ours"]["final_mean"]) == float(ours[-1]["eval_mean"])
    assert float(rows["ours"]["last_x"]) == float(ours[-1]["step"])
    with np.load(runs / "a2c" / "evaluations.npz") as saved:
        assert list(saved["timesteps"]) == [100, 200, 300]
        assert float(rows["sb3"]["final_mean"]) == pytest.approx(saved["results"][-1].mean())
    finals = []
    for seed in (1, 2):
        with np.load(runs / "a2c-seeds" / f"CartPole-v1_{seed}" / "evaluations.npz") as saved:
            finals.append(saved["results"][-1].mean())
    two = rows["sb3 x2"]
    assert float(two["final_mean"]) == pytest.approx(np.mean(finals))
    assert float(two["final_low"]) == pytest.approx(min(finals)) and float(two["final_high"]) == pytest.approx(max(finals))
    markdown = (out / "compare.md").read_text()
    assert len(markdown.splitlines()) == 5 and "| sb3 x2 | sb3 evaluations.npz | greedy evaluation | 2 |" in markdown


def test_monitor_files_alone_give_training_returns_against_summed_lengths(runs, tmp_path):
    only = tmp_path / "monitor-only"
    only.mkdir()
    (only / "monitor.csv").write_bytes((runs / "a2c" / "monitor.csv").read_bytes())
    run = read_run(only)
    assert run.source == "sb3 monitor.csv" and run.metric == "training episodes"
    lines = (only / "monitor.csv").read_text().splitlines()
    lengths = [int(row["l"]) for row in csv.DictReader(lines[1:])]
    returns = [float(row["r"]) for row in csv.DictReader(lines[1:])]
    np.testing.assert_array_equal(run.curves[0].x, np.cumsum(lengths))
    np.testing.assert_array_equal(run.curves[0].y, returns)  # CartPole: return = length
    result = compare(Compare(runs=(only,), out=tmp_path / "cmp", window=5))
    assert result["runs"][0]["final_mean"] == pytest.approx(np.mean(returns[-5:]))


def test_parallel_monitor_files_merge_in_order_of_episode_end(tmp_path):
    header = '#{"t_start": 100.0, "env_id": "CartPole-v1"}\nr,l,t\n'
    (tmp_path / "0.monitor.csv").write_text(header + "10,10,1.0\n30,30,3.0\n")
    (tmp_path / "1.monitor.csv").write_text(header.replace("100.0", "100.5") + "20,20,1.0\n")  # ends at 101.5
    curve = read_monitors(tmp_path)
    np.testing.assert_array_equal(curve.y, [10, 20, 30])
    np.testing.assert_array_equal(curve.x, [10, 30, 60])


def test_our_seeds_folder_is_read_as_seeds(tmp_path):
    for seed, returns in ((0, [1.0, 5.0]), (1, [3.0, 9.0])):
        folder = tmp_path / "seeds" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "metrics.csv").write_text("step,eval_mean\n" + "".join(f"{100 * (i + 1)},{r}\n" for i, r in enumerate(returns)))
    (tmp_path / "seeds" / "config.json").write_text("{}")  # the --seeds command's own config
    run = read_run(tmp_path / "seeds")
    assert run.seeds == ["seed0", "seed1"] and run.source == "ours metrics.csv"
    result = compare(Compare(runs=(tmp_path / "seeds",), out=tmp_path / "cmp"))
    row = result["runs"][0]
    assert row["seeds"] == 2 and row["final_mean"] == 7.0 and row["best_mean"] == 7.0
    assert (row["final_low"], row["final_high"]) == (5.0, 9.0)


def test_folders_that_hold_no_run_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    for folder, message in ((tmp_path / "empty", "holds no run"), (tmp_path / "missing", "is not a folder")):
        with pytest.raises(ValueError, match=message) as err:
            compare(Compare(runs=(folder,), out=tmp_path / "cmp"))
        assert str(folder) in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "monitor.csv").write_text("r,l,t\n1,1,1\n")  # no '#{...}' header line
    with pytest.raises(ValueError, match="header"):
        read_run(tmp_path / "bad")
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "evaluations.npz", timesteps=np.arange(3))
    with pytest.raises(ValueError, match="lacks results"):
        read_run(tmp_path / "npz")
    with pytest.raises(ValueError, match="one label per run"):
        compare(Compare(runs=(tmp_path / "npz",), out=tmp_path / "cmp", labels=("a", "b")))
    assert not (tmp_path / "cmp").exists()
