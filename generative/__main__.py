"""``python -m generative train <model> | demo`` (see ``--help`` of each)."""

from __future__ import annotations

import tyro

from envs.io.cli import report, run_main


def main(argv: list[str] | None = None) -> int:
    from typing import Annotated, Union

    from generative.commands import TrainCommand, train
    from generative.demo import Demo, run_demo
    from generative.training import distributed

    commands = {"train": TrainCommand, "demo": Demo}
    spec = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in commands.items())]  # noqa: UP007
    args = tyro.cli(spec, args=argv, prog="python -m generative", config=(tyro.conf.OmitSubcommandPrefixes,),
                    description="Neural networks and generative models (notes §1-10), trained on a CPU in minutes.")
    if isinstance(args, TrainCommand):
        summary = train(args.model)
        if distributed().main:  # under torchrun only rank 0 reports
            report(summary, args.model.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
