"""``python -m bodies render | train <method> | fit <method> | export-smpl | demo | view`` (see ``--help`` of each)."""

from __future__ import annotations

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from bodies.commands import COMMANDS, Export, Fit, Render, Train, export, fit, render, train
    from bodies.demo import Demo, run_demo
    from bodies.viewer import View, serve

    description = ("Parametric human bodies (notes §13): render bodies with exact ground truth, train 2D pose "
                   "methods and learned gradient descent, fit bodies to keypoints.")
    args = parse({**COMMANDS, "demo": Demo, "view": View}, argv, "python -m bodies", description)
    if isinstance(args, Render):
        report(render(args), args.json)
    elif isinstance(args, Train):
        report(train(args), args.json)
    elif isinstance(args, Fit):
        report(fit(args), args.json)
    elif isinstance(args, Export):
        report(export(args), args.json)
    elif isinstance(args, View):
        return serve(args)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
