"""Time to test PSNR of NeRF's fits on a CPU: the fast path, vanilla NeRF with hierarchical sampling and coarse only.

Every fit goes through the project's engine (``generative.training.fit``) with the presets of
:func:`vision3d.nerf.cpu_preset`; every ``--eval-every`` steps the test views are rendered and scored, and that
evaluation time is taken out of the clock, so the table is test PSNR against training seconds.

Kinds (``--kinds``):

* ``ngp`` -- ``cpu_preset("ngp")``: hash encoding and occupancy grid.
* ``nerf-coarse`` -- ``cpu_preset("nerf")`` as it is: the small MLP at 64 stratified samples, coarse network only.
* ``nerf`` -- the same MLP with hierarchical sampling (notes §12.4): a coarse network at 32 stratified samples and
  a fine network at those and 32 drawn from the coarse weights (``n_coarse=32, n_fine=32``), so the fine network
  renders at 64 samples as the coarse-only fit does. A step evaluates the networks 96 times per ray against 64 and
  measured 1.28 times as long as a coarse-only step (0.66 s against 0.52 s on a busy machine), so its default
  budget is 1400 steps against the coarse-only preset's 1800: the same wall clock.

    .venv/bin/python benchmarks/bench_nerf.py                            # ngp and nerf-coarse, phong torus, 64x64
    .venv/bin/python benchmarks/bench_nerf.py --kinds nerf-coarse nerf   # coarse only against hierarchical
    .venv/bin/python benchmarks/bench_nerf.py --kinds ngp --scene wire_knot --size 128 --steps 2600

Never run by the test suite. Prints one Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch

from generative.training import fit, seed_everything
from vision3d.nerf import NeRFConfig, NeRFModel, NeRFObjective, cpu_preset, evaluate_nerf, training_rays

Kind = Literal["nerf", "nerf-coarse", "ngp"]
KINDS: tuple[Kind, ...] = ("nerf", "nerf-coarse", "ngp")
#: Steps of the hierarchical fit by default: the wall clock of the coarse-only preset's 1800 steps.
HIERARCHICAL_STEPS = 1400


def bench_config(kind: Kind, steps: int | None = None, size: int = 64) -> NeRFConfig:
    """The configuration of one kind of fit (see the module docstring) at ``size x size`` pixels."""
    if kind == "ngp":
        config = cpu_preset("ngp", steps)
    elif kind == "nerf-coarse":
        config = cpu_preset("nerf", steps)
    elif kind == "nerf":
        config = cpu_preset("nerf", steps or HIERARCHICAL_STEPS)
        config = replace(config, coarse_only=False, n_coarse=32, n_fine=32)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return replace(config, size=size)


class Timed(NeRFObjective):
    """NeRF's objective with a test-view evaluation whose own time is kept apart."""

    def __init__(self, model: NeRFModel, data: Path, *rays: torch.Tensor) -> None:
        super().__init__(model, *rays)
        self.data, self.start, self.eval_seconds = data, time.perf_counter(), 0.0

    def evaluate(self, step: int) -> dict[str, float]:
        begin = time.perf_counter()
        train_seconds = begin - self.start - self.eval_seconds  # the evaluations before this one taken out
        self.model.eval()
        test_psnr = evaluate_nerf(self.model, self.data).psnr
        self.model.train()
        self.eval_seconds += time.perf_counter() - begin
        return {"test_psnr": test_psnr, "train_seconds": train_seconds}


def run(config: NeRFConfig, data: Path, eval_every: int, threads: int, desc: str) -> list[tuple[int, float, float]]:
    """``(step, training seconds, test PSNR)`` every ``eval_every`` steps of one fit of ``config`` to ``data``."""
    config = replace(config, fit=replace(config.fit, eval_every=eval_every, progress=False, threads=threads,
                                         checkpoint_every=10**9))
    torch.set_num_threads(threads)
    seed_everything(config.fit.seed)
    model = NeRFModel(config)
    objective = Timed(model, data, *training_rays(data, config, torch.device("cpu")))
    with tempfile.TemporaryDirectory() as folder:
        result = fit(objective, config.fit, Path(folder) / "run", desc=desc)
    return [(int(row["step"]), row["train_seconds"], row["test_psnr"]) for row in result.rows if "test_psnr" in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=["ngp", "nerf-coarse"])
    parser.add_argument("--scene", choices=("torus", "wire_knot"), default="torus",
                        help="the shape rendered with phong shading, 100 views (ignored with --data)")
    parser.add_argument("--size", type=int, choices=(64, 128), default=64, help="image width and height")
    parser.add_argument("--data", type=Path, help="a Blender-layout dataset instead of rendering --scene")
    parser.add_argument("--steps", type=int, nargs="+",
                        help="steps per fit, one for all kinds or one per kind (default: 2600 ngp, 1800 nerf-coarse, "
                             f"{HIERARCHICAL_STEPS} nerf)")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    steps = args.steps or [None]
    if len(steps) not in (1, len(args.kinds)):
        parser.error(f"--steps takes one value or one per kind ({len(args.kinds)}), got {len(steps)}")
    steps = steps * len(args.kinds) if len(steps) == 1 else steps
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            from vision3d.dataset import ExportConfig, export_dataset

            data = export_dataset(args.scene, Path(scratch) / args.scene,
                                  config=ExportConfig(views=100, size=args.size, shading="phong"))
        curves = {kind: run(bench_config(kind, n, args.size), data, args.eval_every, args.threads, kind)
                  for kind, n in zip(args.kinds, steps)}
    print(f"| fit ({data.name if args.data else args.scene}, {args.size}x{args.size}, {args.threads} thread(s)) "
          "| step | training seconds | test PSNR (dB) |")
    print("|---|---|---|---|")
    for kind, rows in curves.items():
        for step, seconds, value in rows:
            print(f"| {kind} | {step} | {seconds:.0f} | {value:.2f} |")
    print(json.dumps({kind: [list(row) for row in rows] for kind, rows in curves.items()}))


if __name__ == "__main__":
    main()
