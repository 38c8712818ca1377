"""Learning curves of finished runs, read from their files, and the statistics RL papers report over seeds.

What a folder holds decides how it is read (:func:`read_run`):

* one of our runs: ``config.json`` and ``metrics.csv``; a deep agent's greedy evaluation return
  (``eval_mean``) against environment steps (``step``), a tabular agent's training return against episodes;
* several of ours: the ``seed<k>/`` run folders that ``python -m agents train ... --seeds`` writes;
* Stable-Baselines3's logs: ``evaluations.npz`` of its ``EvalCallback`` (``timesteps [N]``, ``results [N, E]``
  returns of ``E`` deterministic episodes), else the ``*monitor.csv`` files of its ``Monitor`` (a ``#{json}``
  line with ``t_start``, then columns ``r, l, t``: return, length and end time of each training episode),
  whose episodes, ordered by end time, give the environment steps as the running sum of ``l``;
* several SB3 runs: sub-folders that each hold such logs (RL Zoo's ``logs/<algo>/<env>_<k>/``).

Over seeds, :func:`bootstrap_band` gives the mean curve and a percentile bootstrap confidence band
(resampling seeds with replacement), as in Agarwal et al., "Deep RL at the edge of the statistical
precipice" (NeurIPS 2021). With few seeds the percentile band is narrower than it should be (it covers
about 85% of the time with 5 seeds for a nominal 95%, as the tests measure), a known limit of the method.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from envs.io.arrays import read_npz
from envs.io.figures import moving_average

Metric = Literal["greedy evaluation", "training episodes"]
SB3_EVALUATIONS = "evaluations.npz"
SB3_MONITOR = "monitor.csv"  # Monitor's files end with it: monitor.csv, 0.monitor.csv, ...


class Curve(NamedTuple):
    """One run's return against its x axis."""

    x: np.ndarray  # [N] environment steps (or episodes), increasing
    y: np.ndarray  # [N] return


class RunCurves(NamedTuple):
    """What a folder holds: one curve per seed, and what they measure."""

    source: str
    """'ours' or 'sb3', with the file read, e.g. 'sb3 evaluations.npz'."""
    metric: Metric
    """Greedy (deterministic) evaluation returns, or the returns of the training episodes."""
    xlabel: str
    """'environment steps' or 'episodes'."""
    seeds: list[str]
    """Name of each seed's folder (the folder itself for a single run)."""
    curves: list[Curve]


class Band(NamedTuple):
    """The mean curve over seeds and its confidence band."""

    x: np.ndarray  # [P]
    mean: np.ndarray  # [P]
    low: np.ndarray  # [P]
    high: np.ndarray  # [P]
    seeds: int


# ---------------------------------------------------------------------- statistics
def bootstrap_band(values: np.ndarray, confidence: float = 0.95, resamples: int = 10_000,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of ``values [S, P]`` (S seeds, P points) and a percentile bootstrap interval.

    Each of ``resamples`` draws picks ``S`` seeds with replacement and averages them; ``low`` and ``high``
    are the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means at each point.
    Returns ``(mean, low, high)``, each [P]. One seed gives a band of zero width.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"values must be [seeds, points] with at least one of each, got shape {values.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(0) if rng is None else rng
    seeds = values.shape[0]
    picks = rng.integers(0, seeds, size=(resamples, seeds))
    # counts[r, s]: how often draw r picked seed s; the draw's mean curve is counts @ values / S
    counts = np.bincount((picks + seeds * np.arange(resamples)[:, None]).ravel(), minlength=resamples * seeds)
    means = counts.reshape(resamples, seeds) @ values / seeds  # [resamples, P]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return values.mean(axis=0), low, high


def align(curves: Sequence[Curve], points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The curves on one x grid: ``(x [P], values [S, P])``.

    Curves evaluated at the same x (our runs of one config) are stacked as they are; otherwise each is
    interpolated linearly onto ``min(points, longest)`` evenly spaced x where all of them are defined.
    """
    if not curves:
        raise ValueError("align needs at least one curve")
    first = curves[0].x
    if all(len(c.x) == len(first) and np.array_equal(c.x, first) for c in curves):
        return np.asarray(first, dtype=np.float64), np.stack([np.asarray(c.y, dtype=np.float64) for c in curves])
    lo, hi = max(float(c.x[0]) for c in curves), min(float(c.x[-1]) for c in curves)
    if lo > hi:
        raise ValueError(f"the curves share no range of x (they start as late as {lo:g} and end as early as {hi:g})")
    grid = np.linspace(lo, hi, max(1, min(points, max(len(c.x) for c in curves))) if hi > lo else 1)
    return grid, np.stack([np.interp(grid, c.x, c.y) for c in curves])


def band(curves: Sequence[Curve], confidence: float = 0.95, resamples: int = 10_000,
         rng: np.random.Generator | None = None) -> Band:
    """:func:`align` then :func:`bootstrap_band`."""
    x, values = align(curves)
    mean, low, high = bootstrap_band(values, confidence, resamples, rng)
    return Band(x, mean, low, high, len(curves))


def smoothed(curve: Curve, window: int) -> Curve:
    """``curve`` with each y the mean of the last ``window`` points (fewer at the start), x unchanged."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if window == 1 or len(curve.y) < 2:
        return curve
    w = min(window, len(curve.y))
    head = np.cumsum(curve.y[: w - 1]) / np.arange(1, w)  # the first points average what there is
    return Curve(curve.x, np.concatenate([head, moving_average(curve.y, w)]))


# ---------------------------------------------------------------------- readers
def _curve(x: np.ndarray, y: np.ndarray, where: Path) -> Curve:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
        raise ValueError(f"{where}: expected one return per point, got x {x.shape} and y {y.shape}")
    order = np.argsort(x, kind="stable")
    return Curve(x[order], y[order])


def read_ours(folder: Path) -> tuple[Curve, Metric, str]:
    """``(curve, metric, xlabel)`` of one of our run folders, from its ``metrics.csv``."""
    path = Path(folder) / "metrics.csv"
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    if not rows:
        raise ValueError(f"{path} holds no rows yet")
    try:
        if "eval_mean" in rows[0] and "step" in rows[0]:
            return (_curve([float(r["step"]) for r in rows], [float(r["eval_mean"]) for r in rows], path),
                    "greedy evaluation", "environment steps")
        if "return" in rows[0] and "episode" in rows[0]:
            return (_curve([float(r["episode"]) + 1 for r in rows], [float(r["return"]) for r in rows], path),
                    "training episodes", "episodes")
    except (TypeError, ValueError):
        raise ValueError(f"{path}: a row holds a value that is not a number") from None
    raise ValueError(f"{path} has neither step and eval_mean columns (deep agents) nor episode and return (tabular)")


def read_evaluations(path: Path) -> Curve:
    """Mean return of each evaluation in SB3's ``evaluations.npz`` against its ``timesteps``."""
    arrays = read_npz(path, keys=("timesteps", "results"))
    missing = [key for key in ("timesteps", "results") if key not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: not an EvalCallback evaluations.npz")
    results = np.asarray(arrays["results"], dtype=np.float64)
    y = results.reshape(len(results), -1).mean(axis=1) if results.ndim > 1 else results
    return _curve(arrays["timesteps"], y, path)


def read_monitor_file(path: Path) -> np.ndarray:
    """``[episodes, 3]`` rows (end time since the epoch of ``t_start``, return, length) of one Monitor file."""
    try:
        with open(path, newline="", encoding="utf-8") as file:
            first = file.readline()
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    if not first.startswith("#"):
        raise ValueError(f"{path} does not start with Monitor's '#{{...}}' header line")
    try:
        header = json.loads(first[1:])
        t_start = float(header.get("t_start", 0.0)) if isinstance(header, dict) else 0.0
    except (TypeError, ValueError):
        raise ValueError(f"{path}: Monitor's header line is not JSON with a numeric t_start") from None
    if rows and not {"r", "l", "t"} <= set(rows[0]):
        raise ValueError(f"{path} lacks Monitor's r, l, t columns (has {', '.join(rows[0])})")
    try:
        return np.array([[float(r["t"]) + t_start, float(r["r"]), float(r["l"])] for r in rows],
                        dtype=np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: a row holds a value that is not a number") from None


def read_monitors(folder: Path) -> Curve:
    """Training episode returns of every ``*monitor.csv`` in ``folder`` against the environment steps taken
    by their end (episodes of parallel environments merged in order of end time, as SB3's ``load_results``)."""
    files = sorted(Path(folder).glob(f"*{SB3_MONITOR}"))
    episodes = np.concatenate([read_monitor_file(f) for f in files]) if files else np.zeros((0, 3))
    if len(episodes) == 0:
        raise ValueError(f"{folder}: its monitor files hold no finished episode")
    episodes = episodes[np.argsort(episodes[:, 0], kind="stable")]
    return Curve(np.cumsum(episodes[:, 2]), episodes[:, 1])


def _kind(folder: Path) -> str | None:
    """'ours', 'sb3' or None: what a single run's folder holds."""
    if (folder / "metrics.csv").is_file() and (folder / "config.json").is_file():
        return "ours"
    if (folder / SB3_EVALUATIONS).is_file() or any(folder.glob(f"*{SB3_MONITOR}")):
        return "sb3"
    return None


def _natural(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_single(folder: Path, kind: str) -> tuple[Curve, Metric, str, str]:
    if kind == "ours":
        curve, metric, xlabel = read_ours(folder)
        return curve, metric, xlabel, "ours metrics.csv"
    if (folder / SB3_EVALUATIONS).is_file():
        return read_evaluations(folder / SB3_EVALUATIONS), "greedy evaluation", "environment steps", "sb3 evaluations.npz"
    return read_monitors(folder), "training episodes", "environment steps", "sb3 monitor.csv"


def read_run(folder: str | Path) -> RunCurves:
    """The curves of ``folder``: one of our runs, our ``--seeds`` folder, or SB3 logs (see the module docstring).

    A folder that holds none of these is a one-line ``ValueError`` saying what was expected.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    kind = _kind(folder)
    if kind is not None:
        singles = [(folder, kind)]
    else:
        singles = [(sub, k) for sub in sorted((p for p in folder.iterdir() if p.is_dir()), key=_natural)
                   if (k := _kind(sub)) is not None]
    if not singles:
        raise ValueError(f"{folder} holds no run: expected our metrics.csv and config.json, the seed<k>/ folders of "
                         f"`train --seeds`, or Stable-Baselines3's {SB3_EVALUATIONS} or *{SB3_MONITOR} (in it or in "
                         "one sub-folder per seed)")
    read = [_read_single(path, k) for path, k in singles]
    kinds = {(source, metric, xlabel) for _, metric, xlabel, source in read}
    if len(kinds) > 1:
        raise ValueError(f"{folder}: its seed folders hold different kinds of logs ({sorted(kinds)}); compare them "
                         "as separate runs")
    (source, metric, xlabel), = kinds
    return RunCurves(source, metric, xlabel, [path.name for path, _ in singles], [c for c, *_ in read])
