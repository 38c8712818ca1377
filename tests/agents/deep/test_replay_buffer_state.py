"""The replay buffer's state dict holds only the slots written so far, and restores into the full ring."""

import gymnasium as gym
import numpy as np
import pytest

from agents.deep.buffer import ReplayBuffer

PIXELS = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)


def fill(buffer, steps, seed=0, episode=7):
    """``steps`` transitions of random pixel frames, an episode end every ``episode`` steps (alternately
    terminated and truncated) so that slots are also skipped at episode boundaries."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, PIXELS.shape, dtype=np.uint8)
    for t in range(steps):
        nxt = rng.integers(0, 256, PIXELS.shape, dtype=np.uint8)
        end = (t + 1) % episode == 0
        buffer.add(obs, int(rng.integers(4)), float(rng.normal()), nxt, end and t % 2 == 0, end and t % 2 == 1)
        obs = rng.integers(0, 256, PIXELS.shape, dtype=np.uint8) if end else nxt


def assert_same(a, b):
    for key in ("obs", "actions", "rewards", "terminated", "valid"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert (a.pos, a.continuing, a.filled, len(a)) == (b.pos, b.continuing, b.filled, len(b))


@pytest.mark.parametrize("steps", [0, 1, 6, 7, 30, 55, 56, 57, 200])  # 50 slots: before, at and after the wrap
def test_round_trip_before_and_after_the_ring_wraps(steps):
    buffer = ReplayBuffer(50, PIXELS, gym.spaces.Discrete(4))
    fill(buffer, steps)
    state = buffer.state_dict()
    assert all(isinstance(state[k], np.ndarray) for k in ("obs", "actions", "rewards", "terminated", "valid"))
    restored = ReplayBuffer(50, PIXELS, gym.spaces.Discrete(4))
    restored.load_state_dict(state)
    assert_same(restored, buffer)
    # both go on identically: the same samples now, the same contents after more steps
    if len(buffer):
        for a, b in zip(buffer.sample(16, np.random.default_rng(1)), restored.sample(16, np.random.default_rng(1))):
            np.testing.assert_array_equal(a, b)
    fill(buffer, 40, seed=2)
    fill(restored, 40, seed=2)
    assert_same(restored, buffer)


def test_filled_tells_never_written_from_wrapped_around():
    buffer = ReplayBuffer(50, PIXELS, gym.spaces.Discrete(4))
    fill(buffer, 30)  # 30 steps in episodes of 7 (each end skips a slot) -> slots 0..34 written
    assert buffer.filled == 35 and buffer.state_dict()["obs"].shape == (35, *PIXELS.shape)
    fill(buffer, 30, seed=1)
    assert buffer.filled == 50 and buffer.pos < 35  # wrapped: every slot holds data, whatever pos says
    assert buffer.state_dict()["obs"].shape == (50, *PIXELS.shape)


def test_a_barely_filled_buffer_has_a_small_state():
    buffer = ReplayBuffer(20_000, PIXELS, gym.spaces.Discrete(4))  # 423 MB of frames once full
    fill(buffer, 300)
    state = buffer.state_dict()
    size = sum(v.nbytes for v in state.values() if isinstance(v, np.ndarray))
    assert size < 1.01 * buffer.filled * (PIXELS.shape[0] * PIXELS.shape[1] * 3 + 8 + 4 + 4 + 1)
    assert size < buffer.obs.nbytes / 50


def test_an_old_full_state_still_loads_and_a_wrong_one_is_named():
    buffer = ReplayBuffer(12, PIXELS, gym.spaces.Discrete(4))
    fill(buffer, 5)
    full = {"obs": buffer.obs, "actions": buffer.actions, "rewards": buffer.rewards, "terminated": buffer.terminated,
            "valid": buffer.valid, "pos": buffer.pos, "continuing": buffer.continuing}  # the format before `filled`
    restored = ReplayBuffer(12, PIXELS, gym.spaces.Discrete(4))
    restored.load_state_dict(full)
    np.testing.assert_array_equal(restored.obs, buffer.obs)
    with pytest.raises(ValueError, match="replay buffer state has capacity 12, this buffer 13"):
        ReplayBuffer(13, PIXELS, gym.spaces.Discrete(4)).load_state_dict(buffer.state_dict())
    bad = buffer.state_dict() | {"rewards": np.zeros(3, np.float32)}
    untouched = ReplayBuffer(12, PIXELS, gym.spaces.Discrete(4))
    with pytest.raises(ValueError, match=r"field 'rewards' has shape \(3,\), expected \(6,\)"):  # slots 0..5
        untouched.load_state_dict(bad)
    assert untouched.filled == 0 and not untouched.obs.any()  # a rejected state changes nothing
