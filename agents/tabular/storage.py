"""Reading agent files: the ``.npz`` layout written by :meth:`agents.tabular.base.TabularAgent.save`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from envs.io.arrays import read_npz

FORMAT_VERSION = 1
"""Version of the ``.npz`` layout written by :meth:`TabularAgent.save`."""

KEYS = (
    "format_version", "name", "config", "options", "Q", "V", "N", "visits", "policy",
    "n_states", "n_actions", "episodes_done",
)  # fmt: skip


def read_agent_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All arrays of an agent file, or a ``ValueError`` naming the file and what is wrong with it."""
    if not Path(path).is_file():
        raise ValueError(f"agent file {path} does not exist")
    try:
        arrays = read_npz(path)
    except ValueError as error:
        raise ValueError(f"agent file {error}") from None
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise ValueError(f"agent file {path} is missing {', '.join(missing)}; is it an agent file?")
    return arrays
