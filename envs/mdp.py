"""Finite Markov decision processes (notes §11, Definition 11.1).

A :class:`TabularMDP` is the tuple ``<S, A, P, r, gamma>`` of the notes, stored so that the
dynamic-programming solvers in :mod:`agents.tabular.dp` can run one sparse matrix-vector product
per Bellman backup, even for a 10,000-state maze:

* ``P`` is a sparse ``[S*A, S]`` matrix; row ``s * A + a`` holds ``P(. | s, a)``.
* ``R`` is the expected reward ``r(s, a) = sum_s' P(s' | s, a) r(s, a, s')``, shape ``[S, A]``.
* ``terminal`` marks absorbing states whose value is zero by definition: the solvers ignore their
  rows of ``P`` and ``R``.
* ``initial`` is the start-state distribution.

The model converts both ways to the formats people already have: Gymnasium's toy-text transition
dict (``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]``) and
pymdptoolbox's ``(P [A] list of SxS, R [S, A])``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

ToyTextP = Mapping[int, Mapping[int, Sequence[tuple[float, int, float, bool]]]]


class TabularMDP:
    """A finite MDP with a sparse transition model.

    Arguments:
        P: transition probabilities, a dense array ``[S, A, S]`` or a sparse matrix ``[S*A, S]``
            whose row ``s * A + a`` is ``P(. | s, a)``. Every row must sum to 1.
        R: expected rewards ``[S, A]``.
        gamma: discount factor in ``[0, 1]``.
        terminal: boolean ``[S]``; absorbing states with value 0. Defaults to none.
        initial: start-state distribution ``[S]``. Defaults to uniform over non-terminal states.
        atol: tolerance for the probability checks.

    Raises:
        ValueError: naming the argument when shapes disagree, probabilities are negative, a row of
            ``P`` does not sum to 1, ``P``, ``R`` or ``initial`` hold NaN or infinity, or ``gamma``
            is not a number in ``[0, 1]``.
    """

    def __init__(
        self,
        P: np.ndarray | sp.sparray | sp.spmatrix,
        R: np.ndarray,
        gamma: float,
        terminal: np.ndarray | None = None,
        initial: np.ndarray | None = None,
        *,
        atol: float = 1e-8,
    ) -> None:
        R = _floats("R", R)
        if R.ndim != 2:
            raise ValueError(f"R must have shape [S, A], got shape {R.shape}")
        n_states, n_actions = R.shape
        self.P = _as_sparse_transitions(P, n_states, n_actions)
        if not np.all(np.isfinite(R)):
            raise ValueError("R must be finite; it contains NaN or infinity")
        self.R = R
        self.gamma = _check_gamma(gamma)

        if terminal is None:
            terminal = np.zeros(n_states, dtype=bool)
        terminal = np.asarray(terminal)
        if terminal.shape != (n_states,):
            raise ValueError(f"terminal must have shape [S] = ({n_states},), got {terminal.shape}")
        self.terminal = terminal.astype(bool)

        if initial is None:
            initial = (~self.terminal).astype(np.float64)
            if initial.sum() == 0:
                raise ValueError("every state is terminal; pass `initial` explicitly")
            initial /= initial.sum()
        initial = _floats("initial", initial)
        if initial.shape != (n_states,):
            raise ValueError(f"initial must have shape [S] = ({n_states},), got {initial.shape}")
        if not np.all(np.isfinite(initial)):
            raise ValueError("initial must be finite; it contains NaN or infinity")
        if np.any(initial < 0) or abs(initial.sum() - 1.0) > atol:
            raise ValueError(f"initial must be a probability vector (>= 0, sums to 1); sums to {initial.sum():.6g}")
        self.initial = initial

        if self.P.nnz and self.P.data.min() < 0:
            raise ValueError("P must be non-negative; it has negative entries")
        sums = np.asarray(self.P.sum(axis=1)).ravel()
        bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
        if bad.size:
            s, a = divmod(int(bad[0]), n_actions)
            raise ValueError(
                f"rows of P must sum to 1: P(. | s={s}, a={a}) sums to {sums[bad[0]]:.6g} "
                f"({bad.size} bad rows in all)"
            )

    # ------------------------------------------------------------------ shape and access
    @property
    def n_states(self) -> int:
        return self.R.shape[0]

    @property
    def n_actions(self) -> int:
        return self.R.shape[1]

    def __repr__(self) -> str:
        return (
            f"TabularMDP(n_states={self.n_states}, n_actions={self.n_actions}, gamma={self.gamma}, "
            f"nnz={self.P.nnz}, terminal={int(self.terminal.sum())})"
        )

    def transitions(self, s: int, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Next states and their probabilities under ``(s, a)``."""
        row = s * self.n_actions + a
        start, stop = self.P.indptr[row], self.P.indptr[row + 1]
        return self.P.indices[start:stop].copy(), self.P.data[start:stop].copy()

    def dense_P(self) -> np.ndarray:
        """``P`` as a dense ``[S, A, S]`` array (for small models and tests)."""
        return self.P.toarray().reshape(self.n_states, self.n_actions, self.n_states)

    def with_gamma(self, gamma: float) -> TabularMDP:
        """The same model with another discount factor (the arrays are shared, not copied)."""
        other = object.__new__(TabularMDP)
        other.__dict__.update(self.__dict__)
        other.gamma = _check_gamma(gamma)
        return other

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_transitions(
        cls,
        n_states: int,
        n_actions: int,
        state: np.ndarray,  # [T] int
        action: np.ndarray,  # [T] int
        next_state: np.ndarray,  # [T] int
        prob: np.ndarray,  # [T]
        reward: np.ndarray,  # [T], reward of the transition s, a -> s'
        gamma: float,
        terminal: np.ndarray | None = None,
        initial: np.ndarray | None = None,
    ) -> TabularMDP:
        """Build a model from a list of transitions ``(s, a, s', p, r(s, a, s'))``.

        Duplicate ``(s, a, s')`` triples add up, and ``R[s, a]`` is the probability-weighted
        reward, so a list in Gymnasium's style (one entry per random outcome) is accepted as is.
        """
        state, action, next_state = (np.asarray(x, dtype=np.int64) for x in (state, action, next_state))
        prob, reward = np.asarray(prob, dtype=np.float64), np.asarray(reward, dtype=np.float64)
        for name, x in (("state", state), ("next_state", next_state)):
            if x.size and (x.min() < 0 or x.max() >= n_states):
                raise ValueError(f"{name} indices must lie in [0, {n_states}), got range [{x.min()}, {x.max()}]")
        if action.size and (action.min() < 0 or action.max() >= n_actions):
            raise ValueError(f"action indices must lie in [0, {n_actions}), got range [{action.min()}, {action.max()}]")
        rows = state * n_actions + action
        P = sp.csr_array(
            sp.coo_array((prob, (rows, next_state)), shape=(n_states * n_actions, n_states))
        )
        P.sum_duplicates()
        R = np.bincount(rows, weights=prob * reward, minlength=n_states * n_actions)
        return cls(P, R.reshape(n_states, n_actions), gamma, terminal, initial)

    @classmethod
    def from_toy_text(cls, P: ToyTextP, gamma: float, initial: np.ndarray | None = None) -> TabularMDP:
        """Build a model from Gymnasium's toy-text dict ``P[s][a] = [(p, s', r, terminated), ...]``.

        A state is terminal when some transition enters it with ``terminated=True``; Gymnasium's
        toy-text environments end episodes by state, so a terminal state that a non-terminal state
        enters without termination is rejected.
        """
        n_states = len(P)
        if n_states == 0:
            raise ValueError("P is empty: expected P[s][a] for every state s")
        n_actions = len(P[0])
        s_list, a_list, ns_list, p_list, r_list, t_list = [], [], [], [], [], []
        for s in range(n_states):
            if s not in P or len(P[s]) != n_actions:
                raise ValueError(f"P[{s}] must list all {n_actions} actions (as P[0] does)")
            for a in range(n_actions):
                for entry in P[s][a]:
                    if len(entry) != 4:
                        raise ValueError(f"P[{s}][{a}] entries must be (prob, next_state, reward, terminated), got {entry!r}")
                    p, ns, r, term = entry
                    s_list.append(s), a_list.append(a), ns_list.append(int(ns))
                    p_list.append(float(p)), r_list.append(float(r)), t_list.append(bool(term))
        s_arr, ns_arr, t_arr = np.asarray(s_list), np.asarray(ns_list, dtype=np.int64), np.asarray(t_list, dtype=bool)
        terminal = np.zeros(n_states, dtype=bool)
        terminal[ns_arr[t_arr]] = True
        # Only transitions that can happen in an episode may contradict state-based termination:
        # those out of reachable, non-terminal states (Taxi lists unreachable ones that do).
        live = ~terminal[s_arr]
        reachable = _reachable(n_states, s_arr[live], ns_arr[live], initial)
        conflict = live & reachable[s_arr] & terminal[ns_arr] & ~t_arr
        if conflict.any():
            i = int(np.flatnonzero(conflict)[0])
            raise ValueError(
                f"state {ns_arr[i]} is entered from state {s_arr[i]} without termination but elsewhere with it; "
                "a TabularMDP needs termination to depend on the state only"
            )
        return cls.from_transitions(
            n_states, n_actions, np.asarray(s_list), np.asarray(a_list), ns_arr,
            np.asarray(p_list), np.asarray(r_list), gamma, terminal, initial,
        )

    @classmethod
    def from_gymnasium(cls, env: Any, gamma: float = 0.99) -> TabularMDP:
        """The model of any Gymnasium toy-text environment (FrozenLake-v1, CliffWalking-v1, Taxi-v3).

        Reads ``env.unwrapped.P`` and, where the environment has it, ``initial_state_distrib``.
        """
        base = getattr(env, "unwrapped", env)
        P = getattr(base, "P", None)
        if not isinstance(P, Mapping):
            raise ValueError(
                f"{type(base).__name__} has no toy-text transition dict `P`; "
                "from_gymnasium needs an environment such as FrozenLake-v1, CliffWalking-v1 or Taxi-v3"
            )
        initial = getattr(base, "initial_state_distrib", None)
        return cls.from_toy_text(P, gamma, None if initial is None else np.asarray(initial, dtype=np.float64))

    # ------------------------------------------------------------------ export
    def to_mdptoolbox(self) -> tuple[list[sp.csr_matrix], np.ndarray]:
        """``(P, R)`` for pymdptoolbox: ``P`` a list of ``A`` sparse ``[S, S]``, ``R`` ``[S, A]``.

        pymdptoolbox has no terminal states, so they become absorbing self-loops with zero reward,
        which has the same value function.
        """
        A = self.n_actions
        P = self.P.tocsr(copy=True)
        R = self.R.copy()
        if self.terminal.any():
            keep = np.repeat(~self.terminal, A).astype(np.float64)
            loops = sp.csr_array(
                (np.ones(int(self.terminal.sum()) * A), (np.flatnonzero(np.repeat(self.terminal, A)),
                 np.repeat(np.flatnonzero(self.terminal), A))),
                shape=P.shape,
            )
            P = sp.csr_array(sp.diags_array(keep) @ P) + loops
            R[self.terminal] = 0.0
        per_action = [sp.csr_matrix(P[a::A]) for a in range(A)]
        return per_action, R


def _reachable(n_states: int, src: np.ndarray, dst: np.ndarray, initial: np.ndarray | None) -> np.ndarray:
    """Boolean ``[S]``: states reachable along the edges ``src -> dst`` from the support of ``initial``."""
    graph = sp.csr_array((np.ones(src.size), (src, dst)), shape=(n_states, n_states))
    seen = np.ones(n_states, dtype=bool) if initial is None else np.asarray(initial) > 0
    frontier = seen.copy()
    while frontier.any():
        nxt = (graph.T @ frontier.astype(np.float64)) > 0
        frontier = nxt & ~seen
        seen |= nxt
    return seen


def _floats(name: str, x: Any) -> np.ndarray:
    """``x`` as a float64 array; ``ValueError`` naming ``name`` if it does not hold numbers."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {type(x).__name__} {x!r:.60}") from None


def _check_gamma(gamma: float) -> float:
    """``gamma`` as a float; ``ValueError`` unless it is a real number in ``[0, 1]`` (NaN is not)."""
    if isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:  # also false for NaN
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return gamma


def _as_sparse_transitions(P: Any, n_states: int, n_actions: int) -> sp.csr_array:
    if sp.issparse(P):
        if P.shape != (n_states * n_actions, n_states):
            raise ValueError(
                f"sparse P must have shape [S*A, S] = ({n_states * n_actions}, {n_states}) "
                f"to match R [S, A] = ({n_states}, {n_actions}), got {P.shape}"
            )
        out = sp.csr_array(P, dtype=np.float64)
    else:
        P = _floats("P", P)
        if P.shape != (n_states, n_actions, n_states):
            raise ValueError(
                f"dense P must have shape [S, A, S] = ({n_states}, {n_actions}, {n_states}) "
                f"to match R [S, A] = ({n_states}, {n_actions}), got {P.shape}"
            )
        out = sp.csr_array(P.reshape(n_states * n_actions, n_states))
    if out.nnz and not np.all(np.isfinite(out.data)):
        raise ValueError("P must be finite; it contains NaN or infinity")
    out.sum_duplicates()
    out.eliminate_zeros()
    return out
