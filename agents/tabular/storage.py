"""Reading agent files: the ``.npz`` layout written by :meth:`agents.tabular.base.TabularAgent.save`."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

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
    unreadable = (zipfile.BadZipFile, EOFError, OSError, ValueError)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                arrays = {key: data[key] for key in data.files}
    except unreadable as error:
        raise ValueError(
            f"agent file {path} is truncated or not a valid .npz ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"agent file {path} holds a single .npy array, not an .npz archive")
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise ValueError(f"agent file {path} is missing {', '.join(missing)}; is it an agent file?")
    return arrays
