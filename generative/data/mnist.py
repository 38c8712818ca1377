"""MNIST from its IDX files (LeCun et al., 1998), read without pickle into the digits' ``Split``.

IDX layout (all integers big-endian):

    bytes 0-1   0x00 0x00
    byte  2     dtype code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 .. 4+4d   d sizes, uint32 each
    then        prod(sizes) items of the dtype, row-major

A file ending in ``.gz`` is gzip-compressed. Anything else (a wrong magic number, an unknown dtype code,
too few or too many bytes, a broken gzip stream) is refused with one line naming the file. Nothing is
downloaded: ``load_mnist(folder)`` reads the four standard files that the user put there.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from generative.data.digits import Form, Split, split_raw

MNIST_VAL_SIZE = 5000
"""Default validation images carved from MNIST's 60000 training images."""
MNIST_LEVELS = 256
"""Intensity levels of MNIST (0..255)."""
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The standard file names (each may also end in ``.gz``)."""

_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_DTYPES = {np.dtype(v).newbyteorder("="): k for k, v in _CODES.items()}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: not a readable IDX file ({type(error).__name__}: {error})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array stored in the IDX bytes ``data`` (native byte order); ``name`` appears in errors."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000xxyy)")
    code, ndim = data[2], data[3]
    if code not in _CODES:
        raise ValueError(f"{name}: unknown IDX dtype code 0x{code:02x} (expected one of 08 09 0b 0c 0d 0e)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, the {ndim} sizes need {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_CODES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing bytes in"
        raise ValueError(f"{name}: {kind} IDX file of shape {shape}: {len(data)} bytes, expected {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzip-compressed if it ends in ``.gz``)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (dtype uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _DTYPES:
        raise ValueError(f"array: IDX stores uint8, int8, int16, int32, float32 or float64, got {array.dtype}")
    if array.ndim > 255:
        raise ValueError(f"array: IDX stores at most 255 dimensions, got {array.ndim}")
    code = _DTYPES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=_CODES[code]).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed if ``path`` ends in ``.gz``); returns ``path``."""
    path = Path(path)
    data = idx_bytes(array)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"{folder}: no {stem} or {stem}.gz (MNIST is read from the four standard IDX files)")


def read_mnist_arrays(folder: str | Path) -> dict[str, np.ndarray]:
    """The four MNIST arrays of ``folder``: images ``[N, 28, 28]`` uint8 and labels ``[N]`` uint8, checked."""
    folder = Path(folder)
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{folder}: {part} images must be [N, H, W] and labels [N], got {images.shape} and {labels.shape}"
            )
        if images.dtype != np.uint8 or labels.dtype != np.uint8 or labels.size and labels.max() > 9:
            raise ValueError(f"{folder}: {part} images and labels must be uint8 with labels 0..9")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise ValueError(
            f"{folder}: train and test images differ in size, {arrays['train_images'].shape[1:]} and "
            f"{arrays['test_images'].shape[1:]}"
        )
    return arrays


def load_mnist(folder: str | Path, val_size: int = MNIST_VAL_SIZE, val_seed: int = 0, form: Form = "float",
               dequantise_seed: int = 0) -> Split:
    """MNIST from the IDX files in ``folder``: the standard test set, and a stratified validation set of
    ``val_size`` images (seed ``val_seed``) carved from the training set; images ``[N, 1, 28, 28]``."""
    arrays = read_mnist_arrays(folder)
    return split_raw(
        arrays["train_images"][:, None].astype(np.int64),
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][:, None].astype(np.int64),
        arrays["test_labels"].astype(np.int64),
        MNIST_LEVELS,
        val_size,
        val_seed,
        form,
        dequantise_seed,
    )
