"""The PyBullet environments: checkers, seeding, isolation of clients, pictures, physics and the scripted reacher."""

import copy
import gc
import math
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs.bullet import BULLET_ENVIRONMENTS, import_pybullet
from envs.bullet.cartpole import THETA_THRESHOLD, BulletCartPoleEnv, cartpole_accelerations
from envs.bullet.reacher import BulletReacherEnv, ScriptedReacher, forward_kinematics, inverse_kinematics

for _id, (_entry, _steps, _kwargs) in BULLET_ENVIRONMENTS.items():  # `import envs` may have done this already
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, max_episode_steps=_steps, kwargs=_kwargs)

p = import_pybullet()
CARTPOLE, REACHER = "mp/BulletCartPole-v0", "mp/BulletReacher-v0"
CASES = [
    (CARTPOLE, {"obs_mode": "state"}), (CARTPOLE, {"obs_mode": "state", "continuous": True}),
    (CARTPOLE, {"obs_mode": "pixels"}), (CARTPOLE, {"obs_mode": "pixels", "continuous": True}),
    (REACHER, {"obs_mode": "state"}), (REACHER, {"obs_mode": "pixels"}),
]
IDS = [f"{env_id.split('/')[1]}-{'-'.join(map(str, kw.values()))}" for env_id, kw in CASES]


@pytest.fixture
def make():
    """``make(env_id, **kwargs)`` that closes every environment it made at the end of the test."""
    made = []

    def _make(env_id, **kwargs):
        made.append(gym.make(env_id, **kwargs))
        return made[-1]

    yield _make
    for env in made:
        env.close()


def rollout(env, seed, actions):
    """Observations ``[T + 1, ...]`` and rewards ``[T]`` of the episode from ``reset(seed=seed)`` under ``actions``."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, *_ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
    return np.stack(observations), np.array(rewards)


def random_actions(env, n, seed):
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


@pytest.mark.parametrize("env_id, kwargs", CASES, ids=IDS)
def test_env_checkers_pass(make, env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        env = make(env_id, render_mode="rgb_array", **kwargs)
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(make(env_id, **kwargs), warn=True)
        env.reset(seed=0)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.shape == (256, 256, 3)


@pytest.mark.parametrize("env_id, kwargs", CASES, ids=IDS)
def test_same_seed_same_trajectory_other_seed_other_start(make, env_id, kwargs):
    env, fresh = make(env_id, **kwargs), make(env_id, **kwargs)
    actions = random_actions(env, 15, seed=1)
    obs_a, rew_a = rollout(env, 7, actions)
    rollout(env, 3, random_actions(env, 5, seed=2))  # another episode in between must not matter
    obs_b, rew_b = rollout(env, 7, actions)
    obs_c, rew_c = rollout(fresh, 7, actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(obs_a, obs_c)
    np.testing.assert_array_equal(rew_a, rew_b)
    np.testing.assert_array_equal(rew_a, rew_c)
    starts = np.stack([env.reset(seed=s)[0] for s in range(4)])
    assert all(not np.array_equal(starts[0], other) for other in starts[1:])


def test_two_envs_in_one_process_do_not_interfere(make):
    envs = [make(CARTPOLE, continuous=True), make(REACHER), make(REACHER, obs_mode="pixels")]
    plans = [(seed, random_actions(env, 30, seed)) for seed, env in enumerate(envs)]
    alone = [rollout(env, seed, actions) for env, (seed, actions) in zip(envs, plans)]

    firsts = [env.reset(seed=seed)[0] for env, (seed, _) in zip(envs, plans)]
    together = [([obs], []) for obs in firsts]
    for t in range(30):
        for env, (_, actions), (observations, rewards) in zip(envs, plans, together):
            obs, reward, *_ = env.step(actions[t])
            observations.append(obs)
            rewards.append(reward)
    assert len({env.unwrapped.client_id for env in envs}) == len(envs)
    for (obs_alone, rew_alone), (observations, rewards) in zip(alone, together):
        np.testing.assert_array_equal(obs_alone, np.stack(observations))
        np.testing.assert_array_equal(rew_alone, np.array(rewards))


@pytest.mark.parametrize("cls", [BulletCartPoleEnv, BulletReacherEnv])
def test_close_disconnects_the_client_and_may_be_called_twice(cls):
    env = cls()
    env.reset(seed=0)
    client = env.client_id
    assert p.isConnected(physicsClientId=client)
    env.close()
    assert not p.isConnected(physicsClientId=client)
    with pytest.raises(p.error):
        p.getNumBodies(physicsClientId=client)
    env.close()
    with pytest.raises(p.error):
        env.reset(seed=0)


def _centroid(image, colour):
    """Mean (row, col) of the pixels where ``colour`` (a function of r, g, b int arrays) holds."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    rows, cols = np.nonzero(colour(r, g, b))
    assert rows.size > 0, "colour not found in the image"
    return rows.mean(), cols.mean()


def _blue(r, g, b):
    return (b > 120) & (b > r + 60) & (b > g + 60)


def _red(r, g, b):
    return (r > 150) & (g < 80) & (b < 80)


@pytest.mark.parametrize("size", [32, 64])
def test_cartpole_pixels_follow_the_cart(size):
    env = BulletCartPoleEnv(obs_mode="pixels", image_size=size)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (size, size, 3) and env.observation_space.contains(obs)
    env.set_physics([1.5, 0.0, 0.0, 0.0])
    right = env._observe()
    env.set_physics([-1.5, 0.0, 0.0, 0.0])
    left = env._observe()
    env.set_physics([-1.5, 0.0, 0.2, 0.0])
    tilted = env._observe()
    env.close()
    assert not np.array_equal(left, tilted)  # the pole's angle shows
    assert _centroid(right, _blue)[1] > size / 2 > _centroid(left, _blue)[1]  # the cart (blue) is where x says


def test_reacher_pixels_show_target_and_arm():
    env = BulletReacherEnv(obs_mode="pixels", image_size=64)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3) and env.observation_space.contains(obs)
    env.set_physics([0.0, 0.0], [0.0, 0.0], [0.15, 0.0])
    target_right = env._observe()
    env.set_physics([0.0, 0.0], [0.0, 0.0], [0.0, 0.15])
    target_up = env._observe()
    env.set_physics([math.pi, 0.0], [0.0, 0.0], [0.0, 0.15])
    arm_left = env._observe()
    env.close()
    row, col = _centroid(target_right, _red)
    assert col > 40 and abs(row - 32) < 4  # +x is to the right
    row, col = _centroid(target_up, _red)
    assert row < 24 and abs(col - 32) < 4  # +y is up
    assert _centroid(target_up, _blue)[1] > 34 > _centroid(arm_left, _blue)[1]  # the arm points along q1


def test_cartpole_matches_the_analytic_equations_of_motion():
    env = BulletCartPoleEnv(continuous=True)
    env.reset(seed=0)
    for state, action in [([0.0, 0.0, 0.1, 0.0], 0.0), ([0.0, 0.0, 0.0, 0.0], 1.0), ([0.5, 0.3, -0.15, 0.7], -0.7)]:
        env.set_physics(state)
        after, *_ = env.step(np.array([action], np.float32))
        x_ddot, theta_ddot = cartpole_accelerations(state[1], state[2], state[3], 10.0 * action)
        np.testing.assert_allclose((after[[1, 3]] - np.array(state)[[1, 3]]) / env.dt, [x_ddot, theta_ddot],
                                   rtol=0.02, atol=0.02)
    env.close()


def test_cartpole_pole_falls_without_force_and_pushing_right_moves_right():
    env = BulletCartPoleEnv(continuous=True)
    env.reset(seed=0)
    env.set_physics([0.0, 0.0, 0.02, 0.0])
    angles = [env.step(np.zeros(1, np.float32))[0][2] for _ in range(20)]
    assert np.all(np.diff(angles) > 0)  # tips over towards the side it leans to
    # Linearised about upright, theta(t) = theta0 cosh(omega t) with omega^2 = g / (l (4/3 - m / (M + m))).
    omega = math.sqrt(9.81 / (0.5 * (4 / 3 - 0.1 / 1.1)))
    assert angles[-1] == pytest.approx(0.02 * math.cosh(omega * 20 * env.dt), rel=0.05)
    env.close()

    env = BulletCartPoleEnv()
    env.reset(seed=0)
    env.set_physics(np.zeros(4))
    velocities = [env.step(1)[0][1] for _ in range(5)]
    assert np.all(np.diff(velocities) > 0) and velocities[0] > 0
    env.set_physics(np.zeros(4))
    assert env.step(0)[0][1] < 0
    env.close()


def test_cartpole_terminates_like_gymnasium(make):
    env = make(CARTPOLE)
    env.reset(seed=0)
    assert env.spec.max_episode_steps == 500
    env.unwrapped.set_physics([2.39, 1.0, 0.0, 0.0])
    _, reward, terminated, truncated, _ = env.step(1)
    assert terminated and not truncated and reward == 1.0
    env.unwrapped.set_physics([0.0, 0.0, THETA_THRESHOLD - 0.001, 1.0])
    assert env.step(1)[2]
    env.unwrapped.set_physics(np.zeros(4))
    assert env.step(1)[1:3] == (1.0, False)


def test_kinematics_round_trip_and_match_the_simulator(rng):
    for xy in rng.uniform(-0.14, 0.14, size=(20, 2)):
        for q in inverse_kinematics(xy):
            np.testing.assert_allclose(forward_kinematics(q), xy, atol=1e-9)
    env = BulletReacherEnv()
    env.reset(seed=0)
    for q in rng.uniform(-math.pi, math.pi, size=(10, 2)):
        env.set_physics(q, np.zeros(2), np.zeros(2))
        np.testing.assert_allclose(env.fingertip(), forward_kinematics(q), atol=1e-6)
    env.close()


def test_reacher_reward_is_minus_distance_minus_control_cost(make):
    env = make(REACHER)
    env.reset(seed=4)
    action = np.array([0.5, -0.8], np.float32)
    obs, reward, terminated, truncated, info = env.step(action)
    q = np.arctan2(obs[2:4], obs[0:2])
    offset = forward_kinematics(q.astype(np.float64)) - obs[4:6]
    np.testing.assert_allclose(obs[8:10], offset, atol=1e-5)
    expected = -np.linalg.norm(offset) - 0.1 * (0.5**2 + 0.8**2)
    assert reward == pytest.approx(expected, abs=1e-5)
    assert info["reward_ctrl"] == pytest.approx(-0.1 * 0.89) and not terminated and not truncated


def _evaluate(env, policy, episodes):
    """Mean return and mean final fingertip distance over ``episodes`` seeded episodes."""
    returns, finals = [], []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
        finals.append(info["distance"])
    return float(np.mean(returns)), float(np.mean(finals))


def test_scripted_reacher_reaches_the_target_and_beats_random(make):
    env = make(REACHER)  # truncated at 50 steps by the registered max_episode_steps
    env.action_space.seed(0)
    scripted_return, scripted_distance = _evaluate(env, ScriptedReacher().act, 20)
    random_return, random_distance = _evaluate(env, lambda obs: env.action_space.sample(), 20)
    print(f"reacher over 20 episodes: scripted return {scripted_return:.2f}, final distance {scripted_distance:.4f} m; "
          f"random return {random_return:.2f}, final distance {random_distance:.4f} m")
    assert scripted_distance < 0.02
    assert scripted_return > random_return + 5.0  # measured about -3.5 against -12.5


@pytest.mark.parametrize("cls, kwargs, argument", [
    (BulletCartPoleEnv, {"obs_mode": "rgb"}, "obs_mode"),
    (BulletReacherEnv, {"obs_mode": "image"}, "obs_mode"),
    (BulletCartPoleEnv, {"obs_mode": "pixels", "image_size": 8}, "image_size"),
    (BulletReacherEnv, {"image_size": 15}, "image_size"),
    (BulletReacherEnv, {"image_size": 32.0}, "image_size"),
    (BulletReacherEnv, {"render_size": 4}, "render_size"),
    (BulletCartPoleEnv, {"render_mode": "human"}, "render_mode"),
    (BulletCartPoleEnv, {"force_mag": -1.0}, "force_mag"),
    (BulletReacherEnv, {"max_torque": 0.0}, "max_torque"),
    (BulletReacherEnv, {"substeps": 0}, "substeps"),
])
def test_bad_arguments_are_named(cls, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        cls(**kwargs)


@pytest.mark.parametrize("cls, kwargs, action, expected", [
    (BulletCartPoleEnv, {}, 2, r"integer in \[0, 2\)"),
    (BulletCartPoleEnv, {}, 0.5, r"integer in \[0, 2\)"),
    (BulletCartPoleEnv, {}, np.array([1]), r"integer in \[0, 2\)"),
    (BulletCartPoleEnv, {"continuous": True}, np.array([1.5], np.float32), r"lie in \[-1.0, 1.0\]"),
    (BulletCartPoleEnv, {"continuous": True}, 0.5, r"shape \(1,\), got shape \(\)"),
    (BulletReacherEnv, {}, np.zeros(3), r"shape \(2,\), got shape \(3,\)"),
    (BulletReacherEnv, {}, np.array([0.0, np.nan]), r"lie in \[-1.0, 1.0\]"),
    (BulletReacherEnv, {}, "left", r"shape \(2,\)"),
])
def test_bad_actions_are_named(cls, kwargs, action, expected):
    env = cls(**kwargs)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action must .*{expected}"):
        env.step(action)
    env.close()


# ---------------------------------------------------------------------- state, copies and pickling
def _play(env, actions):
    """Observations, rewards, ends and the exact joint states after each of ``actions``; resets at episode ends."""
    out = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        state = env.unwrapped.get_state()
        out.append((obs, reward, terminated, truncated, state["q"], state["qd"]))
        if terminated or truncated:
            out.append((env.reset()[0], state["q"] * 0, False, False, state["q"] * 0, state["qd"] * 0))
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)  # bit for bit, float64 joint states included


@pytest.mark.parametrize("env_id, kwargs", CASES, ids=IDS)
def test_restored_state_continues_bit_identically(make, env_id, kwargs):
    """resetJointState on a fresh client reproduces the uninterrupted simulation exactly, through resets."""
    env = make(env_id, max_episode_steps=12, **kwargs)
    env.reset(seed=3)
    actions = random_actions(env, 40, seed=4)
    _play(env, actions[:9])
    saved = env.unwrapped.get_state()
    assert {"q", "qd", "np_random"} <= set(saved) and saved["q"].dtype == np.float64
    after = _play(env, actions[9:])
    fresh = make(env_id, max_episode_steps=12, **kwargs)
    fresh.reset(seed=99)  # another start and another generator, both overwritten below
    for _ in range(9):
        fresh.step(actions[0])  # the time limit counts like the original's (9 steps into its episode)
    fresh.unwrapped.set_state(saved)
    _assert_same(_play(fresh, actions[9:]), after)


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda env: pickle.loads(pickle.dumps(env)),
                                   lambda env: copy.copy(env.unwrapped)],  # a shallow copy of a wrapper shares its env
                         ids=["deepcopy", "pickle", "copy"])
@pytest.mark.parametrize("env_id", [CARTPOLE, REACHER])
def test_copies_have_their_own_client_and_the_same_state(make, env_id, clone):
    env, reference = make(env_id), make(env_id)
    actions = random_actions(env, 30, seed=5)
    for e in (env, reference):
        e.reset(seed=6)
        _play(e, actions[:10])
    twin = clone(env)
    assert twin.unwrapped.client_id != env.unwrapped.client_id
    assert p.isConnected(physicsClientId=twin.unwrapped.client_id)
    expected = _play(reference, actions[10:])
    _assert_same(_play(twin, actions[10:]), expected)  # the copy continues from the same state...
    _play(twin, random_actions(env, 15, seed=7))
    client = env.unwrapped.client_id
    del twin
    gc.collect()  # ... and dropping it neither moved nor disconnected the original
    assert p.isConnected(physicsClientId=client)
    _assert_same(_play(env, actions[10:]), expected)


def test_a_closed_environment_cannot_be_copied():
    env = BulletReacherEnv()
    env.close()
    with pytest.raises(ValueError, match="cannot copy or pickle a closed BulletReacherEnv"):
        copy.deepcopy(env)
