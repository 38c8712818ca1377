"""``python -m agents solve | train <agent> | evaluate | compare | demo`` (see ``--help`` of each)."""

from __future__ import annotations

import os
import sys

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from agents.commands import Evaluate, Solve, TrainCommand, evaluate_saved, solve, train
    from agents.compare import Compare, compare
    from agents.demo import Demo, run_demo
    from agents.hyperparams import given_options

    # Videos of Gymnasium's own toy-text envs go through pygame; the command line never opens a window.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"solve": Solve, "train": TrainCommand, "evaluate": Evaluate, "compare": Compare, "demo": Demo}
    args = parse(commands, argv, "python -m agents", "Reinforcement learning (notes §11): dynamic programming, tabular and deep agents.")
    if isinstance(args, Solve):
        report(solve(args), args.json)
    elif isinstance(args, TrainCommand):
        report(train(args.agent, given_options(argv)), args.agent.json)
    elif isinstance(args, Evaluate):
        report(evaluate_saved(args), args.json)
    elif isinstance(args, Compare):
        report(compare(args), args.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
