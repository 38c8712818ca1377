"""The command line of the issue's acceptance list, run as a user would."""

import json
import subprocess
import sys

import numpy as np
import pytest

from agents.__main__ import main


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_solve_methods_agree_and_match_pymdptoolbox(capsys, tmp_path):
    import gymnasium as gym
    import mdptoolbox.mdp as mdptoolbox

    results = {}
    for method in ("value-iteration", "policy-iteration"):
        out = tmp_path / method
        results[method] = run_json(capsys, ["solve", "--env", "mp/FrozenLake8x8-v0", "--method", method, "--json", "--out", str(out)])
        assert (out / "value.png").stat().st_size > 0
        with np.load(out / "solution.npz") as saved:
            np.testing.assert_allclose(saved["V"], results[method]["V"])
    vi, pi = results["value-iteration"], results["policy-iteration"]
    assert set(vi) == {"env", "method", "gamma", "iterations", "V", "policy", "seconds", "out"}
    np.testing.assert_allclose(vi["V"], pi["V"], atol=1e-6)
    assert pi["iterations"] < vi["iterations"]
    P, R = gym.make("mp/FrozenLake8x8-v0").unwrapped.mdp.to_mdptoolbox()
    reference = mdptoolbox.ValueIteration(P, R, vi["gamma"], epsilon=1e-8, max_iter=100_000)
    reference.run()
    np.testing.assert_allclose(vi["V"], reference.V, atol=1e-4)
    np.testing.assert_allclose(pi["V"], reference.V, atol=1e-4)


def test_solve_accepts_gymnasium_ids_and_a_gamma(capsys, tmp_path):
    result = run_json(capsys, ["solve", "--env", "FrozenLake-v1", "--gamma", "0.9", "--json", "--out", str(tmp_path)])
    assert result["gamma"] == 0.9 and len(result["V"]) == 16


def test_cliff_walking_q_learning_is_optimal_and_sarsa_is_safer(capsys, tmp_path):
    """Sutton & Barto, Example 6.6, with the issue's commands."""
    returns = {}
    for agent in ("q-learning", "sarsa"):
        out = tmp_path / agent
        result = run_json(capsys, ["train", agent, "--env", "mp/CliffWalking-v0", "--episodes", "500",
                                   "--seed", "0", "--json", "--out", str(out), "--no-progress"])
        assert set(result) == {"agent", "env", "episodes", "mean_return", "greedy_return", "seconds", "out"}
        returns[agent] = result
        for name in ("metrics.csv", "curve.png", "value.png", "agent.npz", "eval.mp4"):
            assert (out / name).stat().st_size > 0, name
        lines = (out / "metrics.csv").read_text().splitlines()
        assert lines[0] == "episode,return,length,epsilon" and len(lines) == 501
    assert returns["q-learning"]["greedy_return"] == -13
    assert -100 < returns["sarsa"]["greedy_return"] < -13  # a longer path away from the cliff
    # online (epsilon-greedy) returns: SARSA's safe path earns more than Q-learning's cliff edge
    assert returns["sarsa"]["mean_return"] > returns["q-learning"]["mean_return"]


def test_train_is_reproducible(capsys, tmp_path):
    argv = ["train", "sarsa", "--env", "mp/GridWorld-v0", "--episodes", "50", "--seed", "3",
            "--video-episodes", "0", "--no-progress", "--json"]
    first = run_json(capsys, argv + ["--out", str(tmp_path / "a")])
    second = run_json(capsys, argv + ["--out", str(tmp_path / "b")])
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()
    assert first["mean_return"] == second["mean_return"]


def test_prediction_agent_evaluates_a_solved_policy(capsys, tmp_path):
    run_json(capsys, ["solve", "--env", "mp/GridWorld-v0", "--json", "--out", str(tmp_path / "dp")])
    result = run_json(capsys, ["train", "td0", "--env", "mp/GridWorld-v0", "--episodes", "200",
                               "--policy", str(tmp_path / "dp" / "solution.npz"), "--no-progress", "--json",
                               "--video-episodes", "0", "--out", str(tmp_path / "td0")])
    assert result["greedy_return"] == 2.0  # the solved policy: 8 steps of -1 then +10 at the goal


def test_evaluate_a_saved_agent_and_reject_a_truncated_file(capsys, tmp_path):
    out = tmp_path / "q"
    run_json(capsys, ["train", "q-learning", "--env", "mp/CliffWalking-v0", "--episodes", "300", "--json", "--no-progress",
                      "--video-episodes", "0", "--out", str(out)])
    result = run_json(capsys, ["evaluate", "--env", "mp/CliffWalking-v0", "--agent", str(out / "agent.npz"),
                               "--episodes", "3", "--video", str(tmp_path / "eval.mp4"), "--json"])
    assert result["returns"] == [-13.0, -13.0, -13.0] and (tmp_path / "eval.mp4").stat().st_size > 0
    broken = tmp_path / "broken.npz"
    broken.write_bytes((out / "agent.npz").read_bytes()[:200])
    proc = subprocess.run([sys.executable, "-m", "agents", "evaluate", "--env", "mp/CliffWalking-v0", "--agent", str(broken)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "truncated" in proc.stderr and "Traceback" not in proc.stderr
    wrong_env = subprocess.run([sys.executable, "-m", "agents", "evaluate", "--env", "mp/FourRooms-v0", "--agent",
                                str(out / "agent.npz")], capture_output=True, text=True)
    assert wrong_env.returncode != 0 and "has tables for 48 states" in wrong_env.stderr


def test_gymnasium_ids_without_a_time_limit_still_end(capsys, tmp_path):
    """Gymnasium's CliffWalking-v1 has no time limit; a half-trained greedy policy may walk into a wall forever."""
    result = run_json(capsys, ["train", "q-learning", "--env", "CliffWalking-v1", "--episodes", "5", "--seed", "0", "--json",
                               "--no-progress", "--max-episode-steps", "60", "--out", str(tmp_path)])
    assert -60 * 100 <= result["greedy_return"] < 0
    assert (tmp_path / "eval.mp4").stat().st_size > 0
    taxi = run_json(capsys, ["solve", "--env", "Taxi-v4", "--json", "--out", str(tmp_path / "taxi")])
    assert len(taxi["V"]) == 500 and max(taxi["V"]) > 0  # not a grid: no heatmap, but a solution


def test_bad_arguments_are_clear_errors(tmp_path):
    for argv, message in [
        (["train", "q-learning", "--env", "mp/CliffWalking-v0", "--epsilon", "sometimes"], "sometimes"),
        (["train", "sarsa", "--env", "mp/CliffWalking-v0", "--episodes", "0"], "episodes must be at least 1"),
        (["solve", "--env", "mp/GridWorld-v0", "--gamma", "1.5"], "gamma must lie in [0, 1]"),
        (["train", "q-learning", "--env", "CartPole-v1"], "Discrete"),
        # a flag of the other family is refused, not silently ignored
        (["train", "dqn", "--env", "CartPole-v1", "--epsilon", "0.2"], "--epsilon"),
        (["train", "q-learning", "--env", "mp/CliffWalking-v0", "--tensorboard"], "--tensorboard"),
        (["train", "td0", "--env", "mp/CliffWalking-v0", "--epsilon", "0.2"], "--epsilon"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "agents", *argv, "--out", str(tmp_path / "x")], capture_output=True, text=True)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, (argv, proc.stderr[-500:])


@pytest.mark.parametrize("runs, episodes", [(2, 150)])
def test_demo_writes_an_index_with_pictures_and_videos(tmp_path, runs, episodes):
    import dataclasses

    from agents.demo import Demo, run_demo
    from envs.io.page import command_line

    args = Demo(out=tmp_path, runs=runs, episodes=episodes, progress=False, dqn_steps=3_000, reacher_steps=2_000)
    index = run_demo(args)
    page = index.read_text()
    assert page.count("<section ") == 3 and page.count("<video") == 4 and page.count("<img") >= 9
    for folder in ("dynamic-programming", "cliff-walking", "deep-rl"):
        manifest = json.loads((tmp_path / folder / "section.json").read_text())
        # the section's command is this demo's, for that section only
        assert manifest["command"] == command_line("python -m agents demo", dataclasses.replace(args, only=(folder,)))
        assert f"--only {folder}" in manifest["command"] and f"--runs {runs}" in manifest["command"]
        for item in manifest["items"]:
            assert (tmp_path / folder / item["file"]).stat().st_size > 0


def test_deep_agents_train_with_stacked_frames_and_evaluate_from_the_checkpoint(capsys, tmp_path):
    argv = ["--env", "mp/GridWorld-v0", "--option", "obs_type=onehot", "--frame-stack", "3"]  # stacked images: test_dqn
    result = run_json(capsys, ["train", "dqn", *argv, "--steps", "300", "--eval-every", "150",
                               "--video-episodes", "0", "--no-progress", "--json", "--out", str(tmp_path)])
    assert result["steps"] == 300 and (tmp_path / "checkpoint.pt").exists()
    evaluated = run_json(capsys, ["evaluate", *argv, "--agent", str(tmp_path / "checkpoint.pt"), "--episodes", "2", "--json"])
    assert len(evaluated["returns"]) == 2
    proc = subprocess.run([sys.executable, "-m", "agents", "evaluate", "--env", "mp/GridWorld-v0", "--option", "obs_type=onehot",
                           "--agent", str(tmp_path / "checkpoint.pt")], capture_output=True, text=True)
    assert proc.returncode != 0 and "does not fit" in proc.stderr and "Traceback" not in proc.stderr
