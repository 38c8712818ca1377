"""Structure from motion with COLMAP (Schönberger and Frahm, 2016): running its command line, reading its
text model, and the geometry that turns its cameras into ours.

COLMAP's steps run as subprocesses of the ``colmap`` program (Debian's package 3.8, CPU only): SIFT features
(``feature_extractor``), matches between every pair of images (``exhaustive_matcher``), incremental mapping
with bundle adjustment (``mapper``), undistorted images with a pinhole camera (``image_undistorter``) and the
model as text (``model_converter --output_type TXT``). Their output goes to a log file, not to the terminal.

COLMAP's conventions, and what :mod:`vision3d.camera` uses instead:

* ``images.txt`` stores each image's **world-to-camera** rotation as a unit quaternion ``(qw, qx, qy, qz)``
  (Hamilton, scalar first) and its translation ``t``: ``x_cam = R x_world + t``; the camera centre is
  ``-R^T t`` (:func:`camera_to_world`).
* Its camera axes are OpenCV's: ``+x`` right, ``+y`` down, looking down ``+z``. Ours are OpenGL's: ``+y``
  up, looking down ``-z``; :func:`opencv_to_opengl` flips the camera's ``y`` and ``z`` axes.
* Its world frame is arbitrary (the first image pair's, up to scale); a similarity transform
  (:func:`umeyama`) maps it onto another frame.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

CameraModel = Literal["SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PINHOLE", "OPENCV"]
"""COLMAP camera models offered: one focal length (SIMPLE_*) or two (PINHOLE, OPENCV); no, one or two radial
distortion terms (OPENCV adds tangential ones). Undistortion turns every one into a pinhole camera."""

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplying a camera-to-world pose by this flips its camera's ``y`` and ``z`` axes (its own inverse)."""


# --- the geometry: pure functions --------------------------------------------------------------------------


def qvec_to_rotation(qvec: np.ndarray) -> np.ndarray:  # [4] (w, x, y, z) -> [3, 3]
    """The rotation matrix of a quaternion ``(w, x, y, z)`` (normalised first)."""
    q = np.asarray(qvec, dtype=np.float64)
    norm = np.linalg.norm(q) if q.shape == (4,) else 0.0
    if not norm > 0 or not np.isfinite(norm):
        raise ValueError(f"qvec must be a non-zero finite quaternion [4], got {np.asarray(qvec).tolist()}")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rotation_to_qvec(rotation: np.ndarray) -> np.ndarray:  # [3, 3] -> [4] (w, x, y, z), w >= 0
    """The unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (Shepperd, 1978: solve for the
    largest of ``|w|, |x|, |y|, |z|`` first, from the trace or a diagonal entry, so nothing is divided by ~0)."""
    R = np.asarray(rotation, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation must be [3, 3], got {R.shape}")
    trace = np.trace(R)
    k = int(np.argmax([trace, R[0, 0], R[1, 1], R[2, 2]]))
    if k == 0:
        w = 0.5 * math.sqrt(max(1.0 + trace, 0.0))
        q = [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]
    elif k == 1:
        x = 0.5 * math.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        q = [(R[2, 1] - R[1, 2]) / (4 * x), x, (R[0, 1] + R[1, 0]) / (4 * x), (R[0, 2] + R[2, 0]) / (4 * x)]
    elif k == 2:
        y = 0.5 * math.sqrt(max(1.0 + R[1, 1] - R[0, 0] - R[2, 2], 0.0))
        q = [(R[0, 2] - R[2, 0]) / (4 * y), (R[0, 1] + R[1, 0]) / (4 * y), y, (R[1, 2] + R[2, 1]) / (4 * y)]
    else:
        z = 0.5 * math.sqrt(max(1.0 + R[2, 2] - R[0, 0] - R[1, 1], 0.0))
        q = [(R[1, 0] - R[0, 1]) / (4 * z), (R[0, 2] + R[2, 0]) / (4 * z), (R[1, 2] + R[2, 1]) / (4 * z), z]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def camera_to_world(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:  # [3, 3], [3] -> [4, 4]
    """The camera-to-world pose ``[[R^T, -R^T t], [0, 1]]`` of a world-to-camera ``x_cam = R x + t``."""
    R, t = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"rotation must be [3, 3] and translation [3], got {R.shape} and {t.shape}")
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return c2w


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:  # [..., 4, 4] -> [..., 4, 4]
    """A camera-to-world pose with OpenCV camera axes (``y`` down, looking down ``+z``) as one with OpenGL axes
    (``y`` up, looking down ``-z``), or back: the same camera, its ``y`` and ``z`` axes negated."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[-2:] != (4, 4):
        raise ValueError(f"c2w must be [..., 4, 4], got {c2w.shape}")
    return c2w @ OPENCV_TO_OPENGL


class Similarity(NamedTuple):
    """``x -> scale * rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def matrix(self) -> np.ndarray:  # [4, 4]
        """The transform as a 4x4 matrix acting on homogeneous points."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    def points(self, x: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 3]
        """The transform of points."""
        return self.scale * np.asarray(x, dtype=np.float64) @ self.rotation.T + self.translation

    def poses(self, c2w: np.ndarray) -> np.ndarray:  # [N, 4, 4] -> [N, 4, 4]
        """Camera-to-world poses moved with the world: rotated and translated, centres scaled, axes kept unit."""
        c2w = np.asarray(c2w, dtype=np.float64)
        out = c2w.copy()
        out[..., :3, :3] = self.rotation @ c2w[..., :3, :3]
        out[..., :3, 3] = self.points(c2w[..., :3, 3].reshape(-1, 3)).reshape(c2w[..., :3, 3].shape)
        return out


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:  # [N, 3], [N, 3]
    """The similarity minimising ``sum_i |target_i - (s R source_i + t)|^2`` (Umeyama, 1991): ``R`` from the SVD
    of the cross-covariance (a reflection is turned into the nearest rotation), ``s`` from the singular values
    over the source's variance (1 without ``with_scale``), ``t`` matching the centroids."""
    src, dst = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape or len(src) < 3:
        raise ValueError(f"source and target must both be [N, 3] with N >= 3, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = float(np.mean(np.sum(xs**2, axis=1)))
    if var_s <= 1e-24:
        raise ValueError("source points coincide: a similarity is undetermined")
    U, D, Vt = np.linalg.svd(xd.T @ xs / len(src))
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt)) or 1.0])
    R = U @ S @ Vt
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale else 1.0
    return Similarity(s, R, mu_d - s * R @ mu_s)


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [..., 3, 3] each -> [...]
    """The angle in degrees of the rotation ``a^T b`` that takes ``a`` to ``b``: ``arccos((tr - 1) / 2)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    trace = np.einsum("...ji,...ji->...", a, b)  # tr(a^T b)
    return np.degrees(np.arccos(np.clip(0.5 * (trace - 1.0), -1.0, 1.0)))


class PoseErrors(NamedTuple):
    """How far recovered poses are from true ones once a similarity aligns their camera centres."""

    similarity: Similarity  # recovered frame -> true frame
    rotation_deg: np.ndarray  # [N] angle between each aligned camera's axes and the true ones
    translation: np.ndarray  # [N] distance between each aligned camera centre and the true one (true units)


def align_poses(recovered: np.ndarray, true: np.ndarray) -> PoseErrors:  # [N, 4, 4] c2w each
    """Align ``recovered`` camera centres to the ``true`` ones (:func:`umeyama`) and measure what is left: each
    camera's rotation error (:func:`rotation_error_deg`, so its orientation is checked, not only its centre)
    and centre distance."""
    recovered, true = np.asarray(recovered, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if recovered.shape != true.shape or recovered.shape[1:] != (4, 4):
        raise ValueError(f"recovered and true must both be [N, 4, 4] poses, got {recovered.shape} and {true.shape}")
    similarity = umeyama(recovered[:, :3, 3], true[:, :3, 3])
    aligned = similarity.poses(recovered)
    return PoseErrors(similarity, rotation_error_deg(aligned[:, :3, :3], true[:, :3, :3]),
                      np.linalg.norm(aligned[:, :3, 3] - true[:, :3, 3], axis=1))


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [3], [3] -> [3, 3]
    """The smallest rotation taking the direction ``a`` to the direction ``b`` (Rodrigues; a half turn about
    any perpendicular axis when they are opposite)."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1.0 + 1e-12:
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


# --- the text model -----------------------------------------------------------------------------------------


class Camera(NamedTuple):
    """One line of ``cameras.txt``."""

    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [P] the model's parameters (PINHOLE: fx, fy, cx, cy)


class Image(NamedTuple):
    """The first line of an image's pair in ``images.txt``: its world-to-camera pose and camera."""

    image_id: int
    qvec: np.ndarray  # [4] (w, x, y, z)
    tvec: np.ndarray  # [3]
    camera_id: int
    name: str

    def c2w(self) -> np.ndarray:  # [4, 4], OpenCV camera axes
        """Its camera-to-world pose, in COLMAP's (OpenCV) camera axes."""
        return camera_to_world(qvec_to_rotation(self.qvec), self.tvec)


class Points(NamedTuple):
    """``points3D.txt``: the sparse reconstruction."""

    xyz: np.ndarray  # [N, 3]
    rgb: np.ndarray  # [N, 3] uint8
    error: np.ndarray  # [N] mean reprojection error in pixels


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """The (1-based number, text) of every line of ``path`` that is not a ``#`` comment, empty lines kept."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a COLMAP text model file: {exc}") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if not line.startswith("#")]


def _numbers(words: list[str], path: Path, number: int, what: str) -> np.ndarray:
    try:
        values = np.array([float(w) for w in words])
    except ValueError:
        values = np.array([np.nan])
    if not np.isfinite(values).all():
        raise ValueError(f"{path}:{number}: {what} must be finite numbers, got {' '.join(words)!r}")
    return values


def read_cameras_txt(path: str | Path) -> dict[int, Camera]:
    """``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` per line, by camera id."""
    path, cameras = Path(path), {}
    for number, line in _data_lines(path):
        if not line:
            continue
        words = line.split()
        if len(words) < 5 or not (words[0].isdigit() and words[2].isdigit() and words[3].isdigit()):
            raise ValueError(f"{path}:{number}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got {line!r}")
        cameras[int(words[0])] = Camera(int(words[0]), words[1], int(words[2]), int(words[3]),
                                        _numbers(words[4:], path, number, "camera parameters"))
    return cameras


def read_images_txt(path: str | Path) -> list[Image]:
    """The images of ``images.txt``: two lines each, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` and its
    2D points (possibly an empty line; not kept)."""
    path, images = Path(path), []
    lines = _data_lines(path)
    while lines and not lines[-1][1]:
        lines.pop()  # a trailing newline after the last image's points line
    for k in range(0, len(lines), 2):
        number, line = lines[k]
        words = line.split(maxsplit=9)
        if len(words) < 10 or not (words[0].isdigit() and words[8].isdigit()):
            raise ValueError(f"{path}:{number}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {line!r}")
        pose = _numbers(words[1:8], path, number, "the pose")
        images.append(Image(int(words[0]), pose[:4], pose[4:], int(words[8]), words[9]))
    return images


def read_points3d_txt(path: str | Path) -> Points:
    """``POINT3D_ID X Y Z R G B ERROR TRACK...`` per line."""
    path, rows = Path(path), []
    for number, line in _data_lines(path):
        if not line:
            continue
        words = line.split()
        if len(words) < 8:
            raise ValueError(f"{path}:{number}: expected 'POINT3D_ID X Y Z R G B ERROR TRACK...', got {line!r}")
        rows.append(_numbers(words[1:8], path, number, "X Y Z R G B ERROR"))
    table = np.array(rows).reshape(-1, 7)
    return Points(table[:, :3], np.clip(table[:, 3:6], 0, 255).astype(np.uint8), table[:, 6])


def pinhole(camera: Camera) -> tuple[float, float, float, float]:
    """``fx, fy, cx, cy`` of an undistorted camera (COLMAP's PINHOLE or SIMPLE_PINHOLE model)."""
    if camera.model == "PINHOLE" and len(camera.params) == 4:
        fx, fy, cx, cy = camera.params
    elif camera.model == "SIMPLE_PINHOLE" and len(camera.params) == 3:
        (fx, cx, cy), fy = camera.params, camera.params[0]
    else:
        raise ValueError(f"camera {camera.camera_id}: expected an undistorted PINHOLE or SIMPLE_PINHOLE camera, "
                         f"got {camera.model} with {len(camera.params)} parameters")
    return float(fx), float(fy), float(cx), float(cy)


def corner_distortion(camera: Camera) -> float:
    """How far the radial distortion of ``camera`` moves an image corner, as a fraction of its distance from the
    principal point: ``|k1 r^2 + k2 r^4|`` at the corner's normalised radius ``r`` (0 for the pinhole models; the
    radial terms only, for OPENCV)."""
    model, p = camera.model, camera.params
    if model == "SIMPLE_RADIAL" and len(p) == 4:
        (f, cx, cy, k1), fy, k2 = p, p[0], 0.0
    elif model == "RADIAL" and len(p) == 5:
        (f, cx, cy, k1, k2), fy = p, p[0]
    elif model == "OPENCV" and len(p) == 8:
        f, fy, cx, cy, k1, k2 = p[:6]
    elif model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return 0.0
    else:
        raise ValueError(f"camera {camera.camera_id}: unknown model {model} with {len(p)} parameters")
    r2 = (max(cx, camera.width - cx) / f) ** 2 + (max(cy, camera.height - cy) / fy) ** 2
    return float(abs(k1 * r2 + k2 * r2 * r2))


# --- running COLMAP -----------------------------------------------------------------------------------------


def colmap_program() -> str:
    """The path of the ``colmap`` program, or a one-line ``ValueError`` saying how to install it."""
    program = shutil.which("colmap")
    if program is None:
        raise ValueError("colmap is not on PATH: install it (Debian/Ubuntu: `sudo apt-get install colmap`)")
    return program


def colmap_argv(program: str, step: str, options: Mapping[str, object]) -> list[str]:
    """The command line ``program step --key value ...`` (booleans as 1 and 0, paths as strings)."""
    argv = [program, step]
    for key, value in options.items():
        argv += [f"--{key}", str(int(value)) if isinstance(value, bool) else str(value)]
    return argv


def run_colmap(step: str, options: Mapping[str, object], log: Path, say: Callable[[str], None] = lambda _: None,
               program: str | None = None) -> int:
    """Run one COLMAP step with its output appended to ``log``; returns its exit status.

    Qt is told to need no display (``QT_QPA_PLATFORM=offscreen``). A failure is the caller's to judge: the
    mapper exits with an error when it finds no model, which is a fact about the images, not a crash.
    """
    argv = colmap_argv(program or colmap_program(), step, options)
    say(f"colmap {step}")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode


def check_step(status: int, step: str, log: Path) -> None:
    """A ``RuntimeError`` naming the step, the log and its last error line when ``status`` is not 0."""
    if status == 0:
        return
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    last = (errors or lines or ["(no output)"])[-1]
    raise RuntimeError(f"colmap {step} failed with exit status {status} ({last}); the full log is {log}")


def largest_model(sparse: Path) -> Path | None:
    """The mapper's model folder (``sparse/0``, ``sparse/1``, ...) with the most registered images, or None."""
    models = [p for p in sorted(sparse.iterdir()) if p.is_dir() and (p / "images.bin").is_file()] \
        if sparse.is_dir() else []
    return max(models, key=_registered_count, default=None)


def _registered_count(model: Path) -> int:
    """Registered images of a binary model: the image count that opens ``images.bin`` (little-endian uint64)."""
    with open(model / "images.bin", "rb") as file:
        return int.from_bytes(file.read(8), "little")


def image_angle(fx: float, width: int) -> float:
    """Horizontal field of view ``2 atan(W / (2 fx))`` in radians (NeRF's ``camera_angle_x``)."""
    return 2.0 * math.atan(0.5 * width / fx)
