"""Atomic file output: write to a temporary file beside the target, flush it to disk, rename it over
the target, then flush the directory entry.

A reader never sees a half-written checkpoint, video or picture; an interrupted run leaves the
previous file intact, and after a power cut the rename is either there with its data or not there
at all. Temporary files carry :data:`TEMP_MARK` in their name, so the leftovers of a killed writer
can be found and removed on the next start (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

TEMP_MARK = ".partial-"
"""Part of every temporary file's name: ``.<name>.partial-<random><suffix>``."""


def _fsync_path(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk; a file system that cannot does nothing."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. directories on some network file systems
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path with the suffix of ``path``; when the block ends without an exception,
    flush it to disk and rename it to ``path``.

    The parent folder is created if needed. On an exception the temporary file is removed and the
    old ``path`` (if any) is left untouched. The suffix is kept so that writers which pick a format
    from the extension (matplotlib, imageio) still do.

    >>> with atomic_path("out/picture.png") as tmp:  # doctest: +SKIP
    ...     figure.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON atomically (NaN and infinities are written as JSON's extensions)."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text; the header is every key, in order of first appearance."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def atomic_write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` as CSV atomically; the header is every key, in order of first appearance."""
    atomic_write_text(path, csv_text(rows))


def remove_stale_temporaries(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Delete the temporary files that writers killed mid-way left in ``folder``; return them.

    Only call this while no other process writes into ``folder`` (a run folder does it after
    taking its lock).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".*{TEMP_MARK}*"
    found = sorted(folder.rglob(pattern) if recursive else folder.glob(pattern))
    removed = []
    for path in found:
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
