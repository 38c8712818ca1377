"""Environment state as plain data: a snapshot loaded into a fresh environment continues exactly like the original."""

import time

import gymnasium as gym
import numpy as np
import pytest

from envs.registration import all_environments
from envs.state import MAX_ARRAY_SIZE, env_state, load_env_state

IDS = [*all_environments(), "CartPole-v1", "FrozenLake-v1"]
PLAIN = (dict, list, str, int, float, bool, type(None), np.ndarray, np.generic)


def make(env_id, max_episode_steps=15):
    """As a training run builds it: gym.make (TimeLimit, OrderEnforcing, PassiveEnvChecker) + statistics + 2 frames.
    A short time limit makes episodes end (and reset) inside the replayed stretch."""
    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    return gym.wrappers.FrameStackObservation(env, 2)


def play(env, actions):
    """Everything an agent sees for ``actions``, resetting (unseeded) at each episode end."""
    seen = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        stats = {k: v for k, v in info.get("episode", {}).items() if k != "t"}  # "t" is wall-clock time
        seen.append((obs, reward, terminated, truncated, stats))
        if terminated or truncated:
            obs, info = env.reset()
            seen.append((obs, info.get("prob")))
    return seen


def assert_plain(value, where="state"):
    assert isinstance(value, PLAIN), f"{where} is a {type(value).__name__}"
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{where} has key {k!r}"
            assert_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    elif isinstance(value, np.ndarray):
        assert value.dtype.kind in "biuf", f"{where} is an array of {value.dtype}"


@pytest.mark.parametrize("env_id", IDS)
def test_a_loaded_snapshot_replays_the_same_future(env_id):
    env = make(env_id)
    env.reset(seed=1)
    env.action_space.seed(2)
    actions = [env.action_space.sample() for _ in range(50)]
    play(env, actions[:8])
    snapshot = env_state(env)
    assert_plain(snapshot)
    future = play(env, actions[8:])
    assert sum(len(step) == 2 for step in future) >= 2  # the replay crosses episode ends and resets

    fresh = make(env_id)
    fresh.reset(seed=12345)
    load_env_state(fresh, snapshot)
    replay = play(fresh, actions[8:])
    assert len(replay) == len(future)
    for got, expected in zip(replay, future):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_equal(a, b)
    stats = fresh.env  # RecordEpisodeStatistics
    assert list(stats.return_queue) == list(env.env.return_queue) and stats.episode_count == env.env.episode_count


def test_a_snapshot_is_a_copy_not_a_view():
    env = make("CartPole-v1")
    env.reset(seed=0)
    snapshot = env_state(env)
    frames = [np.copy(f) for f in snapshot["wrappers"][0]["state"]["obs_queue"]]
    for _ in range(3):
        env.step(1)
    np.testing.assert_array_equal(snapshot["wrappers"][0]["state"]["obs_queue"], frames)


def test_the_episode_clock_goes_on_from_the_saved_running_time():
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("mp/GridWorld-v0"))
    env.reset(seed=0)
    env.episode_start_time -= 30.0  # the episode has run for 30 s
    snapshot = env_state(env)
    fresh = gym.wrappers.RecordEpisodeStatistics(gym.make("mp/GridWorld-v0"))
    fresh.reset(seed=0)
    load_env_state(fresh, snapshot)
    assert 30.0 <= time.perf_counter() - fresh.episode_start_time < 40.0


def test_gridworld_trail_and_last_action_are_restored_for_rendering():
    env = gym.make("mp/FourRooms-v0", render_mode="rgb_array")
    env.unwrapped.trail = True
    env.reset(seed=0)
    for a in (2, 2, 1):
        env.step(a)
    snapshot = env_state(env)
    fresh = gym.make("mp/FourRooms-v0", render_mode="rgb_array")
    fresh.reset(seed=0)
    load_env_state(fresh, snapshot)
    np.testing.assert_array_equal(fresh.render(), env.render())
    assert fresh.unwrapped.lastaction == 1 and fresh.unwrapped.trail


def test_other_wrapper_chains_or_classes_are_refused():
    snapshot = env_state(make("mp/GridWorld-v0"))
    with pytest.raises(ValueError, match="state is of FrameStackObservation > RecordEpisodeStatistics > TimeLimit"):
        load_env_state(gym.make("mp/GridWorld-v0"), snapshot)
    with pytest.raises(ValueError, match="GridWorldEnv, but the environment is .*MazeEnv"):
        load_env_state(make("mp/Maze-v0"), snapshot)
    with pytest.raises(ValueError, match=r"taken under TimeLimit\(max_episode_steps=15\), this environment has max_episode_steps=40"):
        load_env_state(make("mp/GridWorld-v0", max_episode_steps=40), snapshot)


def test_an_unknown_wrapper_is_refused_by_name():
    class Counting(gym.Wrapper):
        def step(self, action):
            self.count = getattr(self, "count", 0) + 1
            return super().step(action)

    with pytest.raises(ValueError, match=r"cannot capture the state of wrapper Counting: add .*envs\.state\.WRAPPER_STATE"):
        env_state(Counting(gym.make("mp/GridWorld-v0")))


class Engine:
    """Stands in for a physics engine handle whose state is not plain data."""


class Foreign(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, payload):
        self.payload = payload
        self.table = {0: [(1.0, 1, 0.0, False)]}  # dicts are taken as fixed at construction
        self.position = np.int64(0)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        self.position += 1
        return 0, 0.0, False, False, {}


@pytest.mark.parametrize(
    "payload, message",
    [(Engine(), r"attribute 'payload' holds a Engine, which is not plain data; give the environment get_state\(\)"),
     (np.zeros(MAX_ARRAY_SIZE + 1), rf"attribute 'payload' holds a ndarray with {MAX_ARRAY_SIZE + 1} elements"),
     (np.array([Engine()], dtype=object), "attribute 'payload' holds a ndarray"),
     ([1, Engine()], "attribute 'payload' holds a list")],
)
def test_the_generic_rule_refuses_what_it_cannot_read(payload, message):
    env = Foreign(payload)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=f"cannot capture the state of Foreign: {message}"):
        env_state(env)


def test_the_generic_rule_keeps_plain_attributes_and_skips_tables():
    env = Foreign(payload=(1, 2.5, None))
    env.reset(seed=0)
    env.step(0)
    state = env_state(env)["env"]["state"]
    assert state["attributes"] == {"payload": {"__tuple__": [1, 2.5, None]}, "position": 1}
    fresh = Foreign(payload=None)
    load_env_state(fresh, env_state(env))
    assert fresh.payload == (1, 2.5, None) and type(fresh.position) is np.int64
    assert fresh.np_random.integers(1 << 30) == env.np_random.integers(1 << 30)


@pytest.mark.parametrize("env_id", ["mp/FrozenLake8x8-v0", "mp/BulletReacher-v0", "CartPole-v1", "FrozenLake-v1"])
def test_the_state_survives_a_safe_checkpoint_file(tmp_path, env_id):
    """Through torch.save and torch.load(weights_only=True) (numpy scalars come back as Python numbers)."""
    from envs.io.checkpoint import load_checkpoint, save_checkpoint

    env = make(env_id)
    env.reset(seed=1)
    env.action_space.seed(2)
    actions = [env.action_space.sample() for _ in range(40)]
    play(env, actions[:8])
    save_checkpoint(tmp_path / "env.pt", {"env": env_state(env)})
    future = play(env, actions[8:])
    fresh = make(env_id)
    fresh.reset(seed=7)
    load_env_state(fresh, load_checkpoint(tmp_path / "env.pt")["env"])
    for got, expected in zip(play(fresh, actions[8:]), future, strict=True):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_equal(a, b)
