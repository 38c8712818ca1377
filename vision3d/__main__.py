"""``python -m vision3d render | fit <method> | eval | demo`` (see ``--help`` of each)."""

from __future__ import annotations

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from vision3d.commands import Eval, FitCommand, Render, evaluate, fit, render
    from vision3d.demo import Demo, run_demo

    commands = {"render": Render, "fit": FitCommand, "eval": Eval, "demo": Demo}
    args = parse(commands, argv, "python -m vision3d", "3D reconstruction (notes §12): render datasets, fit implicit surfaces, evaluate meshes.")
    if isinstance(args, Render):
        report(render(args), args.json)
    elif isinstance(args, FitCommand):
        report(fit(args.method), args.method.json)
    elif isinstance(args, Eval):
        report(evaluate(args), args.json)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
