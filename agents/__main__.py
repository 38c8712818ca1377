"""``python -m agents solve | train | evaluate | demo`` (see ``--help`` of each)."""

from __future__ import annotations

import os

import tyro

from agents.commands import Evaluate, Solve, Train, evaluate_saved, solve, train
from envs.cli import report, run_main


def main(argv: list[str] | None = None) -> int:
    from agents.demo import Demo, run_demo

    # Videos of Gymnasium's own toy-text envs go through pygame; the command line never opens a window.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    args = tyro.extras.subcommand_cli_from_dict(
        {"solve": Solve, "train": Train, "evaluate": Evaluate, "demo": Demo}, args=argv, prog="python -m agents"
    )
    if isinstance(args, Solve):
        report(solve(args), args.json)
    elif isinstance(args, Train):
        report(train(args), args.json)
    elif isinstance(args, Evaluate):
        report(evaluate_saved(args), args.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
