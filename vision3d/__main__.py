"""``python -m vision3d render | fit <method> | eval | demo`` (see ``--help`` of each)."""

from __future__ import annotations

import os

# Headless rendering through OSMesa unless the user chose a platform (EGL on a GPU machine).
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

import tyro

from envs.cli import report, run_main


def main(argv: list[str] | None = None) -> int:
    from vision3d.commands import Eval, Fit, FitArgs, Render, evaluate, fit, render
    from vision3d.demo import Demo, run_demo

    args = tyro.extras.subcommand_cli_from_dict(
        {"render": Render, "fit": Fit, "eval": Eval, "demo": Demo}, args=argv, prog="python -m vision3d"
    )
    if isinstance(args, Render):
        report(render(args), args.json)
    elif isinstance(args, FitArgs):
        report(fit(args), args.json)
    elif isinstance(args, Eval):
        report(evaluate(args), args.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
