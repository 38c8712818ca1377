"""``python -m bodies render | train <method> | fit <method> | demo`` (see ``--help`` of each)."""

from __future__ import annotations

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from bodies.commands import COMMANDS, Fit, Render, Train, fit, render, train

    description = ("Parametric human bodies (notes §13): render bodies with exact ground truth, train 2D pose "
                   "methods and learned gradient descent, fit bodies to keypoints.")
    args = parse(COMMANDS, argv, "python -m bodies", description)
    if isinstance(args, Render):
        report(render(args), args.json)
    elif isinstance(args, Train):
        report(train(args), args.json)
    elif isinstance(args, Fit):
        report(fit(args), args.json)
    return 0


if __name__ == "__main__":
    run_main(main)
