"""Time to test PSNR: NeRF's CPU fast path (hash encoding + occupancy grid) against the vanilla model, one run.

Both fits go through the project's engine (``generative.training.fit``) with the presets of
:func:`vision3d.nerf.cpu_preset`; every ``--eval-every`` steps the test views are rendered and scored, and that
evaluation time is taken out of the clock, so the table is test PSNR against training seconds.

    .venv/bin/python benchmarks/bench_nerf.py                     # renders the 64x64 torus, 100 views
    .venv/bin/python benchmarks/bench_nerf.py --data data/torus --threads 2 --steps 600

Never run by the test suite. Prints one Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from generative.training import fit, seed_everything
from vision3d.nerf import NeRFModel, NeRFObjective, cpu_preset, evaluate_nerf, training_rays


class Timed(NeRFObjective):
    """NeRF's objective with a test-view evaluation whose own time is kept apart."""

    def __init__(self, model: NeRFModel, data: Path, *rays: torch.Tensor) -> None:
        super().__init__(model, *rays)
        self.data, self.start, self.eval_seconds = data, time.perf_counter(), 0.0

    def evaluate(self, step: int) -> dict[str, float]:
        begin = time.perf_counter()
        self.model.eval()
        test_psnr = evaluate_nerf(self.model, self.data).psnr
        self.model.train()
        self.eval_seconds += time.perf_counter() - begin
        return {"test_psnr": test_psnr, "train_seconds": begin - self.start - self.eval_seconds + 0.0}


def run(kind: str, data: Path, steps: int | None, eval_every: int, threads: int) -> list[tuple[int, float, float]]:
    config = cpu_preset(kind, steps)
    config = replace(config, fit=replace(config.fit, eval_every=eval_every, progress=False, threads=threads,
                                         checkpoint_every=10**9))
    torch.set_num_threads(threads)
    seed_everything(config.fit.seed)
    model = NeRFModel(config)
    objective = Timed(model, data, *training_rays(data, config, torch.device("cpu")))
    with tempfile.TemporaryDirectory() as folder:
        result = fit(objective, config.fit, Path(folder) / "run", desc=kind)
    return [(int(row["step"]), row["train_seconds"], row["test_psnr"]) for row in result.rows if "test_psnr" in row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a Blender-layout dataset (default: render the 64x64 torus)")
    parser.add_argument("--steps", type=int, help="steps per fit (default: the presets', 1800 and 2600)")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data
        if data is None:
            from vision3d.dataset import ExportConfig, export_dataset

            data = export_dataset("torus", Path(scratch) / "torus", config=ExportConfig(views=100, size=64))
        curves = {kind: run(kind, data, args.steps, args.eval_every, args.threads) for kind in ("nerf", "ngp")}
    print(f"| fit ({args.threads} thread(s)) | step | training seconds | test PSNR (dB) |")
    print("|---|---|---|---|")
    for kind, rows in curves.items():
        for step, seconds, value in rows:
            print(f"| {kind} | {step} | {seconds:.0f} | {value:.2f} |")
    print(json.dumps({kind: [list(row) for row in rows] for kind, rows in curves.items()}))


if __name__ == "__main__":
    main()
