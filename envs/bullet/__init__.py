"""PyBullet environments: a cart-pole and a two-link reacher, from state or from pixels.

The ids live in :data:`BULLET_ENVIRONMENTS` (same format as :data:`envs.registration.ENVIRONMENTS`).
This module does not import PyBullet (an optional extra, ``pip install machine-perception[bullet]``):
the classes load on first use, so the ids can be registered without it. The modules that use it load it
with :func:`import_pybullet`, which keeps its build-time banner off the terminal.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import tempfile
from types import ModuleType
from typing import Any

BANNER = "pybullet build time:"
"""Start of the line PyBullet's C code prints when it is imported."""

# id -> (entry point, max_episode_steps, kwargs)
BULLET_ENVIRONMENTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mp/BulletCartPole-v0": ("envs.bullet.cartpole:BulletCartPoleEnv", 500, {}),
    "mp/BulletReacher-v0": ("envs.bullet.reacher:BulletReacherEnv", 50, {}),
}

_LAZY = {
    "BulletEnv": "envs.bullet.base", "Camera": "envs.bullet.base",
    "BulletCartPoleEnv": "envs.bullet.cartpole", "cartpole_accelerations": "envs.bullet.cartpole",
    "BulletReacherEnv": "envs.bullet.reacher", "ScriptedReacher": "envs.bullet.reacher",
    "forward_kinematics": "envs.bullet.reacher", "inverse_kinematics": "envs.bullet.reacher",
}


def import_pybullet() -> ModuleType:
    """``import pybullet``, without the ``pybullet build time: ...`` line its C code prints on import."""
    return import_quietly("pybullet", BANNER)


def import_quietly(name: str, banner: str) -> ModuleType:
    """``importlib.import_module(name)`` with the output lines that start with ``banner`` dropped.

    A C ``printf`` bypasses ``sys.stdout``, so file descriptors 1 and 2 point at temporary files
    during the import (C buffers flushed before they are restored); everything else the import
    printed, a warning or an error, is written back to the real stdout and stderr, and an exception
    propagates as usual. Where the descriptors cannot be redirected, the import happens as is.
    """
    if name in sys.modules:
        return sys.modules[name]
    with contextlib.ExitStack() as stack:
        try:
            captured = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(2)]
            saved = [os.dup(1), os.dup(2)]
        except OSError:
            return importlib.import_module(name)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            for fd, file in zip((1, 2), captured):
                os.dup2(file.fileno(), fd)
            return importlib.import_module(name)
        finally:
            _flush_c_streams()
            for fd, original in zip((1, 2), saved):
                os.dup2(original, fd)
                os.close(original)
            for stream, file in zip((sys.stdout, sys.stderr), captured):
                file.seek(0)
                text = file.read().decode(errors="replace")
                rest = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(banner))
                if rest and stream is not None:
                    stream.write(rest)
                    stream.flush()


def _flush_c_streams() -> None:
    """``fflush(NULL)``: C's stdio buffers reach the descriptors before those are switched back."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: PLE0604 - the lazily loaded names are strings too
    "BULLET_ENVIRONMENTS", "import_pybullet", *_LAZY,
]
