"""Checkpoint files that cannot run code when they are read.

A checkpoint is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, whose
unpickler only rebuilds tensors and plain containers: a downloaded ``checkpoint.pt`` carrying a
pickled payload is refused, not executed. What goes in is checked before anything is written
(:func:`pack`): tensors, numbers, strings, ``None``, lists, tuples and dicts with string keys.
numpy arrays and scalars are converted (arrays to tensors under a marker, so :func:`unpack` gives
back the same array); anything else (an environment, a dataclass, a lambda) is a ``TypeError``
that names where it sits, so a class can never sneak into a file that would then fail to load.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from envs.io.files import atomic_path

NUMPY = "__numpy__"
"""Key of a packed numpy array: ``{NUMPY: tensor}`` or, for string arrays, ``{NUMPY: list, "dtype": str}``."""

_SCALARS = (str, int, float, bool, type(None))


def pack(obj: Any, where: str = "state") -> Any:
    """``obj`` with numpy arrays and scalars turned into storable values; ``TypeError`` for anything
    that ``torch.load(weights_only=True)`` could not read back (the message names the key path)."""
    import torch

    if isinstance(obj, _SCALARS) or isinstance(obj, (torch.Tensor, torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "US":
            return {NUMPY: obj.tolist(), "dtype": obj.dtype.str}
        if obj.dtype.kind not in "biuf" and obj.dtype != np.bool_:
            raise TypeError(f"{where}: numpy arrays of dtype {obj.dtype} cannot be stored in a checkpoint")
        return {NUMPY: torch.from_numpy(np.array(obj, copy=True, order="C"))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: dict keys must be strings or integers, got {type(key).__name__} {key!r}")
            out[key] = pack(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [pack(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(
        f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot go into a checkpoint (only tensors, "
        "numbers, strings, None, lists, tuples, dicts and numpy arrays); store its data instead"
    )


def unpack(obj: Any) -> Any:
    """Inverse of :func:`pack`: packed numpy arrays come back as numpy arrays, the rest unchanged."""
    if isinstance(obj, dict):
        if NUMPY in obj:
            value = obj[NUMPY]
            if "dtype" in obj:
                return np.array(value, dtype=np.dtype(obj["dtype"]))
            return value.numpy().copy()
        return {key: unpack(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [unpack(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(unpack(value) for value in obj)
    return obj


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Check and pack ``state``, then ``torch.save`` it to ``path`` atomically; returns the path."""
    import torch

    packed = pack(state)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(packed, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without running any code from it.

    A missing, truncated, corrupted or foreign file, or one whose pickle asks for anything beyond
    tensors and plain containers, is a ``ValueError`` of one line that names the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # garbage may name a pickle protocol; torch warns before it fails
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location=map_location)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        reason = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise ValueError(
            f"checkpoint {path} was refused: it asks to load code or objects that a checkpoint never holds "
            f"({reason.strip()[:160]}); it is corrupted or not safe to open"
        ) from None
    except Exception as err:  # noqa: BLE001  (garbage reaches IndexError, struct.error, ... in the unpickler)
        text = str(err).strip()
        reason = f"{type(err).__name__}: {text.splitlines()[0][:160]}" if text else type(err).__name__
        raise ValueError(f"checkpoint {path} cannot be read (truncated or not a checkpoint): {reason}") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dictionary")
    return unpack(state)
