"""``python -m agents compare RUN... --out DIR``: several agents' learning curves on one plot, ours and
Stable-Baselines3's, each read from its own files (:func:`agents.curves.read_run` says which).

``DIR/``
  ``compare.png``  return against environment steps, one line per RUN (the mean over its seeds), shaded with
                   a 95% bootstrap confidence band where it has several seeds
  ``compare.csv``  per RUN: where it came from, what it measures, seeds, steps, the final return (mean over
                   seeds and its interval) and the best
  ``compare.md``   the same table in Markdown

Greedy evaluation curves (ours, SB3's ``evaluations.npz``) are drawn as logged; curves of training episodes
(SB3's ``monitor.csv``, our tabular agents) are first averaged over ``--window`` episodes, and the legend
says which is which: a training curve includes the exploration noise an evaluation leaves out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tyro

from agents.curves import Band, RunCurves, band, bootstrap_band, read_run, smoothed
from agents.plots import band_curves
from envs.io.figures import save_figure
from envs.io.files import atomic_write_csv, atomic_write_text


@dataclass
class Compare:
    """Plot several runs' learning curves together (ours, our --seeds folders, Stable-Baselines3 logs)."""

    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Run folders: ours (config.json + metrics.csv), a `train --seeds` folder, or SB3 logs (evaluations.npz of
    EvalCallback and/or *monitor.csv of Monitor; several seeds as sub-folders)."""
    out: Path
    """Folder for compare.png, compare.csv and compare.md."""
    labels: tuple[str, ...] = ()
    """One legend label per run; default the folders' names."""
    window: int = 20
    """Curves of training episodes (monitor.csv, tabular agents) are averaged over this many episodes."""
    confidence: float = 0.95
    """Confidence of the bootstrap bands and intervals."""
    title: str = ""
    """Title of the plot."""
    json: bool = False
    """Print the summary as one JSON object."""


class Compared(NamedTuple):
    """One RUN of the comparison."""

    label: str
    folder: Path
    run: RunCurves
    band: Band
    finals: list[float]  # the last point of each seed's curve
    bests: list[float]  # the best point of each seed's curve


def default_labels(folders: Sequence[Path]) -> list[str]:
    """The folders' names; their paths where two names coincide."""
    names = [f.resolve().name for f in folders]
    return [name if names.count(name) == 1 else str(f) for name, f in zip(names, folders, strict=True)]


def check(args: Compare) -> list[str]:
    """The labels; a one-line ``ValueError`` for arguments that cannot work."""
    if not args.runs:
        raise ValueError("compare needs at least one RUN folder")
    if args.labels and len(args.labels) != len(args.runs):
        raise ValueError(f"--labels must give one label per run: {len(args.runs)} runs, {len(args.labels)} labels")
    if args.window < 1:
        raise ValueError(f"--window must be at least 1, got {args.window}")
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence must lie in (0, 1), got {args.confidence}")
    return list(args.labels) or default_labels(args.runs)


def compared(label: str, folder: Path, run: RunCurves, window: int, confidence: float) -> Compared:
    """``run``'s curves (training curves averaged over ``window`` episodes), their band and per-seed numbers."""
    curves = [smoothed(c, window) for c in run.curves] if run.metric == "training episodes" else list(run.curves)
    finals = [float(c.y[-1]) for c in curves]
    bests = [float(np.nanmax(c.y)) if np.isfinite(c.y).any() else math.nan for c in curves]
    return Compared(label, folder, run, band(curves, confidence), finals, bests)


def rows(entries: Sequence[Compared], confidence: float) -> list[dict[str, Any]]:
    """The table: one row per RUN."""
    table = []
    for e in entries:
        mean, low, high = (float(v[0]) for v in bootstrap_band(np.array(e.finals)[:, None], confidence))
        table.append({"run": e.label, "folder": str(e.folder), "source": e.run.source, "metric": e.run.metric,
                      "seeds": len(e.finals), "x": e.run.xlabel, "last_x": float(e.band.x[-1]),
                      "final_mean": mean, "final_low": low, "final_high": high, "best_mean": float(np.mean(e.bests))})
    return table


def markdown(table: Sequence[dict[str, Any]], confidence: float) -> str:
    """``table`` as a Markdown table."""
    pct = f"{100 * confidence:g}%"
    lines = [f"| run | source | metric | seeds | steps | final return ({pct} CI) | best return (mean) |",
             "|---|---|---|---:|---:|---|---:|"]
    for r in table:
        x = f"{r['last_x']:,.0f}" + (" episodes" if r["x"] == "episodes" else "")
        ci = f"{r['final_mean']:.2f}" + (f" [{r['final_low']:.2f}, {r['final_high']:.2f}]" if r["seeds"] > 1 else "")
        lines.append(f"| {r['run']} | {r['source']} | {r['metric']} | {r['seeds']} | {x} | {ci} | {r['best_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def compare(args: Compare) -> dict[str, Any]:
    """Read every RUN (all before any work), then write the plot and the tables of the module docstring."""
    labels = check(args)
    read = [read_run(folder) for folder in args.runs]
    entries = [compared(label, Path(folder), run, args.window, args.confidence)
               for label, folder, run in zip(labels, args.runs, read, strict=True)]
    metrics = {e.run.metric for e in entries}
    xlabels = {e.run.xlabel for e in entries}
    bands = {(e.label if len(metrics) == 1 else f"{e.label}, {e.run.metric}"): e.band for e in entries}
    xlabel = xlabels.pop() if len(xlabels) == 1 else "environment steps (episodes for tabular runs)"
    ylabel = "return" if len(metrics) > 1 else f"return ({metrics.pop()})"
    args.out.mkdir(parents=True, exist_ok=True)
    save_figure(band_curves(bands, xlabel=xlabel, ylabel=ylabel, title=args.title, confidence=args.confidence),
                args.out / "compare.png")
    table = rows(entries, args.confidence)
    atomic_write_csv(args.out / "compare.csv", table)
    atomic_write_text(args.out / "compare.md", markdown(table, args.confidence))
    return {"out": str(args.out), "plot": str(args.out / "compare.png"), "runs": table}
