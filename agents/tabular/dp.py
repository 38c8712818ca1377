"""Dynamic programming for known MDPs: value iteration and policy iteration (notes §11).

Every solver works on the sparse ``[S*A, S]`` transition matrix of :class:`envs.TabularMDP`, so
one Bellman backup over all states and actions is one sparse matrix-vector product. Terminal
states have value 0 by definition; their rows of ``P`` and ``R`` are ignored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import breadth_first_order

from agents.tabular.policies import policy_matrix
from envs.mdp import TabularMDP

Evaluation = Literal["exact", "iterative"]


class Solution(NamedTuple):
    """What a solver returns."""

    V: np.ndarray  # [S] state values
    Q: np.ndarray  # [S, A] action values, Q = r + gamma P V
    policy: np.ndarray  # [S] int, greedy w.r.t. Q (lowest action on ties)
    iterations: int  # number of sweeps (value iteration) or evaluate-improve rounds (policy iteration)
    residuals: np.ndarray  # [iterations] ||v_t - v_{t-1}||_inf after each iteration
    converged: bool  # the stopping test passed; False when max_iterations ran out first


# ---------------------------------------------------------------------- pure math
def bellman_backup(P: sp.csr_array, R: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
    """``Q(s, a) = r(s, a) + gamma * sum_s' P(s' | s, a) V(s')`` for all ``s, a`` at once.

    Args:
        P: sparse ``[S*A, S]``, row ``s * A + a`` is ``P(. | s, a)``.
        R: ``[S, A]`` expected rewards.
        V: ``[S]`` state values.
    Returns:
        ``[S, A]`` action values. (The solvers call it on the action-major layout of
        :func:`live_model`, rows ``a * S + s`` and ``R`` ``[A, S]``, and get ``Q`` as ``[A, S]``.)
    """
    return R + gamma * (P @ V).reshape(R.shape)


def greedy_policy(Q: np.ndarray) -> np.ndarray:
    """``pi(s) in argmax_a Q(s, a)`` for ``Q`` ``[S, A]``, the lowest action on ties; ``[S]`` int."""
    return np.argmax(Q, axis=1)


def live_model(mdp: TabularMDP) -> tuple[sp.csr_array, np.ndarray]:
    """``(P, R)`` in action-major layout, ``P`` ``[A*S, S]`` with row ``a * S + s`` and ``R``
    ``[A, S]``, and the rows of terminal states set to zero so that their value stays 0.

    The solvers use this layout because the maximum over actions is then an element-wise maximum
    of ``A`` contiguous vectors, about 30x faster than reducing the short last axis of ``[S, A]``.
    """
    S, A = mdp.n_states, mdp.n_actions
    order = np.arange(S * A).reshape(S, A).T.ravel()  # action-major row a * S + s <- row s * A + a
    keep = (~mdp.terminal).astype(np.float64)
    P = sp.csr_array(sp.diags_array(np.tile(keep, A)) @ mdp.P[order])
    return P, np.ascontiguousarray((mdp.R * keep[:, None]).T)


# ---------------------------------------------------------------------- solvers
def value_iteration(
    mdp: TabularMDP,
    tol: float = 1e-8,
    max_iterations: int = 100_000,
    V0: np.ndarray | None = None,
    callback: Callable[[np.ndarray], None] | None = None,
) -> Solution:
    """Value iteration (notes Algorithm 4): ``v_{t+1} = T v_t`` from ``v_0 = 0`` until
    ``||v_{t+1} - v_t||_inf <= tol``.

    ``T`` is a gamma-contraction, so ``||v_t - v*|| <= gamma^t ||v_0 - v*||`` and at the stop
    ``||v_{t+1} - v*|| <= gamma / (1 - gamma) * tol``. ``callback(v_t)`` sees every iterate.
    Running out of ``max_iterations`` warns and returns ``converged=False``; a residual below
    ``tol`` does not promise a useful greedy policy either (see :func:`diagnose`).
    """
    _check_stopping(tol, max_iterations)
    P, R = live_model(mdp)
    gamma = mdp.gamma
    V = np.zeros(mdp.n_states) if V0 is None else np.array(V0, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V0 must have shape [S] = ({mdp.n_states},), got {V.shape}")
    residuals = np.empty(max_iterations)
    iterations = 0
    while iterations < max_iterations:
        V_next = bellman_backup(P, R, V, gamma).max(axis=0)  # the optimality operator T
        residuals[iterations] = np.max(np.abs(V_next - V), initial=0.0)
        V = V_next
        iterations += 1
        if callback is not None:
            callback(V.copy())
        if residuals[iterations - 1] <= tol:
            break
    else:
        warnings.warn(
            f"value iteration stopped after max_iterations={max_iterations} with residual "
            f"{residuals[-1]:.3g} > tol={tol:g}", RuntimeWarning, stacklevel=2,
        )
    Q = bellman_backup(P, R, V, gamma).T
    converged = bool(iterations and residuals[iterations - 1] <= tol)
    return Solution(V, Q, greedy_policy(Q), iterations, residuals[:iterations].copy(), converged)


def policy_evaluation(
    mdp: TabularMDP,
    policy: np.ndarray,
    method: Evaluation = "exact",
    tol: float = 1e-10,
    max_iterations: int = 1_000_000,
) -> np.ndarray:
    """``V^pi`` for a deterministic ``[S]`` or stochastic ``[S, A]`` policy (Bellman consistency).

    ``"exact"`` solves the sparse linear system ``(I - gamma P_pi) v = r_pi``; ``"iterative"``
    applies ``v <- r_pi + gamma P_pi v`` until the change is at most ``tol``.
    """
    _check_stopping(tol, max_iterations)
    P, R = live_model(mdp)
    S, A = mdp.n_states, mdp.n_actions
    pi = policy_matrix(policy, S, A)
    select = sp.csr_array((pi.T.ravel(), (np.tile(np.arange(S), A), np.arange(S * A))), shape=(S, S * A))
    P_pi = sp.csr_array(select @ P)  # [S, S], P_pi(s' | s) = sum_a pi(a | s) P(s' | s, a)
    r_pi = (pi * R.T).sum(axis=1)
    if method == "exact":
        system = sp.csc_array(sp.eye_array(S, format="csc") - mdp.gamma * P_pi)
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                V = spla.spsolve(system, r_pi)
            except (spla.MatrixRankWarning, RuntimeError) as err:
                raise ValueError(
                    "policy evaluation has no unique solution: with gamma=1 the policy must reach a "
                    "terminal state from every state (use gamma < 1 or a policy that terminates)"
                ) from err
        if not np.all(np.isfinite(V)):
            raise ValueError("policy evaluation diverged: with gamma=1 the policy must reach a terminal state from every state")
        return np.asarray(V)
    if method != "iterative":
        raise ValueError(f"method must be 'exact' or 'iterative', got {method!r}")
    V = np.zeros(S)
    for _ in range(max_iterations):
        V_next = r_pi + mdp.gamma * (P_pi @ V)
        if np.max(np.abs(V_next - V), initial=0.0) <= tol:
            return V_next
        V = V_next
    raise ValueError(f"iterative policy evaluation did not converge in {max_iterations} sweeps (is gamma=1 with a policy that never terminates?)")


def policy_iteration(
    mdp: TabularMDP,
    evaluation: Evaluation = "exact",
    tol: float = 1e-8,
    max_iterations: int = 1_000,
) -> Solution:
    """Policy iteration (notes Algorithm 5): evaluate ``pi_t``, act greedily, repeat until stable.

    ``pi_0`` is the uniformly random policy (the notes' "random policy", here without a seed; it
    also terminates wherever termination is possible, so ``gamma = 1`` episodic tasks work).
    An action changes only when it is strictly better, so ties cannot make the loop cycle; the
    loop also stops once ``||v^{pi_t} - v^{pi_{t-1}}||_inf <= tol``.
    """
    _check_stopping(tol, max_iterations)
    P, R = live_model(mdp)
    S, A = mdp.n_states, mdp.n_actions
    policy: np.ndarray = np.full((S, A), 1.0 / A)
    V_prev = np.zeros(S)
    residuals = []
    for iteration in range(1, max_iterations + 1):
        V = policy_evaluation(mdp, policy, evaluation, tol=min(tol, 1e-10))
        residuals.append(np.max(np.abs(V - V_prev), initial=0.0))
        Q = bellman_backup(P, R, V, mdp.gamma).T
        greedy = greedy_policy(Q)
        if policy.ndim == 2:
            stable = False
        else:
            rows = np.arange(S)
            better = Q[rows, greedy] > Q[rows, policy] + 1e-12 * (1.0 + np.abs(Q[rows, policy]))
            greedy = np.where(better, greedy, policy)
            stable = not better.any()
        if stable or (iteration > 1 and residuals[-1] <= tol):
            return Solution(V, Q, policy if policy.ndim == 1 else greedy, iteration, np.array(residuals), True)
        policy, V_prev = greedy, V
    warnings.warn(f"policy iteration stopped after max_iterations={max_iterations}", RuntimeWarning, stacklevel=2)
    V = policy_evaluation(mdp, policy, evaluation)
    Q = bellman_backup(P, R, V, mdp.gamma).T
    return Solution(V, Q, greedy_policy(Q), max_iterations, np.array(residuals), False)


# ---------------------------------------------------------------------- diagnostics
def greedy_reaches_terminal(mdp: TabularMDP, policy: np.ndarray) -> bool:
    """Whether, under ``policy`` (``[S]`` actions or ``[S, A]`` probabilities), every state reachable
    from the support of ``mdp.initial`` can still reach a terminal state.

    Graph reachability on the sparse model: an edge ``s -> s'`` wherever ``s`` is not terminal and
    ``sum_a pi(a | s) P(s' | s, a) > 0``. In a finite chain that is the same as ending the episode
    with probability 1. False when the MDP has no terminal state at all.
    """
    S, A = mdp.n_states, mdp.n_actions
    pi = policy_matrix(policy, S, A)
    rows = np.repeat(np.arange(S * A), np.diff(mdp.P.indptr))  # row s * A + a of each stored entry
    s, a = np.divmod(rows, A)
    live = (pi[s, a] * mdp.P.data > 0) & ~mdp.terminal[s]
    src, dst = s[live], mdp.P.indices[live]
    visited = _reachable_from(S, src, dst, np.flatnonzero(mdp.initial > 0))
    ending = _reachable_from(S, dst, src, np.flatnonzero(mdp.terminal))  # backwards from the terminal states
    return bool(np.all(ending[visited]))


def diagnose(mdp: TabularMDP, solution: Solution) -> str | None:
    """One line on what makes ``solution`` untrustworthy, or ``None`` when nothing does.

    Two failures: the solver ran out of iterations (``converged=False``); or it stopped, but the
    greedy policy never reaches a terminal state from the start, which happens when the values of
    far-away states tie within ``tol`` (``gamma**distance`` falls below it) and the lowest action
    wins every tie. MDPs without terminal states (continuing tasks) are only checked for the first.
    """
    if not solution.converged:
        residual = solution.residuals[-1] if len(solution.residuals) else float("nan")
        hint = "; with gamma=1 values grow without bound where episodes need not end, try gamma < 1" if mdp.gamma == 1 else ""
        return f"not converged after {solution.iterations} iterations: residual {residual:.3g}{hint}"
    if not mdp.terminal.any() or greedy_reaches_terminal(mdp, solution.policy):
        return None
    hint = "a smaller tol" if mdp.gamma == 1 else "gamma=1 or a smaller tol"
    return (f"the greedy policy does not reach a terminal state from the start: far states' values tie "
            f"(gamma={mdp.gamma:g}); try {hint}")


def _reachable_from(n: int, src: np.ndarray, dst: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Boolean ``[n]``: nodes reachable along the edges ``src -> dst`` from any of ``sources``
    (breadth-first search from an extra node ``n`` joined to every source)."""
    graph = sp.csr_array(
        (np.ones(src.size + sources.size), (np.concatenate([src, np.full(sources.size, n)]), np.concatenate([dst, sources]))),
        shape=(n + 1, n + 1),
    )
    seen = np.zeros(n + 1, dtype=bool)
    seen[breadth_first_order(graph, n, directed=True, return_predecessors=False)] = True
    return seen[:n]


def _check_stopping(tol: float, max_iterations: int) -> None:
    if not (isinstance(tol, (int, float, np.integer, np.floating)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, (int, np.integer)) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
