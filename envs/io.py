"""Atomic file output: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written checkpoint, video or picture, and an interrupted run leaves the
previous file intact. ``envs`` is the lowest package, so it owns this helper for everyone above it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
