"""Mode collapse on the 2-D mixtures (notes §9.2): the vanilla (minimax) GAN, the non-saturating GAN, the
unrolled GAN (Metz et al. 2017) with 5 and 10 steps, R1 (Mescheder et al. 2018) and WGAN-GP, over seeds.

Each run is ``generative.tasks.gan.mode_experiment_config(variant, toy, seed, steps)`` trained on the engine;
the final generator draws 2500 samples (fixed latents) and ``mode_coverage`` counts the modes it covers (at
least a quarter of a mode's fair share of samples within 3 std of it) and the high-quality fraction (samples
within 3 std of their nearest mode). Prints a markdown table: mean +- std of modes and high-quality %, the
number of seeds that cover every mode, and the seconds per run (on a busy shared machine, for orientation).

    python benchmarks/bench_gan_modes.py [--steps 1000] [--seeds 5] [--variants minimax unrolled-5 ...]
        [--toys 8gaussians 25gaussians] [--threads 1] [--jobs 1] [--out /tmp/gan_modes] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from generative.tasks.gan import MIXTURES, MODE_VARIANTS, mode_experiment_config, train_gan

DEFAULT_VARIANTS = ("minimax", "non-saturating", "unrolled-5", "unrolled-10", "r1")


def one_run(job: tuple[str, str, int, int, int, int, str]) -> dict[str, object]:
    """Train one (toy, variant, seed) and return its numbers."""
    toy, variant, seed, steps, batch_size, threads, out = job
    config = mode_experiment_config(variant, toy, seed, steps, batch_size=batch_size, threads=threads)
    start = time.perf_counter()
    result = train_gan(config, Path(out) / f"{toy}-{variant}-seed{seed}")
    return {"toy": toy, "variant": variant, "seed": seed, "steps": steps, "modes": result.modes,
            "modes_any": result.modes_any, "total_modes": result.total_modes,
            "high_quality": result.high_quality_fraction, "seconds": time.perf_counter() - start}


def table(rows: list[dict[str, object]]) -> str:
    """The markdown table of the runs, one line per (toy, variant)."""
    lines = ["| toy | variant | seeds | modes covered | high quality % | seeds with all modes | s / run |",
             "|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["toy"], r["variant"]) for r in rows))
    for toy, variant in keys:
        runs = [r for r in rows if (r["toy"], r["variant"]) == (toy, variant)]
        modes = np.array([r["modes"] for r in runs], dtype=float)
        hq = 100 * np.array([r["high_quality"] for r in runs], dtype=float)
        total = int(runs[0]["total_modes"])  # type: ignore[call-overload]
        full = int((modes == total).sum())
        seconds = float(np.mean([r["seconds"] for r in runs]))
        lines.append(f"| {toy} | {variant} | {len(runs)} | {modes.mean():.1f} +- {modes.std():.1f} / {total} | "
                     f"{hq.mean():.1f} +- {hq.std():.1f} | {full}/{len(runs)} | {seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="training steps per run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 per (toy, variant)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS),
                        help=f"any of {', '.join(MODE_VARIANTS)} or unrolled-K")
    parser.add_argument("--toys", nargs="+", default=list(MIXTURES), choices=MIXTURES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gan_modes"), help="folder of the run folders")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's numbers here")
    args = parser.parse_args(argv)
    jobs = [(toy, variant, seed, args.steps, args.batch_size, args.threads, str(args.out))
            for toy in args.toys for variant in args.variants for seed in range(args.seeds)]
    rows: list[dict[str, object]] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for row in pool.map(one_run, jobs):
                rows.append(row)
                print(json.dumps(row), flush=True)
    else:
        for job in jobs:
            rows.append(one_run(job))
            print(json.dumps(rows[-1]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    print(f"\n{args.steps} steps, batch {args.batch_size}; modes: >= 1/4 of a mode's fair share of 2500 samples "
          f"within 3 std (0.3) of it\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
