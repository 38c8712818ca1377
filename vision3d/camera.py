"""Pinhole cameras, poses and rays: the one camera module every 3D method in vision3d uses.

Conventions (those of NeRF's Blender scenes, so exported datasets load in other NeRF code):

* World space is right-handed with **+z up**; objects are normalised to fit ``[-0.5, 0.5]^3``.
* A pose is a camera-to-world matrix ``c2w`` ``[4, 4]`` in the **OpenGL** convention: the camera
  looks down its own ``-z`` axis, ``+y`` is up in the image and ``+x`` is right.
* Pixel ``(u, v)`` has its origin at the top-left corner of the image; pixel ``(i, j)`` covers
  ``[i, i+1) x [j, j+1)`` and its ray passes through the centre ``(i + 0.5, j + 0.5)``.
* Ray directions are **not** normalised: in camera space they are ``(x, y, -1)``, so the ray
  parameter ``t`` of a point equals its depth along the viewing axis (the depth in ``*_depth.npy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

PoseMode = Literal["random", "spiral", "turntable"]


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: image size in pixels, focal lengths and principal point in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got width={self.width}, height={self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_fov(cls, width: int, height: int, camera_angle_x: float) -> Intrinsics:
        """Square pixels and a centred principal point, from the horizontal field of view (radians)."""
        if not 0.0 < camera_angle_x < math.pi:
            raise ValueError(f"camera_angle_x must be in (0, pi) radians, got {camera_angle_x}")
        focal = 0.5 * width / math.tan(0.5 * camera_angle_x)
        return cls(width, height, focal, focal, 0.5 * width, 0.5 * height)

    @property
    def camera_angle_x(self) -> float:
        """Horizontal field of view in radians (the key NeRF's ``transforms.json`` stores)."""
        return 2.0 * math.atan(0.5 * self.width / self.fx)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 calibration matrix (for the image convention with ``v`` pointing down)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> Intrinsics:
        """The same camera imaged at another resolution (focal lengths and centre scale with it)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


def look_at(
    eye: np.ndarray,  # [3]
    target: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 0.0),
    up: np.ndarray | tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> np.ndarray:  # [4, 4]
    """Camera-to-world pose (OpenGL convention) of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(a, dtype=np.float64).reshape(3) for a in (eye, target, up))
    back = eye - target  # the camera's +z axis points away from what it looks at
    if np.linalg.norm(back) < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: pick any perpendicular
        right = np.cross(np.array([0.0, 1.0, 0.0]) if abs(back[1]) < 0.9 else np.array([1.0, 0.0, 0.0]), back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, back, eye
    return c2w


def sphere_poses(
    n: int,
    radius: float = 2.0,
    mode: PoseMode = "random",
    elevation: float = 30.0,
    seed: int = 0,
    upper_hemisphere: bool = False,
) -> np.ndarray:  # [n, 4, 4]
    """``n`` cameras on a sphere of ``radius`` around the origin, all looking at the origin.

    * ``random``: directions uniform on the sphere (or the upper hemisphere), drawn with ``seed``.
    * ``spiral``: a Fibonacci spiral, evenly spread from the bottom to the top (deterministic).
    * ``turntable``: a ring at ``elevation`` degrees, ``n`` equal azimuth steps (for orbit videos).
    """
    if n <= 0:
        raise ValueError(f"n must be a positive number of poses, got {n}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    k = np.arange(n, dtype=np.float64)
    if mode == "random":
        rng = np.random.default_rng(seed)
        z = rng.uniform(0.0 if upper_hemisphere else -1.0, 1.0, n)
        azimuth = rng.uniform(0.0, 2 * np.pi, n)
    elif mode == "spiral":
        z = 1.0 - (k + 0.5) / n * (1.0 if upper_hemisphere else 2.0)
        azimuth = k * np.pi * (3.0 - np.sqrt(5.0))  # the golden angle
    elif mode == "turntable":
        z = np.full(n, np.sin(np.radians(elevation)))
        azimuth = 2 * np.pi * k / n
    else:
        raise ValueError(f"mode must be one of 'random', 'spiral', 'turntable', got {mode!r}")
    # Keep away from the poles, where the up vector is undefined.
    z = np.clip(z, -0.999, 0.999)
    ring = np.sqrt(1.0 - z**2)
    eyes = radius * np.stack([ring * np.cos(azimuth), ring * np.sin(azimuth), z], axis=1)
    return np.stack([look_at(eye) for eye in eyes])


def camera_directions(intrinsics: Intrinsics) -> np.ndarray:  # [H, W, 3]
    """Ray directions through every pixel centre in camera space, with ``z = -1``."""
    i, j = np.meshgrid(np.arange(intrinsics.width) + 0.5, np.arange(intrinsics.height) + 0.5, indexing="xy")
    x = (i - intrinsics.cx) / intrinsics.fx
    y = -(j - intrinsics.cy) / intrinsics.fy  # image v points down, camera y points up
    return np.stack([x, y, -np.ones_like(x)], axis=-1)


def pixel_rays(intrinsics: Intrinsics, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre: origins ``[H, W, 3]`` and directions ``[H, W, 3]``.

    The directions are not normalised; ``t`` along them is depth along the viewing axis.
    """
    c2w = _check_pose(c2w)
    dirs = camera_directions(intrinsics) @ c2w[:3, :3].T
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape).copy()
    return origins.astype(np.float32), dirs.astype(np.float32)


def image_rays(intrinsics: Intrinsics, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # poses [V, 4, 4]
    """Origins and directions ``[V, H, W, 3]`` of every pixel of every view (:func:`pixel_rays`)."""
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be [V, 4, 4], got {poses.shape}")
    rays = [pixel_rays(intrinsics, pose) for pose in poses]
    return np.stack([o for o, _ in rays]), np.stack([d for _, d in rays])


def project(
    points: np.ndarray,  # [N, 3] world
    intrinsics: Intrinsics,
    c2w: np.ndarray,  # [4, 4]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``uv`` ``[N, 2]`` (continuous, origin top-left) and depth ``[N]`` of points.

    Depth is the distance in front of the camera along its viewing axis (positive when visible).
    """
    points = _check_points(points, "points")
    c2w = _check_pose(c2w)
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * cam[:, 0] / depth + intrinsics.cx
        v = -intrinsics.fy * cam[:, 1] / depth + intrinsics.cy
    return np.stack([u, v], axis=1), depth


def unproject(
    uv: np.ndarray,  # [N, 2]
    depth: np.ndarray,  # [N]
    intrinsics: Intrinsics,
    c2w: np.ndarray,  # [4, 4]
) -> np.ndarray:  # [N, 3]
    """World points at pixel coordinates ``uv`` and viewing-axis ``depth``: the inverse of :func:`project`."""
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64).reshape(-1)
    if uv.ndim != 2 or uv.shape[1] != 2 or uv.shape[0] != depth.shape[0]:
        raise ValueError(f"uv must be [N, 2] and depth [N]; got uv {uv.shape} and depth {depth.shape}")
    c2w = _check_pose(c2w)
    x = (uv[:, 0] - intrinsics.cx) / intrinsics.fx
    y = -(uv[:, 1] - intrinsics.cy) / intrinsics.fy
    cam = np.stack([x, y, -np.ones_like(x)], axis=1) * depth[:, None]
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def _check_pose(c2w: np.ndarray) -> np.ndarray:
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4):
        raise ValueError(f"c2w must be a [4, 4] (or [3, 4]) camera-to-world matrix, got shape {c2w.shape}")
    return c2w


def _check_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {points.shape}")
    return points
