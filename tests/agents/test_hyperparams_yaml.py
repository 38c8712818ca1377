"""Per-environment hyperparameters in YAML (agents/hyperparams/<agent>.yml), RL Zoo style: what ships, how the
layers override each other, and files that are wrong or hostile."""

from __future__ import annotations

import dataclasses
import json
import re

import gymnasium as gym
import numpy as np
import pytest

from agents.__main__ import main
from agents.hyperparams import DIRECTORY, hyperparams_file, load_table, parse_overrides, resolve, yaml_entry
from agents.registry import deep_agents
from envs.registration import all_environments


def trainable(agent: str, env_id: str) -> bool:
    """Whether the deep agent ``agent`` accepts the spaces of ``env_id``."""
    from agents.deep.networks import check_observation_space

    env = gym.make(env_id)
    try:
        check_observation_space(env.observation_space)  # every id here: Discrete or a float Box
        actions = env.action_space
        discrete = isinstance(actions, gym.spaces.Discrete)
        return discrete if agent == "dqn" else discrete or (isinstance(actions, gym.spaces.Box) and len(actions.shape) == 1)
    finally:
        env.close()


@pytest.mark.parametrize("agent", list(deep_agents()))
def test_every_deep_agent_ships_an_entry_for_each_id_it_can_train_on(agent):
    entry = deep_agents()[agent]
    table = load_table(hyperparams_file(agent))
    ids = [*all_environments(), "CartPole-v1"]
    assert set(table) <= set(ids), set(table) - set(ids)
    assert {i for i in ids if trainable(agent, i)} == set(table)  # DQN: all but the reacher's continuous torques
    text = hyperparams_file(agent).read_text()
    for env_id, overrides in table.items():
        config = resolve(agent, env_id, entry.config).config  # every entry type-checks against the dataclass
        assert {k: getattr(config, k) for k in overrides} == {
            k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        above = [line for line in text[:text.index(f"\n{env_id}:")].rstrip().splitlines()
                 if not re.fullmatch(r"\S+: (\{\}|\*\w+)", line)]  # entries of a group share the comment above it
        assert above[-1].startswith("#"), f"{agent}.yml: {env_id} says nowhere where its numbers come from"


def test_the_reacher_provenance_moved_with_the_numbers():
    text = hyperparams_file("actor-critic").read_text()
    for fact in ("-12.26", "-3.02", "0.67 mm", "ortho_init", "normalize_observations", "~150 runs"):
        assert fact in text
    _, reacher = yaml_entry("actor-critic", "mp/BulletReacher-v0")
    assert reacher["n_envs"] == 16 and reacher["learning_rate"] == pytest.approx(1.8e-3) and reacher["hidden"] == [128, 128]


def test_precedence_defaults_yaml_config_options_then_hyperparams(tmp_path):
    from agents.deep.dqn import DQNConfig

    (tmp_path / "dqn.yml").write_text("X-v0:\n  learning_rate: 1e-3\n  batch_size: 32\n  train_freq: 8\n")
    resolved = resolve("dqn", "X-v0", DQNConfig, {"batch_size": 16, "train_freq": 2}, ["train_freq=3"], directory=tmp_path)
    assert resolved.config.learning_rate == 1e-3  # YAML over the default (a YAML 1.1 string that spells a number)
    assert resolved.config.batch_size == 16  # --config over YAML
    assert resolved.config.train_freq == 3  # --hyperparams over --config
    assert resolved.config.gamma == DQNConfig().gamma  # nobody set it
    assert resolved.file == tmp_path / "dqn.yml" and resolved.yaml == {"learning_rate": 1e-3, "batch_size": 32, "train_freq": 8}
    assert resolved.command_line == {"batch_size": 16, "train_freq": 3}
    none = resolve("dqn", "Y-v0", DQNConfig, directory=tmp_path, note=False)
    assert none.config == DQNConfig() and none.file is None and none.yaml == {}


def test_hyperparams_values_are_yaml():
    assert parse_overrides(["learning_rate=1e-3", "hidden=[64,64]", "double=true", "loss=mse", "n=64,32", "x=1_000"]) == {
        "learning_rate": 1e-3, "hidden": [64, 64], "double": True, "loss": "mse", "n": [64, 32], "x": 1000}
    for bad in ("learning_rate", "=3", "a b=3"):
        with pytest.raises(ValueError, match="key=value"):
            parse_overrides([bad])


def test_the_command_line_records_where_every_value_came_from(capsys, tmp_path):
    """mp/GridWorld-v0's dqn.yml entry sets learning_starts 500 and train_freq 4; an explicit --config option
    wins even where it repeats the dataclass default (learning_starts 1000), and --hyperparams wins over it."""
    out = tmp_path / "run"
    assert main(["train", "dqn", "--env", "mp/GridWorld-v0", "--steps", "60", "--eval-every", "60", "--video-episodes",
                 "0", "--no-progress", "--json", "--no-tensorboard", "--config.learning-starts", "1000",
                 "--config.gradient-steps", "2", "--hyperparams", "gradient_steps=3", "--gamma", "0.9",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    stored = json.loads((out / "config.json").read_text())
    _, entry = yaml_entry("dqn", "mp/GridWorld-v0")
    config = stored["config"]
    assert config["learning_rate"] == entry["learning_rate"] == 0.001 and config["train_freq"] == 4  # YAML
    assert config["learning_starts"] == 1000  # explicit, equal to the default, still over YAML's 500
    assert config["gradient_steps"] == 3 and config["gamma"] == 0.9 and config["batch_size"] == 64
    assert stored["hyperparams_file"] == "agents/hyperparams/dqn.yml" and stored["yaml_overrides"] == entry
    assert stored["command_line_overrides"] == {"learning_starts": 1000, "gradient_steps": 3, "gamma": 0.9}


def test_resume_keeps_the_stored_config_when_the_yaml_changes(capsys, tmp_path, monkeypatch):
    from agents import hyperparams

    (tmp_path / "yml").mkdir()
    (tmp_path / "yml" / "dqn.yml").write_text("mp/GridWorld-v0:\n  learning_starts: 30\n  train_freq: 10\n")
    monkeypatch.setattr(hyperparams, "DIRECTORY", tmp_path / "yml")
    argv = ["train", "dqn", "--env", "mp/GridWorld-v0", "--eval-every", "50", "--video-episodes", "0", "--no-progress",
            "--json", "--no-tensorboard"]
    assert main([*argv, "--steps", "50", "--out", str(tmp_path / "run")]) == 0
    (tmp_path / "yml" / "dqn.yml").write_text("mp/GridWorld-v0:\n  learning_starts: 40\n  train_freq: 20\n")
    assert main([*argv, "--steps", "100", "--resume", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert "config.train_freq (stored 10, here 20)" in captured.err  # the note names what it ignores
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["config"]["train_freq"] == 10 and stored["yaml_overrides"] == {"learning_starts": 30, "train_freq": 10}
    assert json.loads(captured.out.strip().splitlines()[-1])["steps"] == 100


@pytest.mark.parametrize(("text", "needles"), [
    ("CartPole-v1:\n  gama: 0.9\n", ["dqn.yml [CartPole-v1]", "unknown key 'gama'", "DQNConfig"]),
    ("CartPole-v1:\n  learning_rate: fast\n", ["dqn.yml [CartPole-v1].learning_rate", "expected a number"]),
    ("CartPole-v1:\n  hidden: [64, 64\n", ["dqn.yml is not valid YAML"]),
    ("- CartPole-v1\n", ["dqn.yml must map environment ids"]),
    ("CartPole-v1: 3\n", ["dqn.yml: entry 'CartPole-v1' must map field names"]),
])
def test_bad_yaml_is_one_line_naming_the_file_and_key(tmp_path, text, needles):
    from agents.deep.dqn import DQNConfig

    (tmp_path / "dqn.yml").write_text(text)
    with pytest.raises(ValueError) as err:
        resolve("dqn", "CartPole-v1", DQNConfig, directory=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and all(n in message for n in needles), message


def test_a_yaml_file_that_would_run_code_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "dqn.yml").write_text(f'CartPole-v1: !!python/object/apply:os.system ["touch {marker}"]\n')
    from agents.deep.dqn import DQNConfig

    with pytest.raises(ValueError, match="dqn.yml is not valid YAML"):
        resolve("dqn", "CartPole-v1", DQNConfig, directory=tmp_path)
    assert not marker.exists()


def test_unknown_hyperparams_key_names_the_option():
    from agents.deep.dqn import DQNConfig

    with pytest.raises(ValueError, match=r"--hyperparams: unknown key 'gama' for DQNConfig"):
        resolve("dqn", "CartPole-v1", DQNConfig, hyperparams=["gama=0.9"])
    with pytest.raises(ValueError, match=r"--hyperparams.hidden\[0\]: expected an integer"):
        resolve("dqn", "CartPole-v1", DQNConfig, hyperparams=["hidden=[a]"])


def test_shipped_files_live_in_the_package():
    assert sorted(p.name for p in DIRECTORY.glob("*.yml")) == sorted(f"{name}.yml" for name in deep_agents())
    assert all(dataclasses.is_dataclass(e.config) for e in deep_agents().values())
    assert np.isclose(load_table(hyperparams_file("dqn"))["mp/Maze-v0"]["exploration_fraction"], 0.3)  # a YAML alias
