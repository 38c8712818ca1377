"""Value iteration on mp/Maze-v0 (size=100, 10,000 states, gamma 0.99): ours against pymdptoolbox.

Both solve the same model (``mdp.to_mdptoolbox()``) in the same process. pymdptoolbox's
``ValueIteration`` does most of its work in its constructor (input checks and an iteration bound
that loops over states), so we report the end-to-end time and the iterations alone.

    python benchmarks/bench_value_iteration.py [--size 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import envs
from agents.tabular.dp import policy_iteration, value_iteration


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import mdptoolbox.mdp as mdptoolbox

    env = envs.make_env("mp/Maze-v0", size=args.size)
    mdp = env.unwrapped.mdp.with_gamma(args.gamma)
    ours_s, ours = best_of(args.repeats, lambda: value_iteration(mdp, tol=1e-8))
    pi_s, pi = best_of(1, lambda: policy_iteration(mdp))

    P, R = mdp.to_mdptoolbox()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        theirs = mdptoolbox.ValueIteration(P, R, args.gamma, epsilon=1e-6, max_iter=1_000_000)
        init_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs.run()
        run_s = time.perf_counter() - start
    V_theirs = np.asarray(theirs.V)
    result = {
        "states": mdp.n_states,
        "gamma": args.gamma,
        "ours_seconds": ours_s,
        "ours_iterations": ours.iterations,
        "pymdptoolbox_init_seconds": init_s,
        "pymdptoolbox_run_seconds": run_s,
        "pymdptoolbox_iterations": int(theirs.iter),
        "speedup_end_to_end": (init_s + run_s) / ours_s,
        "speedup_iterations_only": run_s / ours_s,
        "max_abs_V_difference": float(np.abs(ours.V - V_theirs).max()),
        "policy_iteration_seconds": pi_s,
        "policy_iteration_rounds": pi.iterations,
        "max_abs_V_difference_vi_pi": float(np.abs(ours.V - pi.V).max()),
    }
    print(json.dumps(result, indent=1))
    print(f"\nvalue iteration, {mdp.n_states} states: ours {ours_s * 1e3:.1f} ms ({ours.iterations} sweeps); "
          f"pymdptoolbox {init_s + run_s:.2f} s end to end ({init_s:.2f} s constructor + {run_s * 1e3:.1f} ms for "
          f"{theirs.iter} sweeps). Speed-up {result['speedup_end_to_end']:.0f}x end to end, "
          f"{result['speedup_iterations_only']:.1f}x on the iterations alone; max |V diff| = {result['max_abs_V_difference']:.1e}")


if __name__ == "__main__":
    main()
