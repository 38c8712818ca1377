"""Run folders and checkpoints tried as an attacker and as a careless user would (the agents' command line)."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agents", *argv], capture_output=True, text=True, env=ENV, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode != 0, proc.stdout[-500:]
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    for needle in needles:
        assert needle in err, err


DQN_SMALL = ["--env", "mp/GridWorld-v0", "--option", "obs_type=onehot", "--steps", "200", "--eval-every", "100",
             "--video-episodes", "0", "--no-progress", "--json", "--config.learning-starts", "50",
             "--config.train-freq", "10", "--config.gradient-steps", "2", "--config.buffer-size", "500"]


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoints_are_refused_by_every_loader_and_run_nothing(capsys, tmp_path):
    run_json(capsys, ["train", "dqn", *DQN_SMALL, "--out", str(tmp_path / "run")])
    good = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    marker = tmp_path / "pwned"
    top = dict(good, loop=Payload(marker))  # route 1: an object at the top level
    nested = dict(good)  # route 2: a pickled blob where the environment used to be
    nested["agent"] = dict(good["agent"], extra=dict(good["agent"]["extra"], env=pickle.dumps(Payload(marker))))
    for name, state in (("top", top), ("nested", nested)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_bytes((tmp_path / "run" / "config.json").read_bytes())
        torch.save(state, folder / "checkpoint.pt")
        evaluated = cli("evaluate", "--env", "mp/GridWorld-v0", "--option", "obs_type=onehot", "--agent",
                        str(folder / "checkpoint.pt"))
        one_line_error(evaluated, str(folder / "checkpoint.pt"))
        resumed = cli("train", "dqn", *DQN_SMALL, "--resume", str(folder))
        one_line_error(resumed, "checkpoint.pt")
    assert not marker.exists()
    random_bytes = tmp_path / "noise.pt"
    random_bytes.write_bytes(np.random.default_rng(3).bytes(5000))
    one_line_error(cli("evaluate", "--env", "mp/GridWorld-v0", "--agent", str(random_bytes)), str(random_bytes))


def test_run_folders_are_never_overwritten_and_hold_their_config(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "q-learning", "--env", "mp/CliffWalking-v0", "--episodes", "20", "--video-episodes", "0",
            "--no-progress", "--json"]
    first, second = run_json(capsys, argv), run_json(capsys, argv)
    assert first["out"] == "runs/q-learning/mp_CliffWalking-v0-seed0"
    assert second["out"] == "runs/q-learning/mp_CliffWalking-v0-seed0-2"
    config = json.loads(Path(first["out"], "config.json").read_text())
    assert config["env"] == "mp/CliffWalking-v0" and config["episodes"] == 20
    one_line_error(cli(*argv[:-1], "--out", first["out"]), "already holds a run", "--resume")


def test_resume_needs_a_checkpoint_and_uses_the_stored_options(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(cli("train", "dqn", *DQN_SMALL, "--resume", str(tmp_path / "empty")), "nothing to resume")
    run = tmp_path / "run"
    run_json(capsys, ["train", "dqn", *DQN_SMALL, "--steps", "100", "--out", str(run)])
    capsys.readouterr()
    other = [a if a != "obs_type=onehot" else "obs_type=coords" for a in DQN_SMALL]
    assert main(["train", "dqn", *other, "--resume", str(run)]) == 0
    captured = capsys.readouterr()
    assert "ignored" in captured.err and "option" in captured.err  # says so
    assert json.loads(captured.out.strip().splitlines()[-1])["steps"] == 200
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200]


def test_solve_says_when_value_iteration_cannot_be_trusted(tmp_path):
    stuck = cli("solve", "--env", "mp/GridWorld-v0", "--gamma", "1.0", "--option", "hole_reward=0.0",
                "step_reward=1.0", "--max-iterations", "50", "--out", str(tmp_path / "a"))
    one_line_error(stuck, "not converged after 50 iterations")
    one_line_error(cli("solve", "--env", "mp/GridWorld-v0", "--tol", "0", "--out", str(tmp_path / "b")), "tol")


def test_a_greedy_loop_is_reported_at_its_cells(capsys, tmp_path):
    result = run_json(capsys, ["train", "sarsa", "--env", "mp/CliffWalking-v0", "--episodes", "500", "--seed", "3",
                               "--alpha", "0.5", "--video-episodes", "0", "--no-progress", "--json", "--out",
                               str(tmp_path / "s")])
    if result["greedy_return"] == -500.0:  # the time limit cut a greedy episode: it must say where it loops
        assert "loops between cells" in result["greedy_loop"] or "stays in cell" in result["greedy_loop"]
    else:
        assert "greedy_loop" not in result


def _rows(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(path))]


def test_a_killed_bullet_dqn_run_resumes_to_the_uninterrupted_metrics(capsys, tmp_path):
    argv = ["train", "dqn", "--env", "mp/BulletCartPole-v0", "--steps", "600", "--eval-every", "150",
            "--eval-every", "150", "--video-episodes", "0", "--no-progress", "--json", "--config.learning-starts", "100",
            "--config.train-freq", "20", "--config.gradient-steps", "4", "--config.buffer-size", "2000"]
    run_json(capsys, [*argv, "--out", str(tmp_path / "straight")])
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "agents", *argv, "--out", str(killed)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (killed / "metrics.csv").exists() and len(_rows(killed / "metrics.csv")) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / ".lock").exists()  # a killed run leaves its lock: the next start finds it stale
    run_json(capsys, [*argv, "--resume", str(killed)])
    assert _rows(killed / "metrics.csv") == _rows(tmp_path / "straight" / "metrics.csv")
    assert len(_rows(killed / "metrics.csv")) == 4


def test_actor_critic_with_async_environments_resumes_exactly(capsys, tmp_path):
    """--config.vector async: each environment in its own process; its state still goes into the
    checkpoint as plain data (through get_attr/set_attr), so a resumed run matches an uninterrupted one."""
    argv = ["train", "actor-critic", "--env", "CartPole-v1", "--eval-every", "200", "--video-episodes", "0",
            "--no-progress", "--json", "--config.n-envs", "2", "--config.vector", "async"]
    run_json(capsys, [*argv, "--steps", "600", "--out", str(tmp_path / "straight")])
    run_json(capsys, [*argv, "--steps", "400", "--out", str(tmp_path / "split")])
    run_json(capsys, [*argv, "--steps", "600", "--resume", str(tmp_path / "split")])
    assert _rows(tmp_path / "split" / "metrics.csv") == _rows(tmp_path / "straight" / "metrics.csv")
    sync = [a if a != "async" else "sync" for a in argv]
    run_json(capsys, [*sync, "--steps", "600", "--out", str(tmp_path / "sync")])
    assert _rows(tmp_path / "sync" / "metrics.csv") == _rows(tmp_path / "straight" / "metrics.csv")
