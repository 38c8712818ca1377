"""``python -m agents solve | train <agent> | evaluate | demo`` (see ``--help`` of each)."""

from __future__ import annotations

import os

import tyro

from envs.io.cli import report, run_main


def main(argv: list[str] | None = None) -> int:
    from typing import Annotated, Union

    from agents.commands import Evaluate, Solve, TrainCommand, evaluate_saved, solve, train
    from agents.demo import Demo, run_demo

    # Videos of Gymnasium's own toy-text envs go through pygame; the command line never opens a window.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    commands = {"solve": Solve, "train": TrainCommand, "evaluate": Evaluate, "demo": Demo}
    spec = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in commands.items())]  # noqa: UP007
    args = tyro.cli(spec, args=argv, prog="python -m agents", config=(tyro.conf.OmitSubcommandPrefixes,),
                    description="Reinforcement learning (notes §11): dynamic programming, tabular and deep agents.")
    if isinstance(args, Solve):
        report(solve(args), args.json)
    elif isinstance(args, TrainCommand):
        report(train(args.agent), args.agent.json)
    elif isinstance(args, Evaluate):
        report(evaluate_saved(args), args.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
