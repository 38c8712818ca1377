"""The run folder: one training run per folder, with everything needed to inspect and resume it.

``RUN/``
  ``config.json``    the resolved configuration (:mod:`envs.io.config`), written when the run starts
  ``metrics.csv``    one row per log step (rewritten atomically)
  ``tensorboard/``   the same rows as scalars and the images of :meth:`RunFolder.log_image`, by default
  ``wandb.json``     the id of the run's Weights & Biases run (``wandb=True``), kept so a resume continues it;
                     W&B's own files go to ``wandb/``
  ``checkpoint.pt``  the latest state (:mod:`envs.io.checkpoint`: tensors and plain data only)
  ``best.pt``        the state at the best evaluation, for loops that keep one
  ``.lock``          the owner's pid and host while the run is open

Rules a careless user is protected by: a second process cannot open a folder that is in use (a
stale lock, left by a killed process, is detected and replaced); a fresh run refuses a folder that
already holds one; ``resume`` refuses a folder without a checkpoint; leftovers of writers killed
mid-way are removed on the next start; the rows of ``metrics.csv`` and the elapsed seconds are part
of the checkpoint, so a resumed run writes the same file as an uninterrupted one and its clock
keeps counting. ``envs`` is the lowest package, so the folder is torch-free until a checkpoint is
written: TensorBoard files are written by the ``tensorboard`` package's own (torch-free) event-file writer.

Tracking: TensorBoard is on by default when the ``tensorboard`` package is installed (without it, one
note and no log; asked for explicitly, a one-line error); W&B when asked for (``wandb=True``), offline
unless an API key is configured (``WANDB_MODE`` overrides). The event files are opened at the first
row, so a resumed run's new file starts with a purge marker at the step after its checkpoint's last
row: TensorBoard drops what the killed run wrote after that, and no curve shows a step twice.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import random
import socket
import sys
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from envs.io.checkpoint import load_checkpoint, save_checkpoint
from envs.io.config import dumps, resumed
from envs.io.files import atomic_write_csv, atomic_write_text, remove_stale_temporaries
from envs.io.tracking import (
    TENSORBOARD,
    EventFile,
    check_image,
    finish_wandb,
    installed,
    note_once,
    start_wandb,
    tensorboard_ready,
)

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
LOCK = ".lock"
RUN_FILES = (CONFIG, CHECKPOINT, METRICS)
"""A folder holding any of these holds a run."""


class TrainingDiverged(ValueError):
    """A loss became NaN or infinite; the run stopped and the last good checkpoint is kept."""


def holds_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` already holds (part of) a run."""
    return any((Path(path) / name).exists() for name in RUN_FILES)


def numbered(path: str | os.PathLike[str]) -> Path:
    """``path`` if it holds no run, else the first of ``path-2``, ``path-3``, ... that holds none.

    For default output folders, so re-running a command never overwrites an earlier run.
    """
    path = Path(path)
    candidate, n = path, 1
    while holds_run(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


# ---------------------------------------------------------------------- random states
def rng_state() -> dict[str, Any]:
    """Every global random state a run may draw from: torch (CPU and each CUDA device), numpy's
    legacy global generator and Python's ``random``; plain data for a checkpoint."""
    import torch

    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": list(np.random.get_state(legacy=True)),
        "python": list(random.getstate()),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    import torch

    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state((str(numpy_state[0]), np.asarray(numpy_state[1], dtype=np.uint32), *numpy_state[2:]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------- the lock
def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(lock: Path) -> dict[str, Any]:
    try:
        owner = json.loads(lock.read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _release(lock: Path, pid: int) -> None:
    if _read_lock(lock).get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


class RunFolder:
    """One run's folder: lock, ``config.json``, ``metrics.csv``, checkpoints and the run's clock.

    Arguments:
        path: the folder (created if needed).
        config: the resolved configuration (a dataclass or JSON-ready data); written to
            ``config.json`` when a run starts. On resume the stored one is kept and is in
            :attr:`stored_config`.
        resume: continue the run in ``path``; it must hold a ``checkpoint.pt``.
        writer: ``False`` for the processes of a distributed run other than rank 0: they neither
            lock nor write, but can read the checkpoint.
        tensorboard: also write every row of ``metrics.csv`` as TensorBoard scalars, and the images of
            :meth:`log_image`, to ``path/tensorboard``. ``None`` (the default): when the ``tensorboard``
            package is installed (else one note on stderr); ``True`` without the package is an error.
        wandb: also log the rows and images to Weights & Biases (:func:`envs.io.tracking.start_wandb`).

    Use it as a context manager (or call :meth:`close`) so the lock is released and the trackers flushed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config: Any = None,
        resume: bool = False,
        writer: bool = True,
        tensorboard: bool | None = None,
        wandb: bool = False,
    ) -> None:
        self.path = Path(path)
        self.writer, self.resume = writer, resume
        self.rows: list[dict[str, Any]] = []
        self.stored_config: dict[str, Any] | None = None
        self._offset, self._start = 0.0, time.perf_counter()
        self._tensorboard = False  # whether rows go to TensorBoard; the file opens at the first one
        self._events: EventFile | None = None
        self._purge_step: int | None = None
        self._wandb: Any = None
        self._finalizer: weakref.finalize | None = None
        if resume and not self.path.is_dir():
            raise ValueError(f"resume: {self.path} does not exist, so there is no run to resume")
        if writer:  # the lock first: a second process is told that the folder is in use
            self.path.mkdir(parents=True, exist_ok=True)
            self._acquire()
        try:
            self._check_contents(resume)
            if writer:
                remove_stale_temporaries(self.path, recursive=True)
                if not resume and config is not None:
                    atomic_write_text(self.path / CONFIG, dumps(config))
            self.track(tensorboard=tensorboard, wandb=wandb)
        except BaseException:
            self.close()
            raise

    def _check_contents(self, resume: bool) -> None:
        if resume:
            if not (self.path / CHECKPOINT).is_file():
                raise ValueError(
                    f"resume: {self.path} holds no {CHECKPOINT}, so there is nothing to resume (start a fresh run "
                    "without --resume, into an empty folder)"
                )
            if (self.path / CONFIG).is_file():
                try:
                    self.stored_config = json.loads((self.path / CONFIG).read_text())
                except ValueError as err:
                    raise ValueError(f"{self.path / CONFIG} is not valid JSON: {err}") from None
        elif self.writer and holds_run(self.path):  # the other ranks of a torchrun launch see rank 0's new files
            found = ", ".join(name for name in RUN_FILES if (self.path / name).exists())
            raise ValueError(
                f"{self.path} already holds a run ({found}); pass --resume to continue it, or choose another --out"
            )

    # ------------------------------------------------------------------ lock
    def _acquire(self) -> None:
        lock = self.path / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_lock(lock)
                pid, host = owner.get("pid"), owner.get("host")
                stale = isinstance(pid, int) and host == me["host"] and pid != me["pid"] and not _process_alive(pid)
                if not owner or stale:  # unreadable (killed while writing it) or its process is gone
                    with contextlib.suppress(FileNotFoundError):
                        lock.unlink()
                    continue
                where = "this process" if pid == me["pid"] and host == me["host"] else f"process {pid} on {host}"
                raise ValueError(
                    f"run folder {self.path} is in use by {where} since {owner.get('started', '?')}; wait for it to "
                    f"finish or choose another --out (if that process is gone, delete {lock})"
                ) from None
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self._finalizer = weakref.finalize(self, _release, lock, me["pid"])
            return
        raise ValueError(f"run folder {self.path}: could not take the lock {lock}")

    def close(self) -> None:
        """Close TensorBoard's file, finish the W&B run and release the lock; calling it again does nothing."""
        self.track(tensorboard=False, wandb=False)
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self) -> RunFolder:  # noqa: PYI034  (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tracking
    def track(self, *, tensorboard: bool | None = None, wandb: bool = False) -> None:
        """Choose the trackers (the arguments of the constructor; a fit applies its config's choice with it).
        A tracker asked for without its package is a one-line ``ValueError`` in every process; only the
        writer opens files. Turning one off closes it (TensorBoard's file, the W&B run)."""
        if wandb and not installed("wandb"):
            raise ValueError("--wandb needs the wandb package: pip install wandb")
        if tensorboard and not tensorboard_ready():
            raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard")
        if tensorboard is None:
            tensorboard = tensorboard_ready()
            if not tensorboard and self.writer:
                note_once("note: the tensorboard package is not installed, so runs write no TensorBoard log "
                          "(pip install tensorboard)")
        self._tensorboard = bool(tensorboard and self.writer)
        if not self._tensorboard and self._events is not None:
            self._events.close()
            self._events = None
        if wandb and self.writer and self._wandb is None:
            config = json.loads((self.path / CONFIG).read_text()) if (self.path / CONFIG).is_file() else None
            self._wandb = start_wandb(self.path, config)
        elif not wandb and self._wandb is not None:
            finish_wandb(self._wandb)
            self._wandb = None

    @property
    def logs_images(self) -> bool:
        """Whether :meth:`log_image` goes anywhere (a tracker is on in this process), so that a loop can skip
        drawing pictures nobody will see."""
        return self._tensorboard or self._wandb is not None

    def _event_file(self) -> EventFile:
        if self._events is None:
            self._events = EventFile(self.path / TENSORBOARD, self._purge_step)
        return self._events

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:  # image: uint8 [H, W, 3] or [H, W]
        """Show ``image`` under ``tag`` at ``step`` in TensorBoard and W&B (whichever are on; only the writer)."""
        image = check_image(image)
        if self._tensorboard:
            self._event_file().image(tag, image, int(step))
        if self._wandb is not None:
            import wandb

            self._wandb.log({tag: wandb.Image(image)}, step=int(step))

    # ------------------------------------------------------------------ metrics and clock
    @property
    def seconds(self) -> float:
        """Seconds the run has been working, summed over every resume."""
        return self._offset + time.perf_counter() - self._start

    def log(self, row: Mapping[str, Any], step_key: str = "step") -> None:
        """Append ``row`` to ``metrics.csv``; its numbers also go to TensorBoard and W&B, against ``row[step_key]``."""
        self.rows.append(dict(row))
        if not self.writer:
            return
        atomic_write_csv(self.path / METRICS, self.rows)
        step = int(row.get(step_key, len(self.rows)))
        values = {k: float(v) for k, v in row.items() if k != step_key and isinstance(v, numbers.Real)}
        if self._tensorboard:
            self._event_file().scalars(values, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the folder: the logged rows and the elapsed seconds."""
        return {"rows": [dict(r) for r in self.rows], "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint: its rows (later rows of a killed run are dropped, in TensorBoard too)
        and its clock."""
        self.rows = [dict(r) for r in state["rows"]]
        self._offset, self._start = float(state["seconds"]), time.perf_counter()
        self._purge_step = int(self.rows[-1].get("step", len(self.rows))) + 1 if self.rows else 0
        if self._events is not None:  # a new file, which starts with the purge marker
            self._events.close()
            self._events = None
        if self.writer and self.rows:
            atomic_write_csv(self.path / METRICS, self.rows)

    # ------------------------------------------------------------------ checkpoints
    def save(self, state: Mapping[str, Any], name: str = CHECKPOINT) -> Path:
        """Write ``state`` (tensors and plain data) to ``path/name`` atomically (only the writer does)."""
        target = self.path / name
        if self.writer:
            save_checkpoint(target, dict(state))
        return target

    def load(self, name: str = CHECKPOINT) -> dict[str, Any]:
        """Read ``path/name`` safely (``torch.load(weights_only=True)``)."""
        return load_checkpoint(self.path / name)


@contextmanager
def opened(run: RunFolder | str | os.PathLike[str], **kwargs: Any) -> Iterator[RunFolder]:
    """``run`` itself when it is an open :class:`RunFolder` (its owner closes it), else a new
    ``RunFolder(run, **kwargs)`` that is closed when the block ends."""
    if isinstance(run, RunFolder):
        yield run
        return
    with RunFolder(run, **kwargs) as folder:
        yield folder


def resume_config(cls: type, folder: str | os.PathLike[str], current: Any, keep: Sequence[str],
                  say: Callable[[str], None] | None = None) -> Any:
    """The configuration a resumed run continues with: ``folder/config.json`` rebuilt as ``cls``, except
    the dotted options in ``keep``, which come from ``current`` (the command line). Every other option in
    which ``current`` differs is ignored and named in one note to ``say`` (stderr by default)."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file():
        raise ValueError(f"resume: {folder} holds no {CONFIG}, so the options of its run are unknown")
    try:
        stored = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    merged, ignored = resumed(cls, stored, current, keep, str(path))
    if ignored:
        note = (f"note: resuming {folder} with its stored {CONFIG}; these options differ here and are ignored: "
                + ", ".join(ignored))
        (say or (lambda text: print(text, file=sys.stderr)))(note)
    return merged
