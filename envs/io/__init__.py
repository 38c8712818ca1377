"""Layer 0 of every package: run output, torch-free (torch is imported only to write a checkpoint).

Each module has one job: :mod:`~envs.io.files` atomic writes, :mod:`~envs.io.checkpoint` checkpoint
files and :mod:`~envs.io.arrays` NumPy files that cannot run code, :mod:`~envs.io.config` the one config serialiser, :mod:`~envs.io.run` the
run folder, :mod:`~envs.io.tracking` its TensorBoard and W&B logs, :mod:`~envs.io.video` the one MP4
writer, :mod:`~envs.io.figures` the one figure helper,
:mod:`~envs.io.page` the demo page and :mod:`~envs.io.cli` the command-line helpers. Names load on
first use (PEP 562), so ``import envs.io`` costs nothing until they are needed.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "files": ("TEMP_MARK", "atomic_path", "atomic_write_bytes", "atomic_write_csv", "atomic_write_json",
              "atomic_write_text", "csv_text", "remove_stale_temporaries"),
    "checkpoint": ("load_checkpoint", "pack", "save_checkpoint", "unpack"),
    "arrays": ("read_npy", "read_npz"),
    "config": ("differences", "dumps", "from_jsonable", "loads", "resumed", "to_jsonable"),
    "run": ("BEST", "CHECKPOINT", "CONFIG", "METRICS", "RunFolder", "TrainingDiverged", "holds_run", "numbered", "opened", "resume_config",
            "rng_state", "set_rng_state"),
    "tracking": ("EventFile", "start_wandb", "wandb_mode"),
    "video": ("as_frame", "pad_even", "side_by_side", "write_video"),
    "figures": ("image_grid", "learning_curves", "moving_average", "save_figure", "wrap_title"),
    "page": ("write_index", "write_section"),
    "cli": ("config_command", "parse", "report", "run_main", "subcommands"),
}
_LAZY = {name: module for module, names in _NAMES.items() for name in names}
_ALIASES = {"atomic_torch_save": "save_checkpoint", "load_torch_checkpoint": "load_checkpoint"}  # earlier names


def __getattr__(name: str) -> Any:
    target = _ALIASES.get(name, name)
    if target in _LAZY:
        return getattr(importlib.import_module(f"envs.io.{_LAZY[target]}"), target)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_LAZY, *_ALIASES, *_NAMES])


__all__ = [*_LAZY, *_ALIASES]  # noqa: PLE0604 - lazily loaded
