"""``python -m generative table``: every likelihood model of notes §6-7 trained on the same digits, one table.

Each model of :data:`TABLE_MODELS` is trained by ``python -m generative train <model>`` with its registry
defaults (its fixed budget: a number of steps, so the table is reproducible; <= 5 minutes each on 2 cores)
into ``OUT/runs/<model>``, with early stopping on the validation split, and then measured on the fixed
360-image test split:

* test NLL in nats per image and bits per dimension: exact for the autoregressive models; for the VAE the
  importance-weighted bound (IWAE, ``k = 1000``), with the negative ELBO beside it;
* parameters, training seconds, sampling seconds per 64 samples (seeded);
* sample quality: the Frechet digit distance of 1000 samples (``--fdd-samples``) to the training images (``generative.metrics``),
  and the mean distance of samples to their nearest training image next to that of real test images (a
  model that memorises the training set has samples much closer than test images are).

Rows are written as ``table.md`` (markdown), ``table.csv`` and ``table.json``, with a sample grid per model
in ``OUT/samples``. A model whose row is already in ``OUT/rows`` is not trained again, and an interrupted
run is resumed from its checkpoint: a killed table continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from envs.io.files import atomic_write_csv, atomic_write_json, atomic_write_text
from envs.io.run import CHECKPOINT
from generative.tasks.density import DataName, load_density, write_grid

TABLE_MODELS: tuple[str, ...] = (
    "independent", "fvsbn", "nade", "made", "vae", "beta-vae", "pixel-rnn", "pixelcnn", "gated-pixelcnn", "transformer",
)
"""The rows of the table, in the order of the notes."""
FDD_SAMPLES = 1000
"""Samples drawn for the Frechet digit distance and the nearest-neighbour distance."""
SAMPLE_SECONDS_N = 64
"""Samples whose drawing time is reported."""


@dataclass
class Budget:
    """How a table of trained models is run: the budget of every model, threads, seeds and the sample count."""

    scale: float = 1.0
    """Fraction of each model's default training steps (the demo uses a reduced budget)."""
    min_steps: int = 0
    """At least this many steps per model (never more than its default): a reduced budget that still lets the
    slow-to-start models learn."""
    threads: int = 1
    """Torch CPU threads for training and evaluation."""
    seed: int = 0
    """Seed of every model's training and of the samples."""
    fdd_samples: int = FDD_SAMPLES
    """Samples per model for the Frechet digit distance and the nearest-neighbour distance."""
    progress: bool = True
    """Show progress bars."""
    json: bool = False
    """Print the table as JSON."""

    def __post_init__(self) -> None:
        if not 0 < self.scale <= 10 or self.min_steps < 0:
            raise ValueError(f"--scale must lie in (0, 10] and --min-steps be >= 0, got {self.scale}, {self.min_steps}")
        if self.threads < 1 or self.fdd_samples < SAMPLE_SECONDS_N + 2:
            raise ValueError(f"--threads must be >= 1 and --fdd-samples >= {SAMPLE_SECONDS_N + 2}, got {self.threads}, "
                             f"{self.fdd_samples}")


@dataclass
class TableCommand(Budget):
    """Train every likelihood model of notes §6-7 on the same digits and write one table (test NLL, bits/dim,
    parameters, seconds, Frechet digit distance)."""

    out: Path = Path("outputs/table")
    """Folder of the table: table.md/csv/json, runs/<model>, samples/<model>.png."""
    data: DataName = "digits"
    """Binary digits (nats and bits/dim) or the 17-level grey digits."""
    models: list[str] = field(default_factory=lambda: list(TABLE_MODELS))
    """Which models (rows), by registry name."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in TABLE_MODELS]
        if unknown:
            raise ValueError(f"--models: {', '.join(unknown)} not in the table (choose from {', '.join(TABLE_MODELS)})")
        super().__post_init__()


class Row(NamedTuple):
    """One model's line of the table."""

    model: str
    test_nll: float  # nats per image (IWAE bound for latent models)
    bits_per_dim: float
    elbo_nll: float  # -ELBO, latent models only (NaN otherwise)
    parameters: int
    steps: int
    best_step: int
    train_seconds: float
    sample_seconds: float  # for SAMPLE_SECONDS_N samples
    fdd: float  # Frechet digit distance of FDD_SAMPLES samples to the training images
    nn_distance: float  # mean distance of samples to their nearest training image
    test_nn_distance: float  # the same for the real test images (the reference)


def train_row(name: str, args: Budget, run_dir: Path, data: str | None) -> dict[str, Any]:
    """Train registry model ``name`` on ``data`` (None: its own) into ``run_dir`` with its registry defaults scaled by
    ``args.scale`` (at least ``args.min_steps``), ``args.seed``, ``args.threads`` and ``args.progress``; an
    interrupted run is resumed."""
    from generative.commands import TRAIN_COMMANDS, train

    cls = TRAIN_COMMANDS[name]
    defaults = cls().config  # type: ignore[attr-defined]
    steps = max(1, round(defaults.fit.steps * args.scale), min(defaults.fit.steps, args.min_steps))
    resume = (run_dir / CHECKPOINT).is_file()
    command = cls(out=run_dir, steps=steps, seed=args.seed, threads=args.threads, resume=resume,  # type: ignore[call-arg]
                  data=data)
    config = dataclasses.replace(defaults, fit=dataclasses.replace(defaults.fit, progress=args.progress))
    return train(dataclasses.replace(command, config=config))


def measure(name: str, summary: dict[str, Any], run_dir: Path, samples_dir: Path, seed: int,
            fdd_samples: int = FDD_SAMPLES) -> Row:
    """The table's numbers of a trained run: its training summary, plus sampling time and sample quality."""
    from generative.commands import trained_config
    from generative.metrics import frechet_digit_distance, nearest_neighbour_distance

    _, config = trained_config(run_dir)
    model, split = load_density(run_dir, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        start = time.perf_counter()
        first = model.sample(SAMPLE_SECONDS_N, generator)
        seconds = time.perf_counter() - start
        rest = model.sample(fdd_samples - SAMPLE_SECONDS_N, generator)
    samples = torch.cat([first, rest]).cpu()
    write_grid(samples[:64].numpy(), model.levels, samples_dir / f"{name}.png")
    train, test = torch.from_numpy(split.x_train), torch.from_numpy(split.x_test)
    fdd = frechet_digit_distance(samples, train, model.levels if model.levels > 2 else None)
    nn_samples = float(nearest_neighbour_distance(samples, train).mean())
    nn_test = float(nearest_neighbour_distance(test, train).mean())
    elbo_nll = math.nan if summary["test_elbo_nll"] is None else summary["test_elbo_nll"]
    return Row(name, summary["test_nll"], summary["test_bits_per_dim"], elbo_nll, summary["parameters"],
               summary["steps"], summary["best_step"], summary["train_seconds"], seconds, fdd, nn_samples, nn_test)


def markdown(rows: list[Row], data: DataName) -> str:
    """The table as markdown, best NLL first marked."""
    form = "binary" if data == "digits" else "17 grey levels"
    header = ("| model | test NLL (nats) | bits/dim | -ELBO | parameters | steps (best) | train s | sample s / 64 "
              "| FDD | NN dist. (test) |")
    lines = [
        f"Test split of the 8x8 digits ({form}, 64 dimensions, 360 images).\n",
        header,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = min(r.test_nll for r in rows) if rows else math.nan
    for r in rows:
        nll = f"**{r.test_nll:.2f}**" if r.test_nll == best else f"{r.test_nll:.2f}"
        elbo = "" if math.isnan(r.elbo_nll) else f"{r.elbo_nll:.2f}"
        lines.append(
            f"| {r.model} | {nll} | {r.bits_per_dim:.4f} | {elbo} | {r.parameters:,} | {r.steps} ({r.best_step}) "
            f"| {r.train_seconds:.0f} | {r.sample_seconds:.3f} | {r.fdd:.1f} | {r.nn_distance:.2f} ({r.test_nn_distance:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def run_table(args: TableCommand) -> list[Row]:
    """Train and measure every model of ``args.models``; write the table files into ``args.out``."""
    from generative.training import set_threads

    set_threads(args.threads)
    runs, rows_dir, samples_dir = args.out / "runs", args.out / "rows", args.out / "samples"
    say = tqdm.write if args.progress else (lambda _: None)
    rows: list[Row] = []
    for name in args.models:
        done = rows_dir / f"{name}.json"
        if done.is_file():
            rows.append(Row(**json.loads(done.read_text())))
            say(f"table: {name} already measured ({done})")
            continue
        say(f"table: training {name}")
        summary = train_row(name, args, runs / name, args.data)
        row = measure(name, summary, runs / name, samples_dir, args.seed, args.fdd_samples)
        atomic_write_json(done, row._asdict())
        rows.append(row)
    atomic_write_text(args.out / "table.md", markdown(rows, args.data))
    atomic_write_csv(args.out / "table.csv", [r._asdict() for r in rows])
    atomic_write_json(args.out / "table.json", {"data": args.data, "scale": args.scale, "rows": [r._asdict() for r in rows]})
    return rows


def ordering(rows: list[Row]) -> list[str]:
    """Model names from the best (lowest test NLL) to the worst."""
    return [r.model for r in sorted(rows, key=lambda r: r.test_nll)]


def summary_of(rows: list[Row]) -> dict[str, Any]:
    """What ``--json`` prints: the rows and the ordering."""
    return {"rows": [r._asdict() for r in rows], "ordering": ordering(rows),
            "best": ordering(rows)[0] if rows else None, "mean_nn_distance": float(np.mean([r.nn_distance for r in rows]))
            if rows else math.nan}
