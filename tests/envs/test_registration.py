"""Every registered id works with Gymnasium's and Stable-Baselines3's checkers and from a fresh interpreter."""

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import ENVIRONMENTS

CASES = [(env_id, "index") for env_id in ENVIRONMENTS] + [
    ("mp/GridWorld-v0", obs) for obs in ("onehot", "coords", "rgb")
]


@pytest.mark.parametrize("env_id, obs_type", CASES)
def test_env_checkers_pass(env_id, obs_type):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        env = gym.make(env_id, obs_type=obs_type, render_mode="rgb_array")
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(gym.make(env_id, obs_type=obs_type), warn=True)


def test_make_from_a_fresh_interpreter(tmp_path):
    code = (
        "import gymnasium as gym; env = gym.make('envs:mp/FourRooms-v0'); obs, _ = env.reset(seed=0); "
        "print(obs, env.spec.max_episode_steps)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["14", "500"]


def test_stable_baselines3_dqn_trains_on_fourrooms():
    from stable_baselines3 import DQN

    env = gym.make("mp/FourRooms-v0", obs_type="onehot")
    model = DQN("MlpPolicy", env, learning_starts=100, buffer_size=2_000, seed=0, verbose=0, device="cpu")
    model.learn(total_timesteps=600)
    action, _ = model.predict(env.reset(seed=0)[0], deterministic=True)
    assert env.action_space.contains(int(action))


def test_envs_command_line(tmp_path):
    listing = subprocess.run([sys.executable, "-m", "envs", "list", "--json"], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [r["id"] for r in rows] == [*ENVIRONMENTS, "mp/BulletCartPole-v0", "mp/BulletReacher-v0"]
    assert rows[1]["states"] == 48 and rows[-1]["states"] is None
    table = subprocess.run([sys.executable, "-m", "envs", "list"], capture_output=True, text=True, check=True)
    assert "mp/BulletReacher-v0" in table.stdout
    out = tmp_path / "maze.png"
    subprocess.run([sys.executable, "-m", "envs", "show", "mp/Maze-v0", "--option", "size=21", "--out", str(out)],
                   capture_output=True, text=True, check=True)
    import imageio.v3 as iio

    assert iio.imread(out).shape[2] == 3
    bad = subprocess.run([sys.executable, "-m", "envs", "show", "mp/Nope-v0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot make environment 'mp/Nope-v0'" in bad.stderr and "Traceback" not in bad.stderr
