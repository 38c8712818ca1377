"""Every registered id works with Gymnasium's and Stable-Baselines3's checkers and from a fresh interpreter."""

import json
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import ENVIRONMENTS, make_env, parse_env_kwargs

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
    assert "pybullet build time" not in table.stdout + table.stderr + listing.stdout + listing.stderr
    out = tmp_path / "maze.png"
    subprocess.run([sys.executable, "-m", "envs", "show", "mp/Maze-v0", "--option", "size=21", "--out", str(out)],
                   capture_output=True, text=True, check=True)
    import imageio.v3 as iio

    assert iio.imread(out).shape[2] == 3
    bad = subprocess.run([sys.executable, "-m", "envs", "show", "mp/Nope-v0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot make environment 'mp/Nope-v0'" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------- bad options are one line
@pytest.mark.parametrize(
    "env_id, options, message",
    [
        ("mp/Maze-v0", ["size=abc"], r"^size must be an integer >= 5, got 'abc'$"),
        ("mp/Maze-v0", ["slip=hello"], r"^slip must be a number in \[0, 1\], got 'hello'$"),
        ("mp/Maze-v0", ["loops=[1]"], r"^loops must be a number in \[0, 1\], got \[1\]$"),
        ("mp/GridWorld-v0", ["map=maps/x.map"], r"^map file 'maps/x.map' must be a \.txt file"),
        ("mp/GridWorld-v0", ["cell_size=abc"], r"^cell_size must be an integer >= 1, got 'abc'$"),
        ("mp/BulletCartPole-v0", ["continuous=hello"], r"^continuous must be True or False, got 'hello'$"),
        ("mp/BulletCartPole-v0", ["force_mag=abc"], r"^force_mag must be a positive number \(newtons\), got 'abc'$"),
        ("mp/BulletCartPole-v0", ["image_size=abc"], r"^image_size must be an integer >= 16, got 'abc'$"),
        ("mp/BulletReacher-v0", ["max_torque=-1"], r"^max_torque must be a positive number \(N m\), got -1$"),
        ("mp/BulletReacher-v0", ["substeps=0"], r"^substeps must be an integer >= 1, got 0$"),
        ("mp/BulletReacher-v0", ["obs_mode=rgb"], r"^obs_mode must be one of \('state', 'pixels'\), got 'rgb'$"),
    ],
)
def test_bad_option_values_are_one_line_errors_naming_the_argument(env_id, options, message):
    with pytest.raises(ValueError, match=message) as info:
        make_env(env_id, **parse_env_kwargs(options))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "env_id, accepted",
    [
        ("mp/GridWorld-v0", "map, slip, step_reward, goal_reward, hole_reward, cliff_reward, gamma, obs_type, render_mode, cell_size"),
        ("mp/Maze-v0", "size, seed, loops, map, slip,"),  # MazeEnv's own keywords, then those it passes on
        ("mp/BulletReacher-v0", "obs_mode, image_size, render_mode, render_size, max_torque, substeps"),
        ("CartPole-v1", "sutton_barto_reward, render_mode"),
    ],
)
def test_an_unknown_keyword_lists_the_accepted_ones(env_id, accepted):
    with pytest.raises(ValueError, match=r"^environment '.*' got an unexpected keyword argument 'sise'; it accepts: ") as info:
        make_env(env_id, sise=30)
    assert accepted in str(info.value) and "\n" not in str(info.value)


def test_a_type_error_inside_a_constructor_is_not_disguised():
    def broken(**kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")  # a bug, not a bad option

    gym.register("test/Broken-v0", entry_point=broken)
    try:
        with pytest.raises(TypeError, match="unsupported operand"):
            make_env("test/Broken-v0")
    finally:
        del gym.registry["test/Broken-v0"]


# ---------------------------------------------------------------------- the PyBullet banner
def test_pybullet_prints_no_banner_but_real_output_still_shows():
    code = ("import gymnasium as gym, envs, sys; env = gym.make('mp/BulletCartPole-v0'); env.reset(seed=0); "
            "print('after'); print('to stderr', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pybullet build time" not in result.stdout + result.stderr
    assert result.stdout == "after\n" and result.stderr == "to stderr\n"  # the descriptors are back in place


def test_quiet_import_drops_only_the_banner_and_keeps_errors(tmp_path):
    """A stand-in module that prints, like PyBullet's C code, straight to the file descriptors."""
    (tmp_path / "noisy.py").write_text(
        "import os\nos.write(1, b'noisy build time: today\\nkept on stdout\\n')\n"
        "os.write(2, b'noisy build time: today\\na real warning\\n')\n")
    (tmp_path / "broken.py").write_text("import os\nos.write(2, b'noisy build time: x\\nwhy it broke\\n')\nraise ImportError('no')\n")
    code = ("from envs.bullet import import_quietly\nimport_quietly('noisy', 'noisy build time:')\nprint('next')\n"
            "try:\n    import_quietly('broken', 'noisy build time:')\nexcept ImportError as err:\n    print('raised', err)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.getcwd()}"})
    assert result.stdout == "kept on stdout\nnext\nraised no\n"
    assert result.stderr == "a real warning\nwhy it broke\n"
