"""``python -m generative train <model> | sample RUN | table | compare | demo`` (see ``--help`` of each)."""

from __future__ import annotations

from envs.io.cli import parse, report, run_main


def main(argv: list[str] | None = None) -> int:
    from generative.commands import SampleCommand, TrainCommand, sample, train
    from generative.compare import CompareCommand, run_compare
    from generative.demo import Demo, run_demo
    from generative.table import TableCommand, run_table, summary_of
    from generative.training import distributed

    commands = {"train": TrainCommand, "sample": SampleCommand, "table": TableCommand, "compare": CompareCommand,
                "demo": Demo}
    args = parse(commands, argv, "python -m generative", "Neural networks and generative models (notes §1-10), trained on a CPU in minutes.")
    if isinstance(args, TrainCommand):
        summary = train(args.model)
        if distributed().main:  # under torchrun only rank 0 reports
            report(summary, args.model.json)
    elif isinstance(args, SampleCommand):
        report(sample(args), args.json)
    elif isinstance(args, TableCommand):
        rows = run_table(args)
        if args.json:
            report(summary_of(rows), True)
        else:
            print((args.out / "table.md").read_text())
    elif isinstance(args, CompareCommand):
        rows = run_compare(args)
        if args.json:
            report({"rows": [r._asdict() for r in rows]}, True)
        else:
            print((args.out / "compare.md").read_text())
    else:
        run_demo(args)
    return 0


if __name__ == "__main__":
    run_main(main)
