"""3D Gaussian splats as the standard PLY file of the Inria code (Kerbl et al., SIGGRAPH 2023), which common
splat viewers open.

The file holds one binary little-endian ``vertex`` element, one row per Gaussian, with float32 properties in
this order (:func:`splat_property_names`)::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

It stores the parameters before their activations, as the optimiser sees them: ``opacity`` is a logit (the
renderer applies a sigmoid), ``scale_*`` are logs (it applies exp), ``rot_*`` is the quaternion ``(w, x, y, z)``,
not necessarily normalised (it normalises). The normals are unused and written as zeros. ``K = (degree + 1)^2``
is the number of spherical-harmonic coefficients per colour channel (16 for degree 3).

The SH order: ``f_dc_c = sh[:, 0, c]``, and ``f_rest`` is channel-major, ``f_rest_{c (K-1) + k-1} = sh[:, k, c]``
for ``k >= 1``. The reference ``GaussianModel.save_ply`` (graphdeco-inria/gaussian-splatting,
``scene/gaussian_model.py``) keeps ``_features_rest`` as ``[N, K-1, 3]`` and writes
``_features_rest.transpose(1, 2).flatten(start_dim=1)``, i.e. ``[N, 3, K-1]`` flattened; its ``load_ply``
reshapes the sorted ``f_rest_*`` columns back to ``[N, 3, K-1]``.

:func:`read_splat_ply` reads any PLY whose ``vertex`` element has these properties, in any order, ascii or
binary, float or double, ignoring the normals and any extra property; a malformed file is answered with a
one-line ``ValueError`` that names it. Arrays in and out are NumPy float32, so this module needs no torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.lib.recfunctions import unstructured_to_structured
from plyfile import PlyData, PlyElement

from envs.io.files import atomic_path
from vision3d.datafiles import check_ply, first_line


class SplatArrays(NamedTuple):
    """The parameters of ``N`` Gaussians, before activation (float32)."""

    means: np.ndarray  # [N, 3] centres
    log_scales: np.ndarray  # [N, 3] log standard deviations along the Gaussian's axes
    quaternions: np.ndarray  # [N, 4] rotation (w, x, y, z), not necessarily normalised
    opacity_logits: np.ndarray  # [N] logit of the opacity
    sh: np.ndarray  # [N, K, 3] SH coefficients per RGB channel, K = (degree + 1)^2

    @property
    def sh_degree(self) -> int:
        """The spherical-harmonics degree, ``sqrt(K) - 1``."""
        return math.isqrt(self.sh.shape[1]) - 1


def splat_property_names(K: int) -> list[str]:
    """The ``vertex`` properties of a splat PLY with ``K`` SH coefficients per channel, in the file's order."""
    return [
        "x", "y", "z", "nx", "ny", "nz",
        *(f"f_dc_{c}" for c in range(3)),
        *(f"f_rest_{i}" for i in range(3 * (K - 1))),
        "opacity",
        *(f"scale_{i}" for i in range(3)),
        *(f"rot_{i}" for i in range(4)),
    ]  # fmt: skip


def _is_square(K: int) -> bool:
    return K >= 1 and math.isqrt(K) ** 2 == K


def _array(value: object, field: str) -> np.ndarray:
    """``np.asarray(value)``, with a ``ValueError`` naming ``field`` for ragged nested sequences."""
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(f"{field} must be an array of numbers, got ragged nested sequences") from None


def _as_float32(value: object, field: str, shape: tuple[int | None, ...], spelled: str) -> np.ndarray:
    """``value`` as a finite float32 array of ``shape`` (``None``: any size), or a ``ValueError`` naming
    ``field``, the expected shape ``spelled`` out and the shape it has."""
    array = _array(value, field)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{field} must be a real {spelled} array, got dtype {array.dtype}")
    if array.ndim != len(shape) or any(want is not None and have != want for have, want in zip(array.shape, shape)):
        raise ValueError(f"{field} must be {spelled}, got shape {list(array.shape)}")
    with np.errstate(over="ignore"):  # doubles beyond float32's range become inf, refused just below
        array = array.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)) if array.size else []
    if len(bad):
        raise ValueError(f"{field} {spelled} holds NaN, Inf or a value beyond float32's range (first in row {bad[0]})")
    return array


def check_splats(splats: SplatArrays) -> SplatArrays:
    """``splats`` as finite float32 arrays of consistent shapes, or a ``ValueError`` naming the field."""
    means = _as_float32(splats.means, "means", (None, 3), "[N, 3]")
    N = len(means)
    sh = _array(splats.sh, "sh")
    if sh.ndim != 3 or sh.shape[0] != N or sh.shape[2] != 3 or not _is_square(sh.shape[1]):
        raise ValueError(f"sh must be [N, K, 3] with N = {N} (from means) and K = (degree + 1)^2 in 1, 4, 9, 16, "
                         f"..., got shape {list(sh.shape)}")
    return SplatArrays(
        means=means,
        log_scales=_as_float32(splats.log_scales, "log_scales", (N, 3), f"[N, 3] with N = {N}"),
        quaternions=_as_float32(splats.quaternions, "quaternions", (N, 4), f"[N, 4] with N = {N}"),
        opacity_logits=_as_float32(splats.opacity_logits, "opacity_logits", (N,), f"[N] with N = {N}"),
        sh=_as_float32(sh, "sh", sh.shape, f"[N, K, 3] = {list(sh.shape)}"),
    )


def write_splat_ply(path: str | Path, splats: SplatArrays) -> Path:
    """Write ``splats`` to ``path`` (atomically) as a standard binary little-endian splat PLY; return ``path``.

    Raises a ``ValueError`` naming the field when an array has the wrong shape or holds NaN or Inf.
    """
    splats = check_splats(splats)
    N, K = splats.sh.shape[:2]
    f_rest = splats.sh[:, 1:, :].transpose(0, 2, 1).reshape(N, 3 * (K - 1))  # channel-major: [N, 3, K-1] flattened
    columns = np.concatenate(
        [splats.means, np.zeros((N, 3), np.float32), splats.sh[:, 0, :], f_rest, splats.opacity_logits[:, None],
         splats.log_scales, splats.quaternions],
        axis=1,
    )
    rows = unstructured_to_structured(columns, np.dtype([(name, "<f4") for name in splat_property_names(K)]))
    ply = PlyData([PlyElement.describe(rows, "vertex")], text=False, byte_order="<")
    path = Path(path)
    with atomic_path(path) as tmp:
        ply.write(tmp)
    return path


def _coefficients(n_rest: int) -> int | None:
    """``K`` when ``n_rest`` f_rest properties are ``3 (K - 1)`` with ``K`` a perfect square, else None."""
    K = n_rest // 3 + 1
    return K if n_rest % 3 == 0 and _is_square(K) else None


def read_splat_ply(path: str | Path) -> SplatArrays:
    """The Gaussians of the splat PLY ``path`` (float32; ``K`` inferred from the number of ``f_rest_*``).

    Every failure is a one-line ``ValueError`` naming the file: no such file, not a PLY file, a truncated
    one, no ``vertex`` element, missing properties, an ``f_rest`` count that is not ``3 (K - 1)``, NaN or Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no splat PLY file at {path}")
    try:
        # One-line errors naming the file for garbage and truncation; it also refuses a header that declares
        # more rows than the file holds before plyfile would allocate them.
        check_ply(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {first_line(exc)}") from exc
    try:
        ply = PlyData.read(path, mmap=False)
    except Exception as exc:  # plyfile raises PlyHeaderParseError, PlyElementParseError, UnicodeDecodeError, ...
        raise ValueError(f"{path} is not a valid PLY file: {type(exc).__name__}: {first_line(exc)}") from exc
    if "vertex" not in ply:
        raise ValueError(f"{path} has no vertex element (it has {[element.name for element in ply.elements]})")
    vertex = ply["vertex"]
    names = [prop.name for prop in vertex.properties]
    n_rest = sum(name.startswith("f_rest_") for name in names)
    K = _coefficients(n_rest)
    if K is None:
        raise ValueError(f"{path} has {n_rest} f_rest_* properties; a splat PLY has 3 (K - 1) of them, K = "
                         "(degree + 1)^2 (0, 9, 24, 45, ...)")
    wanted = [name for name in splat_property_names(K) if name not in ("nx", "ny", "nz")]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise ValueError(f"{path} is not a splat PLY: its vertex element lacks the properties {' '.join(missing)}")
    data = vertex.data
    not_numbers = [name for name in wanted if data.dtype[name].kind not in "iuf"]
    if not_numbers:
        raise ValueError(f"{path}: the vertex properties {' '.join(not_numbers)} must be numbers, not lists")
    with np.errstate(over="ignore"):  # doubles beyond float32's range become inf, refused just below
        column = {name: np.asarray(data[name]).astype(np.float32) for name in wanted}
    for name in wanted:
        bad = np.flatnonzero(~np.isfinite(column[name]))
        if len(bad):
            raise ValueError(f"{path}: property {name} of vertex {bad[0]} is {column[name][bad[0]]} (not finite in "
                             "float32)")
    N = len(data)

    def stack(*keys: str) -> np.ndarray:  # [N, len(keys)]
        return np.stack([column[key] for key in keys], axis=1)

    sh = np.empty((N, K, 3), np.float32)
    sh[:, 0, :] = stack("f_dc_0", "f_dc_1", "f_dc_2")
    if K > 1:  # f_rest is channel-major: [N, 3, K-1] flattened
        sh[:, 1:, :] = stack(*(f"f_rest_{i}" for i in range(n_rest))).reshape(N, 3, K - 1).transpose(0, 2, 1)
    return SplatArrays(
        means=stack("x", "y", "z"),
        log_scales=stack("scale_0", "scale_1", "scale_2"),
        quaternions=stack("rot_0", "rot_1", "rot_2", "rot_3"),
        opacity_logits=column["opacity"],
        sh=sh,
    )
