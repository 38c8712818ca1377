"""``python -m vision3d render | fit <method> | eval | compare | demo | view | process-data`` (``--help`` of each)."""

from __future__ import annotations

import json
import sys

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from vision3d.commands import Eval, FitCommand, Render, evaluate, fit, fit_command_with_preset, render
    from vision3d.compare import Compare, run_compare
    from vision3d.demo import Demo, run_demo
    from vision3d.process_data import ProcessData, process_data
    from vision3d.viewer import View, serve

    commands = {"render": Render, "fit": FitCommand, "eval": Eval, "compare": Compare, "demo": Demo, "view": View,
                "process-data": ProcessData}
    description = ("3D reconstruction (notes §12): render datasets, fit implicit surfaces, radiance fields and "
                   "Gaussians, evaluate meshes, compare every method on one scene.")
    args = parse(commands, argv, "python -m vision3d", description)
    preset = getattr(getattr(args, "method", None), "preset", "paper")
    if isinstance(args, FitCommand) and preset != "paper":  # again, from the preset: --config.* options change it
        args = parse({**commands, "fit": fit_command_with_preset(preset)}, argv, "python -m vision3d", description)
    if isinstance(args, Render):
        report(render(args), args.json)
    elif isinstance(args, FitCommand):
        report(fit(args.method), args.method.json)
    elif isinstance(args, Eval):
        report(evaluate(args), args.json)
    elif isinstance(args, Compare):
        say = (lambda text: print(text, file=sys.stderr)) if args.progress else (lambda _: None)
        run_compare(args, say=say)
        if args.json:  # comparison.json on one line
            print(json.dumps(json.loads((args.out / "comparison.json").read_text())))
        else:
            print((args.out / "comparison.md").read_text(), end="")
    elif isinstance(args, ProcessData):
        report(process_data(args), args.json)
    elif isinstance(args, View):
        return serve(args)
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
