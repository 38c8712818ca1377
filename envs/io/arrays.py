"""NumPy ``.npy``/``.npz`` files read without running code from them, whatever their bytes.

``np.load(..., allow_pickle=False)`` never unpickles, but a truncated or corrupted file still reaches many
corners of the zip, zlib and header parsers (``BadZipFile``, ``zlib.error``, ``NotImplementedError``,
``TokenError``, ...). Every reader of the project goes through these two functions, so each of those is
one ``ValueError`` line that names the file. Arrays are read inside the guard (an ``.npz`` member is only
decompressed when it is read).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:160] if lines else type(err).__name__


def _magic(path: Path, size: int) -> bytes:
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    with open(path, "rb") as file:
        return file.read(size)


def read_npz(path: str | os.PathLike[str], keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (only ``keys`` when given; absent keys are left out, the caller
    names what it misses), or a one-line ``ValueError`` naming the file."""
    path = Path(path)
    if _magic(path, 4) not in ZIP_MAGICS:
        raise ValueError(f"{path} is not a NumPy .npz (zip) file")
    wanted = None if keys is None else set(keys)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files if wanted is None or key in wanted}
    except Exception as err:  # noqa: BLE001  (a broken archive fails with almost any exception type)
        raise ValueError(f"{path}: cannot read the .npz file (truncated or corrupted): {_reason(err)}") from None


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The array of an ``.npy`` file, or a one-line ``ValueError`` naming the file."""
    path = Path(path)
    if _magic(path, len(NPY_MAGIC)) != NPY_MAGIC:
        raise ValueError(f"{path} is not a NumPy .npy file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001  (a broken header fails with almost any exception type)
        raise ValueError(f"cannot read {path} (truncated or corrupted): {_reason(err)}") from None
