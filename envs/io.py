"""Atomic file output: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written checkpoint, video or picture, and an interrupted run leaves the
previous file intact. ``envs`` is the lowest package, so it owns this helper for everyone above it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with the same suffix as ``path``; on success rename it to ``path``.

    The parent folder is created if needed. On an exception the temporary file is removed and the
    old ``path`` (if any) is left untouched.

    >>> with atomic_path("out/picture.png") as tmp:  # doctest: +SKIP
    ...     figure.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_csv(path: str | os.PathLike[str], rows: list[dict[str, float]]) -> None:
    """Write ``rows`` as CSV atomically; the header is every key, in order of first appearance."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def atomic_torch_save(path: str | os.PathLike[str], state: Any) -> None:
    """``torch.save(state)`` to ``path`` atomically (the training loops' checkpoints)."""
    import torch  # torch is an optional dependency of the packages above; envs itself needs none

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_torch_checkpoint(path: str | os.PathLike[str], map_location: str | None = None) -> dict[str, Any]:
    """``torch.load`` a checkpoint; a missing, truncated or foreign file is a ``ValueError`` naming it."""
    import torch

    try:
        return torch.load(path, weights_only=False, map_location=map_location)
    except (OSError, EOFError, RuntimeError, ValueError) as err:
        raise ValueError(f"checkpoint {path} cannot be read (truncated or not a checkpoint): {err}") from err
