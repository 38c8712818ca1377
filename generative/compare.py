"""``python -m generative compare``: every family of generative model of notes §5-10 on the same 8x8 digits, one table.

Users ask one question of the whole package: which model to use. The answer depends on what is measured, so
the table measures everything that is defined for each model, under one budget (each model's registry
defaults, a fixed number of steps, <= 10 minutes on 2 CPU cores; ``--scale`` shrinks them for a quick look):

* test NLL in bits per dimension on the 17-level digits where a likelihood is defined: exact for the
  autoregressive models, the dequantised bound ``-log p(y) + D log 17`` for the flows and the two non-neural
  baselines, the IWAE bound for the VAE; GANs and diffusion sampling have no (cheap) likelihood;
* the Frechet digit distance (FDD, ``generative.metrics``) of ``--fdd-samples`` samples to the training images,
  every set as float images in ``[0, 1]`` (grey levels divided by 16), next to that of the real test images;
* the mean Euclidean distance of samples to their nearest training image (the real test images' beside it:
  samples much closer than that are copies, as the noisy training set's are);
* seconds to draw 64 samples, parameters and training seconds.

Two non-neural baselines sit in the same table (``generative.models.baselines``): a 50-component
full-covariance Gaussian mixture and the training set plus a little noise. Rows are trained by
``python -m generative train <model>`` into ``OUT/runs``; the diffusion row ``ddim-50`` samples the DDPM run
with 50 DDIM steps. A row already in ``OUT/rows`` is not measured again and an interrupted run resumes, so a
killed comparison continues where it stopped. Written: ``compare.md``/``.csv``/``.json``, ``samples/<row>.png``,
and ``section.json`` + ``index.html``, a page with the table and every sample grid.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from envs.io.files import atomic_write_csv, atomic_write_json, atomic_write_text
from generative.table import SAMPLE_SECONDS_N, Budget

Family = Literal["reference", "baseline", "latent", "autoregressive", "flow", "gan", "diffusion"]


class Entry(NamedTuple):
    """One row of the comparison: which registry model trains it, on which data, sampled how."""

    family: Family
    model: str | None  # registry name of `python -m generative train` (None: a reference or a baseline)
    data: str | None = None  # its --data (None: the model's own default)
    options: tuple[tuple[str, Any], ...] = ()  # sampler options (name, value) for the entry's images function
    note: str = ""


ENTRIES: dict[str, Entry] = {
    "test-images": Entry("reference", None, note="the 360 real test digits: the best any model can hope for"),
    "gmm-50": Entry("baseline", None, note="50-component full-covariance Gaussian mixture (EM)"),
    "train+noise": Entry("baseline", None, note="the training digits plus Gaussian noise of std 0.05 (a kernel density)"),
    "vae": Entry("latent", "vae", "digits-grey", note="VAE, categorical decoder; IWAE bound (k = 1000)"),
    "made": Entry("autoregressive", "made", "digits-grey"),
    "pixelcnn": Entry("autoregressive", "pixelcnn", "digits-grey"),
    "gated-pixelcnn": Entry("autoregressive", "gated-pixelcnn", "digits-grey"),
    "transformer": Entry("autoregressive", "transformer", "digits-grey"),
    "nice": Entry("flow", "nice", "digits-grey", note="dequantised bound"),
    "realnvp": Entry("flow", "realnvp", "digits-grey", note="dequantised bound"),
    "glow": Entry("flow", "glow", "digits-grey", note="dequantised bound"),
    "dcgan": Entry("gan", "dcgan", note="non-saturating loss, transposed convolutions"),
    "ddpm": Entry("diffusion", "ddpm", note="U-Net, 1000 ancestral steps"),
    "ddim-50": Entry("diffusion", "ddpm", options=(("sampler", "ddim"), ("steps", 50)),
                     note="the DDPM run sampled with 50 DDIM steps"),
    "latent-ddpm": Entry("diffusion", "latent-ddpm", note="MLP diffusion on a frozen VAE's 8 latents"),
}
"""The rows, in the order of the notes."""


def available_rows() -> list[str]:
    """Rows whose registry model exists in this version of the package."""
    from generative.commands import MODELS

    return [name for name, e in ENTRIES.items() if e.model is None or (e.model in MODELS and MODELS[e.model].images)]


@dataclass
class CompareCommand(Budget):
    """Train every family of generative model on the same 8x8 digits and compare them in one table (test bits/dim
    where defined, Frechet digit distance, sampling time, parameters), with a Gaussian mixture and the noisy
    training set as non-neural baselines."""

    out: Path = Path("outputs/compare")
    """Folder of the comparison: compare.md/csv/json, index.html, runs/<model>, samples/<row>.png."""
    rows: list[str] = field(default_factory=available_rows)
    """Which rows, by name (default: all)."""

    def __post_init__(self) -> None:
        known = available_rows()
        unknown = [r for r in self.rows if r not in known]
        if unknown:
            raise ValueError(f"--rows: {', '.join(unknown)} unknown (choose from {', '.join(known)})")
        super().__post_init__()


class Row(NamedTuple):
    """One row of the comparison table."""

    name: str
    family: str
    bits_per_dim: float  # test NLL (or its bound) in bits/dim on the 17-level digits; NaN where undefined
    fdd: float  # Frechet digit distance of the samples to the training images
    nn_distance: float  # mean Euclidean distance of the samples to their nearest training image
    sample_seconds: float  # for SAMPLE_SECONDS_N samples (NaN for the reference)
    parameters: int
    train_seconds: float
    steps: int
    note: str


class References(NamedTuple):
    """The fixed images every row is measured against (float, ``[N, 1, 8, 8]`` in ``[0, 1]``)."""

    train: Tensor
    test: Tensor
    train_dequantised: Tensor  # the continuous form (x + u) / 17, which the baselines are fitted to
    test_dequantised: Tensor


def references() -> References:
    from generative.data.digits import load_digits_split

    floats, continuous = load_digits_split(form="float"), load_digits_split(form="continuous")
    return References(torch.from_numpy(floats.x_train), torch.from_numpy(floats.x_test),
                      torch.from_numpy(continuous.x_train), torch.from_numpy(continuous.x_test))


def sample_quality(samples: Tensor, refs: References) -> tuple[float, float]:
    """``(FDD to the training images, mean nearest-training-image distance)`` of float samples ``[N, 1, 8, 8]``."""
    from generative.metrics import frechet_digit_distance, nearest_neighbour_distance

    return (frechet_digit_distance(samples, refs.train),
            float(nearest_neighbour_distance(samples, refs.train, metric="euclidean").mean()))


def _timed_samples(draw: Any, n: int, seed: int) -> tuple[Tensor, float]:
    """``n`` samples from ``draw(n, seed)``, the first 64 timed on their own (seeds ``seed`` and ``seed + 1``)."""
    start = time.perf_counter()
    first = draw(SAMPLE_SECONDS_N, seed)
    seconds = time.perf_counter() - start
    return torch.cat([first, draw(n - SAMPLE_SECONDS_N, seed + 1)]).float().cpu(), seconds


def baseline_row(name: str, args: CompareCommand, refs: References) -> tuple[Row, Tensor]:
    """Fit a non-neural baseline to the dequantised training digits and measure it."""
    from generative.models.base import bits_per_dim
    from generative.models.baselines import GaussianMixtureBaseline, NoisyTrainingSet, dequantised_nll

    start = time.perf_counter()
    model = (GaussianMixtureBaseline(refs.train_dequantised) if name == "gmm-50"
             else NoisyTrainingSet(refs.train_dequantised))
    seconds = time.perf_counter() - start
    dims = int(np.prod(refs.test.shape[1:]))
    nll = float(dequantised_nll(model.log_prob(refs.test_dequantised), dims, 17).mean())
    samples, sample_seconds = _timed_samples(lambda n, s: model.sample(n, torch.Generator().manual_seed(s)),
                                             args.fdd_samples, args.seed)
    fdd, nn = sample_quality(samples, refs)
    return Row(name, "baseline", bits_per_dim(nll, dims), fdd, nn, sample_seconds, model.parameters, seconds, 0,
               ENTRIES[name].note), samples


def model_row(name: str, args: CompareCommand, refs: References) -> tuple[Row, Tensor]:
    """Train (or resume) the row's registry model and measure it."""
    from generative.commands import MODELS, trained_config
    from generative.table import train_row

    entry = ENTRIES[name]
    assert entry.model is not None
    run_dir = args.out / "runs" / (entry.model if entry.data is None else f"{entry.model}-{entry.data}")
    summary = train_row(entry.model, args, run_dir, data=entry.data)
    _, config = trained_config(run_dir)
    images = MODELS[entry.model].images
    samples, sample_seconds = _timed_samples(lambda n, s: images(run_dir, config, n, s, **dict(entry.options)),
                                             args.fdd_samples, args.seed)
    fdd, nn = sample_quality(samples, refs)
    bpd = summary.get("test_bits_per_dim")
    return Row(name, entry.family, math.nan if bpd is None else float(bpd), fdd, nn, sample_seconds,
               int(summary.get("parameters", 0)), run_seconds(run_dir), int(summary.get("steps", 0)), entry.note), samples


def run_seconds(run_dir: Path) -> float:
    """Seconds a run trained, across resumes: the last ``seconds`` of its ``metrics.csv`` and of those of the runs
    it holds (a latent diffusion's VAE)."""
    import csv

    total = 0.0
    for path in sorted(run_dir.rglob("metrics.csv")):
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        total += float(rows[-1]["seconds"]) if rows and "seconds" in rows[-1] else 0.0
    return total


def reference_row(refs: References) -> tuple[Row, Tensor]:
    fdd, nn = sample_quality(refs.test, refs)
    return Row("test-images", "reference", math.nan, fdd, nn, math.nan, 0, 0.0, 0, ENTRIES["test-images"].note), refs.test


def markdown(rows: list[Row]) -> str:
    """The table as markdown."""
    lines = [("Test split of the 8x8 digits (17 grey levels, 64 dimensions, 360 images); FDD and nearest-neighbour "
              "distance of the samples to the 1257 training digits.\n"),
             "| model | family | test bits/dim | FDD | NN distance | sample s / 64 | parameters | train s | steps |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        bpd = "" if math.isnan(r.bits_per_dim) else f"{r.bits_per_dim:.3f}"
        seconds = "" if math.isnan(r.sample_seconds) else f"{r.sample_seconds:.3f}"
        lines.append(f"| {r.name} | {r.family} | {bpd} | {r.fdd:.2f} | {r.nn_distance:.3f} | {seconds} | "
                     f"{r.parameters:,} | {r.train_seconds:.1f} | {r.steps} |")
    return "\n".join(lines) + "\n"


def page(rows: list[Row], out: Path, scale: float, folder: Path, command: str) -> Path:
    """``folder/section.json`` (the table and the sample grids of ``out``; ``command`` reproduces them) and
    ``folder/../index.html``."""
    import imageio.v3 as iio

    from envs.io.figures import image_grid, save_figure
    from envs.io.page import write_index, write_section

    images = [iio.imread(out / "samples" / f"{r.name}.png") for r in rows]
    titles = [f"{r.name}\nFDD {r.fdd:.1f}" for r in rows]
    save_figure(image_grid(images, titles, columns=5, cell=2.4, cmap="gray", fontsize=10), folder / "samples.png",
                wide=True)
    columns = ["model", "family", "test bits/dim", "FDD", "NN distance", "sample s / 64", "parameters", "train s"]
    cells = [[r.name, r.family, "" if math.isnan(r.bits_per_dim) else f"{r.bits_per_dim:.3f}", f"{r.fdd:.2f}",
              f"{r.nn_distance:.3f}", "" if math.isnan(r.sample_seconds) else f"{r.sample_seconds:.3f}",
              f"{r.parameters:,}", f"{r.train_seconds:.1f}"] for r in rows]
    atomic_write_text(folder / "compare.md", markdown(rows))
    budget = "each model's full budget" if scale >= 1 else f"{scale:.0%} of each model's steps, trained live"
    write_section(folder, "10.6", "Every generative model on the same digits", (
        f"One table for the whole package ({budget}): likelihood where it is defined, the Frechet digit distance of "
        "samples to the training digits, and the cost of drawing them."), [
        {"kind": "table", "file": "compare.md", "columns": columns, "rows": cells, "caption": (
            "Bits/dim: exact (autoregressive), dequantised bound (flows, baselines) or IWAE bound (VAE). FDD: lower is "
            "better; the real test digits set the floor. NN distance: mean distance of samples to their nearest "
            "training digit; the noisy training set scores well on FDD by copying, which its NN distance and its "
            "likelihood give away.")},
        {"kind": "image", "file": "samples.png", "wide": True, "caption": "64 seeded samples of every row."}],
        command=command)
    return write_index(folder.parent)


def run_compare(args: CompareCommand, page_folder: Path | None = None, page_command: str | None = None) -> list[Row]:
    """Measure every row of ``args.rows`` and write the table and the grids into ``args.out``, and the page's section
    into ``page_folder`` (default ``args.out/compare``; the demo puts it in its own page), whose reproducing command
    is ``page_command`` (default: this ``python -m generative compare`` command)."""
    import json

    from generative.tasks.density import write_grid
    from generative.training import set_threads

    set_threads(args.threads)
    say = tqdm.write if args.progress else (lambda _: None)
    refs = references()
    rows: list[Row] = []
    for name in args.rows:
        done = args.out / "rows" / f"{name}.json"
        if done.is_file():
            rows.append(Row(**json.loads(done.read_text())))
            say(f"compare: {name} already measured ({done})")
            continue
        say(f"compare: {name}")
        entry = ENTRIES[name]
        if entry.family == "reference":
            row, samples = reference_row(refs)
        elif entry.model is None:
            row, samples = baseline_row(name, args, refs)
        else:
            row, samples = model_row(name, args, refs)
        write_grid(samples[:64].numpy(), 2, args.out / "samples" / f"{name}.png")  # floats: levels 2 divides by 1
        atomic_write_json(done, row._asdict())
        rows.append(row)
    atomic_write_text(args.out / "compare.md", markdown(rows))
    atomic_write_csv(args.out / "compare.csv", [r._asdict() for r in rows])
    atomic_write_json(args.out / "compare.json", {"scale": args.scale, "rows": [r._asdict() for r in rows]})
    from envs.io.page import command_line

    page(rows, args.out, args.scale, page_folder or args.out / "compare",
         page_command or command_line("python -m generative compare", args))
    return rows

