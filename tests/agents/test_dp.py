"""Dynamic programming checks from notes §11: Bellman backups, contraction, VI = PI."""

import gymnasium as gym
import numpy as np
import pytest

from agents.tabular.dp import (
    Solution,
    bellman_backup,
    diagnose,
    greedy_reaches_terminal,
    live_model,
    policy_evaluation,
    policy_iteration,
    value_iteration,
)
from agents.tabular.policies import policy_matrix
from envs import ENVIRONMENTS, GridWorldEnv, TabularMDP

IDS = list(ENVIRONMENTS)


def slow_backup(env, V, gamma):
    """Obviously-correct reference: loop over Gymnasium's toy-text dict; terminal states are worth 0."""
    S, A = len(env.P), len(env.P[0])
    Q = np.zeros((S, A))
    for s in range(S):
        if env.mdp.terminal[s]:
            continue
        for a in range(A):
            Q[s, a] = sum(p * (r + gamma * V[s2]) for p, s2, r, _ in env.P[s][a])
    return Q


@pytest.mark.parametrize("env_id", ["mp/GridWorld-v0", "mp/FrozenLake8x8-v0", "mp/CliffWalking-v0"])
def test_sparse_backup_matches_the_loop(env_id, rng):
    env = gym.make(env_id).unwrapped
    V = rng.normal(size=env.mdp.n_states)
    V[env.mdp.terminal] = 0.0
    P, R = live_model(env.mdp)
    fast = bellman_backup(P, R, V, 0.9).T
    np.testing.assert_allclose(fast, slow_backup(env, V, 0.9), atol=1e-12)
    # the public [S*A, S] layout gives the same numbers
    plain = bellman_backup(env.mdp.P, env.mdp.R, V, 0.9)
    live = ~env.mdp.terminal
    np.testing.assert_allclose(plain[live], fast[live], atol=1e-12)


@pytest.mark.parametrize("env_id", IDS)
def test_value_iteration_and_policy_iteration_agree(env_id):
    mdp = gym.make(env_id).unwrapped.mdp
    vi = value_iteration(mdp, tol=1e-10)
    pi = policy_iteration(mdp)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-6)
    # both greedy policies are optimal: each one's value is V*
    for solution in (vi, pi):
        np.testing.assert_allclose(policy_evaluation(mdp, solution.policy), pi.V, atol=1e-6)
    # V* is the fixed point of the Bellman optimality operator
    np.testing.assert_allclose(vi.Q.max(axis=1), vi.V, atol=1e-8)
    assert pi.iterations < vi.iterations


@pytest.mark.parametrize("env_id, gamma", [("mp/GridWorld-v0", 0.9), ("mp/FrozenLake8x8-v0", 0.95), ("mp/Maze-v0", 0.99)])
def test_contraction_bound_holds_at_every_iteration(env_id, gamma):
    """||v_t - v*||_inf <= gamma^t ||v_0 - v*||_inf (notes §11, value iteration)."""
    mdp = gym.make(env_id).unwrapped.mdp.with_gamma(gamma)
    v_star = policy_iteration(mdp).V
    iterates = []
    solution = value_iteration(mdp, tol=1e-12, callback=iterates.append)
    assert len(iterates) == solution.iterations
    gap0 = np.abs(v_star).max()  # v_0 = 0
    for t, v in enumerate(iterates, start=1):
        assert np.abs(v - v_star).max() <= gamma**t * gap0 + 1e-9
    # and the residuals shrink by at least gamma per sweep once the values move together
    assert np.all(solution.residuals[1:] <= solution.residuals[:-1] + 1e-12)


def test_exact_and_iterative_evaluation_agree(rng):
    mdp = gym.make("mp/FrozenLake8x8-v0").unwrapped.mdp
    stochastic = rng.dirichlet(np.ones(4), size=mdp.n_states)
    exact = policy_evaluation(mdp, stochastic, "exact")
    iterative = policy_evaluation(mdp, stochastic, "iterative", tol=1e-12)
    np.testing.assert_allclose(exact, iterative, atol=1e-8)
    # the Bellman consistency equation holds for the exact solution
    P, R = live_model(mdp)
    Q = bellman_backup(P, R, exact, mdp.gamma).T
    np.testing.assert_allclose((stochastic * Q).sum(axis=1), exact, atol=1e-10)
    deterministic = rng.integers(0, 4, size=mdp.n_states)
    np.testing.assert_allclose(
        policy_evaluation(mdp, deterministic), policy_evaluation(mdp, policy_matrix(deterministic, mdp.n_states, 4)), atol=1e-12
    )


def test_known_optimal_returns():
    cliff = gym.make("mp/CliffWalking-v0").unwrapped
    assert value_iteration(cliff.mdp).V[cliff.starts[0]] == pytest.approx(-13.0)  # 13 steps along the cliff
    windy = gym.make("mp/WindyGridWorld-v0").unwrapped
    assert policy_iteration(windy.mdp).V[windy.starts[0]] == pytest.approx(-15.0)  # Sutton & Barto, Example 6.5


def test_solvers_run_on_gymnasiums_own_frozenlake():
    env = gym.make("FrozenLake-v1", map_name="8x8")
    mdp = TabularMDP.from_gymnasium(env, gamma=0.99)
    vi, pi = value_iteration(mdp, tol=1e-10), policy_iteration(mdp)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-6)
    # Monte Carlo check in Gymnasium's own simulator: the mean discounted return of the greedy
    # policy from the start is V*(s0) (no time limit; gamma^3000 is negligible).
    sim = env.unwrapped
    returns = []
    for episode in range(1000):
        s, _ = sim.reset(seed=episode)
        G, discount = 0.0, 1.0
        for _ in range(3000):
            s, r, terminated, _, _ = sim.step(int(pi.policy[s]))
            G += discount * r
            discount *= mdp.gamma
            if terminated:
                break
        returns.append(G)
    standard_error = np.std(returns) / np.sqrt(len(returns))
    assert abs(np.mean(returns) - pi.V[0]) < 4 * standard_error


def test_solvers_match_pymdptoolbox():
    import mdptoolbox.mdp as mdptoolbox

    mdp = gym.make("mp/FrozenLake8x8-v0").unwrapped.mdp
    P, R = mdp.to_mdptoolbox()
    reference = mdptoolbox.ValueIteration(P, R, mdp.gamma, epsilon=1e-8, max_iter=100_000)
    reference.run()
    np.testing.assert_allclose(value_iteration(mdp, tol=1e-10).V, reference.V, atol=1e-4)
    np.testing.assert_allclose(policy_iteration(mdp).V, reference.V, atol=1e-4)


def test_improper_policy_with_gamma_one_is_a_clear_error():
    cliff = gym.make("mp/CliffWalking-v0").unwrapped.mdp  # gamma = 1
    stay_left = np.zeros(cliff.n_states, dtype=int)  # walks into the left wall forever
    with pytest.raises(ValueError, match="must reach a terminal state"):
        policy_evaluation(cliff, stay_left)


@pytest.mark.parametrize(
    "policy, message",
    [
        (np.full(30, 7), r"policy holds action 7, but there are only 4 actions"),
        (np.full((30, 4), 0.5), "rows must be probability distributions"),
        (np.zeros(29, dtype=int), r"policy has shape \(29,\), but the environment needs \(30,\)"),
    ],
)
def test_bad_policies_are_rejected(policy, message):
    mdp = gym.make("mp/GridWorld-v0").unwrapped.mdp
    with pytest.raises(ValueError, match=message):
        policy_evaluation(mdp, policy)


# ---------------------------------------------------------------------- convergence and diagnostics
def test_solution_keeps_its_fields_and_appends_converged():
    assert Solution._fields == ("V", "Q", "policy", "iterations", "residuals", "converged")
    mdp = gym.make("mp/GridWorld-v0").unwrapped.mdp
    assert value_iteration(mdp).converged and policy_iteration(mdp).converged


def test_value_iteration_that_cannot_converge_says_so():
    """gamma = 1 and no way to end: every sweep adds the -1 reward once more."""
    never_ends = TabularMDP(np.ones((1, 1, 1)), -np.ones((1, 1)), gamma=1.0)
    with pytest.warns(RuntimeWarning, match="max_iterations=500"):
        solution = value_iteration(never_ends, max_iterations=500)
    assert not solution.converged and solution.iterations == 500 and solution.V[0] == -500.0
    assert diagnose(never_ends, solution) == (
        "not converged after 500 iterations: residual 1; with gamma=1 values grow without bound where episodes "
        "need not end, try gamma < 1")


def test_policy_iteration_that_runs_out_says_so():
    mdp = gym.make("mp/FourRooms-v0").unwrapped.mdp
    with pytest.warns(RuntimeWarning, match="policy iteration stopped"):
        solution = policy_iteration(mdp, max_iterations=1)
    assert not solution.converged
    assert diagnose(mdp, solution).startswith("not converged after 1 iterations")


def corridor(length, gamma):
    """S, ``length`` free cells, G: -1 per step; the start is ``length + 1`` steps from the goal."""
    return GridWorldEnv(["S" + "." * length + "G"], step_reward=-1.0, goal_reward=-1.0, gamma=gamma).mdp


def test_far_values_that_tie_within_tol_give_a_greedy_policy_that_never_arrives():
    """With gamma=0.99 and tol=1e-2 value iteration stops after about 460 sweeps (0.99^t <= tol); states
    farther than that from the goal all hold the same value, and the lowest action (left) wins their ties."""
    mdp = corridor(600, gamma=0.99)
    solution = value_iteration(mdp, tol=1e-2)
    assert solution.converged and solution.iterations < 600
    assert solution.V[0] == solution.V[1] == solution.V[2] and solution.policy[0] == 0  # left, into the wall
    assert not greedy_reaches_terminal(mdp, solution.policy)
    assert diagnose(mdp, solution) == ("the greedy policy does not reach a terminal state from the start: far "
                                       "states' values tie (gamma=0.99); try gamma=1 or a smaller tol")
    # either remedy works
    assert diagnose(mdp, value_iteration(mdp, tol=1e-10)) is None
    assert diagnose(mdp.with_gamma(1.0), value_iteration(mdp.with_gamma(1.0), tol=1e-2)) is None


@pytest.mark.parametrize("env_id", IDS)
def test_solved_registered_gridworlds_have_nothing_to_report(env_id):
    mdp = gym.make(env_id).unwrapped.mdp
    for solution in (value_iteration(mdp), policy_iteration(mdp)):
        assert greedy_reaches_terminal(mdp, solution.policy)
        assert diagnose(mdp, solution) is None


def test_greedy_reaches_terminal_is_reachability_from_the_start():
    env = GridWorldEnv(["S.G", "#.."])
    DOWN, RIGHT, UP = 1, 2, 3
    policy = np.full(6, RIGHT)
    assert greedy_reaches_terminal(env.mdp, policy)
    policy[4] = UP  # cell (1, 1) never gets visited from S under "right": irrelevant
    assert greedy_reaches_terminal(env.mdp, policy)
    policy[1] = DOWN  # now S -> (0, 1) -> (1, 1) -> (0, 1) -> ... a loop
    assert not greedy_reaches_terminal(env.mdp, policy)
    stochastic = np.full((6, 4), 0.25)  # the uniform policy can always stumble into G
    assert greedy_reaches_terminal(env.mdp, stochastic)
    no_end = TabularMDP(np.ones((1, 1, 1)), np.zeros((1, 1)), gamma=0.9)
    assert not greedy_reaches_terminal(no_end, np.zeros(1, dtype=int))
    assert diagnose(no_end, value_iteration(no_end)) is None  # a continuing task: nothing to reach


@pytest.mark.parametrize("solver", [value_iteration, policy_iteration,
                                    lambda mdp, **kw: policy_evaluation(mdp, np.zeros(mdp.n_states, int), **kw)])
@pytest.mark.parametrize("kwargs, message", [
    (dict(tol=0.0), r"^tol must be a positive number, got 0\.0$"),
    (dict(tol=-1e-3), r"^tol must be a positive number"),
    (dict(tol=float("nan")), r"^tol must be a positive number, got nan$"),
    (dict(max_iterations=0), r"^max_iterations must be an integer >= 1, got 0$"),
    (dict(max_iterations=2.5), r"^max_iterations must be an integer >= 1, got 2\.5$"),
])
def test_stopping_rules_are_validated(solver, kwargs, message):
    mdp = gym.make("mp/GridWorld-v0").unwrapped.mdp
    with pytest.raises(ValueError, match=message):
        solver(mdp, **kwargs)
