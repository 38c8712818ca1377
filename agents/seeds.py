"""``python -m agents train <agent> ... --seeds 0 1 2 3 4``: one run per seed, in parallel processes, then
the mean learning curve over the seeds with a 95% bootstrap confidence band, as RL papers report.

``OUT/``
  ``config.json``  the command's options (a deep agent's resolved hyperparameters and their sources included)
  ``seed<k>/``     a normal run folder per seed (``--resume OUT/seed<k>`` continues one)
  ``curve.png``    the mean over seeds of the greedy evaluation return (deep agents) against environment steps,
                   or of the training return (tabular agents, averaged over 20 episodes) against episodes,
                   shaded where a percentile bootstrap over seeds puts 95% of the mean
  ``seeds.csv``    per seed: the last and the best point of its curve, the final evaluation of its run; then
                   rows ``mean``, ``ci_low`` and ``ci_high`` over seeds
  ``seeds.json``   the same, with the plotted band

Each seed runs in its own process, at most ``--workers`` at once; its progress bar is off and one bar
counts finished seeds. The processes are forked from a fresh server process that has imported the
package once (``forkserver``, so neither the import per seed of ``spawn`` nor a fork of this process's
threads and torch state); ``spawn`` where there is no ``forkserver`` (Windows).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.curves import Band, Curve, band, bootstrap_band, read_ours, smoothed
from agents.plots import band_curves
from envs.io.config import from_jsonable, to_jsonable
from envs.io.figures import save_figure
from envs.io.files import atomic_write_csv, atomic_write_json
from envs.io.run import RunFolder, holds_run

CONFIDENCE = 0.95
"""Confidence of the bands and intervals."""
EPISODE_WINDOW = 20
"""Tabular agents' training returns are averaged over this many episodes before seeds are compared."""
STATISTICS = ("last", "best", "final_return")
"""What :func:`summarize` reports per seed and over seeds."""


def check_seeds(args: Any, given: Collection[str] | None) -> None:
    """One-line ``ValueError`` for a ``--seeds`` run that cannot start."""
    seed_given = "seed" in given if given is not None else args.seed != 0
    if seed_given:
        raise ValueError("--seed and --seeds exclude each other: --seeds 0 1 2 trains one run per seed")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise ValueError(f"--seeds must be distinct non-negative integers, got {' '.join(map(str, args.seeds))}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if getattr(args, "resume", None) is not None:
        raise ValueError("--resume continues one run: pass one seed's folder (OUT/seed<k>) without --seeds")


def seed_runs(args: Any, out: Path) -> list[Any]:
    """The single-seed arguments of each seed: folder ``out/seed<k>``, no progress bar, no JSON line."""
    return [dataclasses.replace(args, seed=seed, seeds=(), workers=None, out=out / f"seed{seed}", progress=False,
                                json=False) for seed in args.seeds]


def train_one(agent_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Train one seed's run from its arguments as JSON data (what crosses to a worker process)."""
    from agents.commands import TRAIN_COMMANDS, DeepArgs, train_deep, train_tabular

    args = from_jsonable(TRAIN_COMMANDS[agent_name], data, f"{agent_name} arguments")
    return train_deep(args) if isinstance(args, DeepArgs) else train_tabular(args)


def process_context() -> BaseContext:
    """``forkserver`` with the training modules imported once in its server, else ``spawn``."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(["agents.seeds", "agents.commands"])
    return context


def run_all(runs: Sequence[Any], workers: int, progress: bool) -> list[dict[str, Any]]:
    """The summaries of ``runs`` (single-seed arguments), trained ``workers`` at a time; the first failure
    stops the others from starting and is raised as a ``ValueError`` naming its seed."""
    bar = tqdm(total=len(runs), desc="seeds", unit="seed", disable=not progress)
    results: list[dict[str, Any] | None] = [None] * len(runs)
    try:
        if workers == 1:
            for i, run in enumerate(runs):
                results[i] = _labelled(run.seed, lambda run=run: train_one(run.agent_name, to_jsonable(run)))
                bar.update()
        else:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=process_context())
            try:
                futures: dict[Future, int] = {pool.submit(train_one, run.agent_name, to_jsonable(run)): i
                                              for i, run in enumerate(runs)}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        i = futures[future]
                        results[i] = _labelled(runs[i].seed, future.result)
                        bar.update()
            finally:  # after a failure, the seeds not started yet never start
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _labelled(seed: int, work: Any) -> dict[str, Any]:
    try:
        return work()
    except ValueError as err:
        raise ValueError(f"seed {seed}: {err}") from None


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean of ``values`` (one per seed) and its percentile bootstrap interval at :data:`CONFIDENCE`."""
    mean, low, high = bootstrap_band(np.asarray(values, dtype=np.float64)[:, None], CONFIDENCE)
    return {"mean": float(mean[0]), "low": float(low[0]), "high": float(high[0])}


def summarize(seeds: Sequence[int], curves: Sequence[Curve], finals: Sequence[float]) -> tuple[list[dict], dict]:
    """Per seed ``{seed, last, best, best_at, final_return}`` (the curve's last and best points, where the best
    is, the run's own final evaluation), and for each statistic the mean over seeds and its interval."""
    rows = []
    for seed, curve, final in zip(seeds, curves, finals, strict=True):
        best = int(np.nanargmax(curve.y)) if np.isfinite(curve.y).any() else len(curve.y) - 1
        rows.append({"seed": seed, "last": float(curve.y[-1]), "best": float(curve.y[best]),
                     "best_at": float(curve.x[best]), "final_return": float(final)})
    return rows, {name: interval([r[name] for r in rows]) for name in STATISTICS}


def table(rows: Sequence[dict[str, Any]], over: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The rows of ``seeds.csv``: one per seed, then ``mean``, ``ci_low`` and ``ci_high``."""
    keys = {"mean": "mean", "ci_low": "low", "ci_high": "high"}
    return [*rows, *({"seed": name, **{s: over[s][key] for s in STATISTICS}} for name, key in keys.items())]


def train_seeds(args: Any, given: Collection[str] | None = None) -> dict[str, Any]:
    """Train ``args`` once per seed of ``args.seeds`` and write the folder of the module docstring."""
    from agents.commands import DeepArgs, default_out, prepare_deep

    check_seeds(args, given)
    if isinstance(args, DeepArgs):
        args = prepare_deep(args, given)  # the hyperparameters are resolved once, here, for every seed
    out = Path(args.out) if args.out is not None else default_out(args)
    runs = seed_runs(args, out)
    taken = [str(run.out) for run in runs if holds_run(run.out)]
    if taken:
        raise ValueError(f"{', '.join(taken)} already hold{'s' if len(taken) == 1 else ''} a run; choose another --out")
    workers = args.workers or min(len(runs), os.cpu_count() or 1)
    start = time.perf_counter()
    with RunFolder(out, config=dataclasses.replace(args, out=out), tensorboard=False):
        summaries = run_all(runs, min(workers, len(runs)), args.progress)
        read = [read_ours(run.out) for run in runs]
        _, metric, xlabel = read[0]
        window = EPISODE_WINDOW if metric == "training episodes" else 1
        curves = [smoothed(curve, window) for curve, *_ in read]
        rows, over = summarize(args.seeds, curves, [s["mean_return"] for s in summaries])
        for row, summary in zip(rows, summaries, strict=True):
            row.update(seconds=summary["seconds"], out=summary["out"])
        plotted: Band = band(curves, CONFIDENCE)
        ylabel = "greedy evaluation return" if window == 1 else f"training return (mean of {window} episodes)"
        save_figure(band_curves({args.agent_name: plotted}, xlabel=xlabel, ylabel=ylabel, confidence=CONFIDENCE,
                                title=f"{args.agent_name} on {args.env}"), out / "curve.png")
        atomic_write_csv(out / "seeds.csv", table(rows, over))
        atomic_write_json(out / "seeds.json", {
            "agent": args.agent_name, "env": args.env, "metric": metric, "xlabel": xlabel, "confidence": CONFIDENCE,
            "seeds": rows, "over_seeds": over,
            "band": {k: np.asarray(v).tolist() for k, v in plotted._asdict().items() if k != "seeds"}})
    return {"agent": args.agent_name, "env": args.env, "seeds": list(args.seeds), "metric": metric,
            **{f"{name}_{key}": value for name in STATISTICS for key, value in over[name].items()},
            "seconds": time.perf_counter() - start, "curve": str(out / "curve.png"), "out": str(out)}
