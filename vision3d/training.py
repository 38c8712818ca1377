"""The one fitting loop of vision3d: every method (occupancy, DeepSDF, IGR, DVR) is an ``Objective``.

An objective owns its modules and data and computes ``loss(step, generator)``; ``fit`` runs Adam
(per-group learning rates allowed) with a cosine or constant schedule, shows a progress bar with the
loss, logs, checkpoints atomically, resumes, and stops cleanly on a non-finite loss.

Run folder:
  ``metrics.csv``    step, lr, seconds and the mean of every logged term since the previous row
  ``checkpoint.pt``  the modules' state_dicts, the optimizer and schedule, the step, the batch
                     generator and the torch random state, and the per-step loss history

Reproducibility: batches are drawn inside the objective from the ``torch.Generator`` that ``fit``
seeds from ``FitConfig.seed`` and stores in the checkpoint, so a resumed run continues with exactly
the numbers of an uninterrupted one. Build the objective's modules after ``seed_everything(seed)``
on the device ``resolve_device(config.device)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from envs.io import atomic_torch_save, atomic_write_csv, load_torch_checkpoint

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite; the run stopped and the last good checkpoint is kept."""


@dataclass
class FitConfig:
    """How long and how fast to fit, and how to watch the run."""

    steps: int = 2000
    """Optimisation steps in total (also when resuming)."""
    lr: float = 1e-3
    """Adam learning rate (parameter groups may scale their own)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule over ``steps``: cosine decay to ``lr * lr_min_ratio``, or constant."""
    lr_min_ratio: float = 0.05
    """Final learning rate of the cosine schedule, as a fraction of the initial one."""
    seed: int = 0
    """Seed of the initialisation and of the batch generator."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to fit; ``auto`` picks CUDA when available."""
    log_every: int = 50
    """Steps between rows of ``metrics.csv``."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    progress: bool = True
    """Show a progress bar with the loss."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError(
                f"steps, log_every and checkpoint_every must be >= 1, got steps={self.steps}, "
                f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}"
            )
        if self.lr <= 0 or not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"lr must be > 0 and lr_min_ratio in [0, 1], got {self.lr}, {self.lr_min_ratio}")


class Objective(Protocol):
    """What ``fit`` optimises: modules (saved in checkpoints), Adam parameter groups and a loss."""

    def modules(self) -> dict[str, nn.Module]:
        """The modules whose state_dicts are checkpointed (networks, code embeddings)."""
        ...

    def param_groups(self) -> list[dict[str, Any]]:
        """Adam parameter groups: ``{"params": [...]}`` with an optional ``"lr"`` of their own."""
        ...

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss of ``step`` (batches drawn from ``generator``) and the terms to log."""
        ...


class FitResult(NamedTuple):
    """What a fit did: the steps run, the final loss, the per-step losses and the logged rows."""

    steps: int
    final_loss: float
    losses: list[float]  # loss of every step from the first (also across a resume)
    rows: list[dict[str, float]]  # the rows of metrics.csv
    run_dir: Path


@dataclass
class FittedShape:
    """A fitted shape: ``sdf`` maps float32 points ``[N, 3]`` to ``[N]``, negative inside, surface at 0."""

    name: str
    sdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def as_paths(data: str | Path | Sequence[str | Path], name: str = "data") -> list[Path]:
    """One data folder or several, as a non-empty list of existing folders."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if not items:
        raise ValueError(f"{name}: expected at least one data folder, got none")
    paths = [Path(item) for item in items]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ValueError(f"{name}: expected existing data folders, these are missing: {', '.join(missing)}")
    return paths


def seed_everything(seed: int) -> None:
    """Seed torch's global generators (module initialisation) and numpy's legacy one."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def lr_factor(step: int, steps: int, schedule: str, lr_min_ratio: float) -> float:
    """Multiplier of the learning rate at ``step``: 1 (constant) or a cosine from 1 to ``lr_min_ratio``."""
    if schedule == "constant":
        return 1.0
    progress = min(step / steps, 1.0)
    return lr_min_ratio + (1.0 - lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def load_modules(run_dir: Path, modules: dict[str, nn.Module]) -> int:
    """Load the modules of ``run_dir/checkpoint.pt`` into ``modules``; returns the checkpoint's step."""
    state = load_torch_checkpoint(Path(run_dir) / CHECKPOINT, map_location="cpu")
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    return int(state["step"])


def fit(objective: Objective, config: FitConfig, run_dir: Path, resume: bool = False, desc: str = "fit") -> FitResult:
    """Minimise ``objective.loss`` with Adam for ``config.steps`` steps; see the module docstring."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / CHECKPOINT
    modules = objective.modules()
    optimizer = torch.optim.Adam(objective.param_groups(), lr=config.lr)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    generator = torch.Generator().manual_seed(config.seed)
    step, losses, rows = 0, [], []
    pending: dict[str, list[float]] = {}  # logged terms since the last row
    elapsed = 0.0
    if resume and checkpoint.exists():
        state = load_torch_checkpoint(checkpoint, map_location="cpu")
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, losses, rows, pending, elapsed = (
            state["step"],
            state["losses"],
            state["rows"],
            state["pending"],
            state["seconds"],
        )

    def snapshot() -> dict[str, Any]:
        return {
            "modules": {name: module.state_dict() for name, module in modules.items()},
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "step": step,
            "losses": list(losses),
            "rows": list(rows),
            "pending": {k: list(v) for k, v in pending.items()},
            "seconds": elapsed,
            "config": config,
        }

    bar = tqdm(total=config.steps, initial=step, desc=desc, unit="step", disable=not config.progress)
    start = time.perf_counter() - elapsed
    while step < config.steps:
        factor = lr_factor(step, config.steps, config.schedule, config.lr_min_ratio)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        loss, terms = objective.loss(step, generator)
        value = float(loss.detach())
        if not math.isfinite(value):
            bar.close()
            raise TrainingDiverged(
                f"{desc}: the loss became {value} at step {step}; stopped. The last good checkpoint is "
                f"{checkpoint if checkpoint.exists() else 'not written yet'}."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(value)
        for key, term in {"loss": value, **terms}.items():
            pending.setdefault(key, []).append(float(term))
        elapsed = time.perf_counter() - start
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            row = {"step": step, "lr": config.lr * factor, "seconds": elapsed}
            row.update({k: float(np.mean(v)) for k, v in pending.items()})
            rows.append(row)
            pending = {}
            atomic_write_csv(run_dir / METRICS, rows)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            atomic_torch_save(checkpoint, snapshot())
    bar.close()
    return FitResult(step, losses[-1] if losses else float("nan"), list(losses), list(rows), run_dir)
