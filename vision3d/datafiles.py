"""Reading dataset files without trusting them: one-line errors naming the file; nothing read can run code.

The low-level readers behind :mod:`vision3d.dataset`: JSON objects, RGBA images, depth maps and other
``.npy``/``.npz`` arrays (``np.load(..., allow_pickle=False)``, after checking the magic bytes), PLY
headers against the data they declare, rigid camera poses. Each answers a malformed file with a one-line
``ValueError`` that names it (and starts with ``where``, the frame, when the caller gives one); a folder
that an interrupted export left (:data:`IN_PROGRESS`) is refused before anything in it is read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from envs.io.arrays import read_npy, read_npz

IN_PROGRESS = ".export-in-progress.json"
"""Written before an export deletes or writes anything, removed after ``dataset.json``: it lists every
file the export may have left, so the next export can clean an interrupted one, and loaders refuse it."""


def check_finished(folder: Path) -> None:
    """Refuse ``folder`` while it holds the in-progress record of an export."""
    if (folder / IN_PROGRESS).exists():
        raise ValueError(f"{folder} holds an unfinished export ({IN_PROGRESS} is present); render it again")


def dataset_file(root: str | Path, name: str, what: str, hint: str = "") -> Path:
    """``root/name`` when ``root`` is a folder, else ``root``; it must exist, in no unfinished export."""
    path = Path(root)
    path = path / name if path.is_dir() else path
    check_finished(path.parent)
    if not path.is_file():
        raise ValueError(f"no {what} at {path}" + (f" {hint}" if hint else ""))
    return path


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty): errors stay one line."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


_PLY_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
_PLY_SIZES = {
    **dict.fromkeys(("char", "uchar", "int8", "uint8"), 1),
    **dict.fromkeys(("short", "ushort", "int16", "uint16"), 2),
    **dict.fromkeys(("int", "uint", "int32", "uint32", "float", "float32"), 4),
    **dict.fromkeys(("double", "float64"), 8),
}


def check_ply(path: str | Path) -> None:
    """Raise a ``ValueError`` naming ``path`` unless it starts with a valid PLY header and holds the data
    the header declares: all the bytes for binary files whose elements have fixed-size rows, one line per
    element row for ASCII files (binary files with list properties, e.g. faces, are left to the reader)."""
    path = Path(path)
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    end = head.find(b"end_header")
    newline = head.find(b"\n", end)
    if not head.startswith(b"ply") or end < 0 or newline < 0:
        raise ValueError(f"{path} is not a PLY file (no 'ply ... end_header' header)")
    fmt, rows = None, []  # rows: [count, bytes per row or None for list properties]
    for line in head[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) == 3:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            rows.append([int(words[2]), 0])
        elif words[0] == "property" and rows and len(words) >= 3:
            size = None if words[1] == "list" else _PLY_SIZES.get(words[1])
            if words[1] != "list" and size is None:
                raise ValueError(f"{path}: unknown PLY property type {words[1]!r}")
            rows[-1][1] = None if size is None or rows[-1][1] is None else rows[-1][1] + size
        else:
            raise ValueError(f"{path}: malformed PLY header line {line!r}")
    if fmt not in _PLY_FORMATS:
        raise ValueError(f"{path}: PLY format must be one of {_PLY_FORMATS}, got {fmt!r}")
    if fmt == "ascii":
        with open(path, "rb") as file:
            file.seek(newline + 1)
            lines = sum(1 for line in file if line.strip())
        expected = sum(count for count, _ in rows)
        if lines < expected:
            raise ValueError(f"{path} is truncated: the header declares {expected} rows, the file has {lines}")
    elif all(size is not None for _, size in rows):
        expected = newline + 1 + sum(count * size for count, size in rows)
        actual = path.stat().st_size
        if actual < expected:
            raise ValueError(f"{path} is truncated: the header declares {expected} bytes, the file has {actual}")


def load_npy(path: Path, where: str) -> np.ndarray:
    """One array from a ``.npy`` file, never unpickling anything."""
    try:
        return read_npy(path)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of a ``.npz`` file, never unpickling anything."""
    arrays = read_npz(path, keys)
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing}")
    return arrays


def read_json(path: Path) -> dict[str, object]:
    """The JSON object in ``path``."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {first_line(exc)}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    return meta


POSE_ATOL = 1e-3
"""Tolerance of :func:`check_pose` on ``R^T R = I``, ``det R = 1`` and the last row: loose enough for
poses stored in float32 or printed to four decimals, tight enough to catch a scale or a shear."""


def check_pose(matrix: object, where: str) -> np.ndarray:  # -> [4, 4] float64
    """``matrix`` as a rigid camera-to-world pose, or a ``ValueError`` that starts with ``where``: it must
    be 4x4, finite, with last row ``[0, 0, 0, 1]`` and an orthonormal rotation part of determinant +1."""
    try:
        c2w = np.asarray(matrix)
    except ValueError:  # ragged nested lists
        c2w = np.asarray(None)
    if c2w.dtype.kind not in "iuf" or c2w.shape != (4, 4):
        shape = f"shape {c2w.shape}" if c2w.dtype.kind in "iuf" else "values that are not a 4x4 array of numbers"
        raise ValueError(f"{where}: transform_matrix must be 4x4 numbers, got {shape}")
    c2w = c2w.astype(np.float64)
    if not np.isfinite(c2w).all():
        raise ValueError(f"{where}: transform_matrix holds NaN or Inf")
    if np.abs(c2w[3] - (0.0, 0.0, 0.0, 1.0)).max() > POSE_ATOL:
        raise ValueError(f"{where}: transform_matrix last row must be [0, 0, 0, 1], got {c2w[3].tolist()}")
    rotation = c2w[:3, :3]
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    det = np.linalg.det(rotation)
    if error > POSE_ATOL or abs(det - 1.0) > POSE_ATOL:
        raise ValueError(
            f"{where}: transform_matrix is not a rigid pose: its rotation part has max |R^T R - I| = {error:.3g} "
            f"and det {det:.3g} (expected orthonormal, det 1, within {POSE_ATOL})"
        )
    return c2w


def read_transforms(path: Path) -> tuple[float, list[object]]:
    """``camera_angle_x`` (radians in (0, pi)) and the non-empty, unchecked ``frames`` of a NeRF
    ``transforms_<split>.json`` (:func:`check_frame` checks each)."""
    meta = read_json(path)
    if "camera_angle_x" not in meta:
        raise ValueError(f"{path} has no camera_angle_x")
    angle = meta["camera_angle_x"]
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0.0 < angle < math.pi:
        raise ValueError(f"{path}: camera_angle_x must be a number of radians in (0, pi), got {angle!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: frames must be a non-empty list, got {json.dumps(frames)[:40]}")
    return float(angle), frames


def check_frame(frame: object, where: str) -> tuple[str, np.ndarray, str]:  # -> file_path, c2w [4, 4], where
    """The ``file_path`` and rigid ``transform_matrix`` (:func:`check_pose`) of one entry of ``frames``,
    and ``where`` extended with the file path, for the errors about its image and depth map."""
    if not isinstance(frame, dict):
        raise ValueError(f"{where} must be an object with file_path and transform_matrix, got {json.dumps(frame)[:40]}")
    if "file_path" not in frame:
        raise ValueError(f"{where} has no file_path")
    file_path = frame["file_path"]
    if not isinstance(file_path, str) or not file_path:
        raise ValueError(f"{where}: file_path must be a non-empty string, got {file_path!r}")
    where = f"{where} ({file_path})"
    if "transform_matrix" not in frame:
        raise ValueError(f"{where} has no transform_matrix")
    return file_path, check_pose(frame["transform_matrix"], where), where


def read_rgba(path: Path, where: str) -> np.ndarray:  # -> [H, W, 4] float32 in [0, 1]
    """A grey, grey+alpha, RGB or RGBA image (integers scaled by their maximum) as straight-alpha RGBA."""
    try:
        image = np.asarray(imageio.imread(path))
    except Exception as exc:  # imageio and its plugins raise OSError, ValueError, SyntaxError, ...
        raise ValueError(f"{where}: cannot read the image {path}: {first_line(exc)}") from exc
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or image.dtype.kind not in "uif" or image.size == 0:
        raise ValueError(
            f"{where}: {path} must be a grey, grey+alpha, RGB or RGBA image, got {image.dtype} {image.shape}"
        )
    scale = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    image = image.astype(np.float32) / scale
    if image.shape[-1] <= 2:  # grey (+ alpha): repeat the grey channel
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=-1), image[..., 1:]], axis=-1)
    if image.shape[-1] == 3:
        image = np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)
    return image


def read_depth(path: Path, shape: tuple[int, int], where: str) -> np.ndarray:  # -> [H, W] float32
    """A depth map ``.npy`` of ``shape`` (its image's), finite and >= 0 (0 = background)."""
    depth = load_npy(path, where)
    if depth.shape != shape or depth.dtype.kind not in "uif":
        raise ValueError(f"{where}: {path} must be a [{shape[0]}, {shape[1]}] array of numbers like its image, "
                         f"got {depth.dtype} {list(depth.shape)}")
    if not np.isfinite(depth).all() or depth.min() < 0:
        raise ValueError(f"{where}: {path} must hold finite depths >= 0 (0 = background)")
    return depth.astype(np.float32)
