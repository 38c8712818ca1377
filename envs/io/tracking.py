"""Tracking a run outside its ``metrics.csv``: TensorBoard event files and Weights & Biases (notes: the run
folder of :mod:`envs.io.run`, which decides when each is on).

TensorBoard files are written by the ``tensorboard`` package's own event-file writer, which needs neither torch
nor TensorFlow, so tracking a run imports neither (and nothing at all until a run logs its first row). W&B is imported only for a run that asks for it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envs.io.files import atomic_write_json

TENSORBOARD = "tensorboard"
"""The run folder's subfolder of TensorBoard event files."""
WANDB_ID = "wandb.json"
"""The run folder's record of its W&B run id."""
WANDB_PROJECT = "machine-perception"
"""The W&B project of every run unless ``WANDB_PROJECT`` names another."""


def installed(package: str) -> bool:
    """Whether ``package`` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def tensorboard_ready() -> bool:
    """Whether event files can be written: the ``tensorboard`` package and its protobuf messages import (checked
    when a run folder opens, so that a broken install is a note or an error then, not a crash at the first row)."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
    except Exception:  # noqa: BLE001  (missing, or generated code that the installed protobuf rejects)
        return False
    return True


_notes: set[str] = set()


def note_once(text: str) -> None:
    """Print ``text`` to stderr the first time this process asks, never again."""
    if text not in _notes:
        _notes.add(text)
        print(text, file=sys.stderr)


def check_image(image: np.ndarray) -> np.ndarray:  # uint8 [H, W, 3] or [H, W]
    """``image`` as a uint8 array ``[H, W, 3]`` (RGB) or ``[H, W]`` (grey), else a one-line ``ValueError``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or not image.size:
        raise ValueError(f"image must be uint8 [H, W, 3] or [H, W], got {image.dtype} {list(image.shape)}")
    return image


class EventFile:
    """One TensorBoard event file in ``folder``, written by the ``tensorboard`` package's own
    ``EventFileWriter`` (torch-free: no torch, no TensorFlow), flushed after every row so a killed run keeps
    what it logged. ``purge_step`` starts the file with the session-start marker that makes TensorBoard drop
    every earlier event at that step or later (what a killed run wrote after its last checkpoint)."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import SessionLog
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        folder.mkdir(parents=True, exist_ok=True)
        # The writer names files by the second they open; the part number keeps a resumed run's file after the
        # earlier ones even within one second (TensorBoard reads them in name order).
        part = len(list(folder.glob("events.out.tfevents.*")))
        self._writer = EventFileWriter(str(folder), filename_suffix=f".{part:04d}")
        if purge_step is not None:
            self._add(step=purge_step, session_log=SessionLog(status=SessionLog.START))

    def _add(self, **fields: Any) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer.add_event(Event(wall_time=time.time(), **fields))
        self._writer.flush()

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        self._add(step=step, summary=Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:  # uint8 [H, W, 3] or [H, W]
        import imageio.v3 as iio
        from tensorboard.compat.proto.summary_pb2 import Summary

        png = iio.imwrite("<bytes>", image, extension=".png")
        picture = Summary.Image(height=image.shape[0], width=image.shape[1], colorspace=3 if image.ndim == 3 else 1,
                                encoded_image_string=png)
        self._add(step=step, summary=Summary(value=[Summary.Value(tag=tag, image=picture)]))

    def close(self) -> None:
        self._writer.close()


def wandb_mode(environ: Mapping[str, str] | None = None) -> str:
    """``WANDB_MODE`` when set; else ``online`` when an API key is configured (``WANDB_API_KEY``, or a
    ``~/.netrc`` entry for the W&B host as ``wandb login`` writes), ``offline`` otherwise."""
    import netrc
    from urllib.parse import urlparse

    environ = os.environ if environ is None else environ
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    if environ.get("WANDB_API_KEY"):
        return "online"
    host = urlparse(environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return "online" if netrc.netrc().authenticators(host) else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


def start_wandb(path: Path, config: Mapping[str, Any] | None) -> Any:
    """A W&B run for the run folder ``path``, named after it and configured with ``config`` (its ``config.json``),
    files in ``path/wandb``, mode :func:`wandb_mode`. Its id is kept in ``path/wandb.json``, so a resumed run
    continues the same W&B run (``resume="allow"``; W&B drops rows at steps it already holds)."""
    import wandb

    stored = _read_json(path / WANDB_ID)
    run_id = stored.get("id") if isinstance(stored.get("id"), str) else None
    if run_id is None:
        run_id = secrets.token_hex(4)  # not the global random generators: a resume must draw the same numbers
        atomic_write_json(path / WANDB_ID, {"id": run_id})
    run = wandb.init(project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT, dir=str(path), name=path.name,
                     config=dict(config) if config is not None else None, id=run_id, resume="allow",
                     mode=wandb_mode(), reinit="create_new")
    _open_wandb_runs.append(run)
    return run


_open_wandb_runs: list[Any] = []


def finish_wandb(run: Any) -> None:
    """Finish a run of :func:`start_wandb`; when it was the process's last open one, also wait until W&B has
    written everything (``wandb.teardown``): ``run.finish()`` alone returns before an offline run's file is
    complete."""
    import wandb

    run.finish()
    if run in _open_wandb_runs:
        _open_wandb_runs.remove(run)
    if not _open_wandb_runs:
        wandb.teardown()


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; an empty dict when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
