import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp

from envs import TabularMDP


def chain(n=4, gamma=0.9):
    """A deterministic chain: action 0 stays, action 1 moves right; the last state is terminal."""
    P = np.zeros((n, 2, n))
    for s in range(n):
        P[s, 0, s] = 1.0
        P[s, 1, min(s + 1, n - 1)] = 1.0
    R = np.tile([0.0, -1.0], (n, 1))
    terminal = np.zeros(n, bool)
    terminal[-1] = True
    return P, R, gamma, terminal


def test_dense_and_sparse_inputs_give_the_same_model():
    P, R, gamma, terminal = chain()
    dense = TabularMDP(P, R, gamma, terminal)
    sparse = TabularMDP(sp.csr_array(P.reshape(-1, 4)), R, gamma, terminal)
    np.testing.assert_array_equal(dense.P.toarray(), sparse.P.toarray())
    np.testing.assert_array_equal(dense.dense_P(), P)
    assert dense.n_states == 4 and dense.n_actions == 2
    # the default start distribution is uniform over non-terminal states
    np.testing.assert_allclose(dense.initial, [1 / 3, 1 / 3, 1 / 3, 0])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda P, R, g, t: (P * 0.5, R, g, t), "rows of P must sum to 1"),
        (lambda P, R, g, t: (P[:, :, :3], R, g, t), r"dense P must have shape \[S, A, S\]"),
        (lambda P, R, g, t: (P, R[:, :1], g, t), r"dense P must have shape"),
        (lambda P, R, g, t: (P, R, 1.5, t), r"gamma must lie in \[0, 1\]"),
        (lambda P, R, g, t: (P, R, -0.1, t), r"gamma must lie in \[0, 1\]"),
        (lambda P, R, g, t: (P, R, g, t[:2]), "terminal must have shape"),
        (lambda P, R, g, t: (np.where(P > 0, 2.0, -1.0 / 3), R, g, t), "P must be non-negative"),
        (lambda P, R, g, t: (P, R.ravel(), g, t), r"R must have shape \[S, A\]"),
    ],
)
def test_bad_models_are_rejected_with_a_clear_message(change, message):
    with pytest.raises(ValueError, match=message):
        TabularMDP(*change(*chain()))


def test_row_error_names_the_state_and_action():
    P, R, gamma, terminal = chain()
    P[2, 1] *= 0.8
    with pytest.raises(ValueError, match=r"P\(\. \| s=2, a=1\) sums to 0\.8"):
        TabularMDP(P, R, gamma, terminal)


def test_initial_distribution_is_validated():
    P, R, gamma, terminal = chain()
    with pytest.raises(ValueError, match="initial must be a probability vector"):
        TabularMDP(P, R, gamma, terminal, initial=np.array([0.5, 0.0, 0.0, 0.0]))


def _nan_sparse(P):
    P = sp.csr_array(P.reshape(-1, P.shape[0]))
    P.data[0] = np.nan
    return P


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda P, R, g, t: dict(initial=[np.nan] * 4), r"^initial must be finite; it contains NaN or infinity$"),
        (lambda P, R, g, t: dict(initial=[np.inf, 0, 0, 0]), r"^initial must be finite"),
        (lambda P, R, g, t: dict(initial=[0.5, np.nan, 0.5, 0]), r"^initial must be finite"),
        (lambda P, R, g, t: dict(initial=["a", "b", "c", "d"]), r"^initial must be an array of numbers"),
        (lambda P, R, g, t: dict(P=np.where(P > 0, np.nan, 0.0)), r"^P must be finite; it contains NaN or infinity$"),
        (lambda P, R, g, t: dict(P=_nan_sparse(P)), r"^P must be finite"),
        (lambda P, R, g, t: dict(R=np.full_like(R, np.inf)), r"^R must be finite; it contains NaN or infinity$"),
        (lambda P, R, g, t: dict(R=[["x", "y"]] * 4), r"^R must be an array of numbers"),
        (lambda P, R, g, t: dict(gamma=float("nan")), r"^gamma must lie in \[0, 1\], got nan$"),
        (lambda P, R, g, t: dict(gamma=float("inf")), r"^gamma must lie in \[0, 1\], got inf$"),
        (lambda P, R, g, t: dict(gamma="0.9"), r"^gamma must be a number in \[0, 1\], got '0\.9'$"),
        (lambda P, R, g, t: dict(gamma=True), r"^gamma must be a number in \[0, 1\], got True$"),
    ],
)
def test_non_finite_or_non_numeric_inputs_are_named(change, message):
    P, R, gamma, terminal = chain()
    args = dict(P=P, R=R, gamma=gamma, terminal=terminal) | change(P, R, gamma, terminal)
    with pytest.raises(ValueError, match=message) as info:
        TabularMDP(**args)
    assert "\n" not in str(info.value)


def test_from_transitions_adds_duplicates_and_weights_rewards():
    # two outcomes of (0, 0) land in the same state with different rewards
    mdp = TabularMDP.from_transitions(
        2, 1, state=[0, 0, 1], action=[0, 0, 0], next_state=[1, 1, 1],
        prob=[0.25, 0.75, 1.0], reward=[4.0, 0.0, 0.0], gamma=0.5,
    )
    assert mdp.P[[0], [1]] == pytest.approx(1.0)
    assert mdp.R[0, 0] == pytest.approx(0.25 * 4.0)


@pytest.mark.parametrize("env_id, kwargs", [("FrozenLake-v1", {"map_name": "8x8"}), ("CliffWalking-v1", {}), ("Taxi-v4", {})])
def test_from_gymnasium_reads_toy_text_models(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    mdp = TabularMDP.from_gymnasium(env, gamma=0.95)
    base = env.unwrapped
    assert mdp.n_states == base.observation_space.n and mdp.n_actions == base.action_space.n
    # every entry of the toy-text dict is in the sparse model
    for s in range(0, mdp.n_states, 7):
        for a in range(mdp.n_actions):
            expected = np.zeros(mdp.n_states)
            reward = 0.0
            for p, s2, r, _ in base.P[s][a]:
                expected[s2] += p
                reward += p * r
            np.testing.assert_allclose(mdp.P[[s * mdp.n_actions + a]].toarray().ravel(), expected)
            assert mdp.R[s, a] == pytest.approx(reward)
    np.testing.assert_allclose(mdp.initial, base.initial_state_distrib)


def test_from_gymnasium_rejects_an_env_without_a_model():
    with pytest.raises(ValueError, match="no toy-text transition dict"):
        TabularMDP.from_gymnasium(gym.make("CartPole-v1"))


def test_state_dependent_termination_is_required():
    P = {0: {0: [(1.0, 1, 0.0, False)]}, 1: {0: [(1.0, 2, 0.0, False)]}, 2: {0: [(1.0, 1, 1.0, True)]}}
    with pytest.raises(ValueError, match="entered from state 0 without termination"):
        TabularMDP.from_toy_text(P, gamma=0.9)


def test_to_mdptoolbox_makes_terminal_states_absorbing():
    P, R, gamma, terminal = chain()
    R[-1] = 5.0  # ignored: terminal states are worth nothing
    Ps, Rt = TabularMDP(P, R, gamma, terminal).to_mdptoolbox()
    assert len(Ps) == 2 and all(m.shape == (4, 4) for m in Ps)
    for a in range(2):
        row = Ps[a].toarray()
        np.testing.assert_allclose(row.sum(axis=1), 1.0)
        assert row[3, 3] == 1.0
    assert np.all(Rt[3] == 0.0) and np.all(Rt[:3] == R[:3])


def test_with_gamma_shares_arrays():
    mdp = TabularMDP(*chain())
    other = mdp.with_gamma(0.5)
    assert other.gamma == 0.5 and mdp.gamma == 0.9 and other.P is mdp.P
    with pytest.raises(ValueError, match="gamma"):
        mdp.with_gamma(2.0)


def test_atomic_path_replaces_whole_files_only(tmp_path):
    import os

    from envs.io import atomic_path, atomic_write_text

    target = tmp_path / "out" / "result.txt"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["result.txt"]  # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
