"""Rendered bodies with exact 2D and 3D ground truth: the scenes that notes §13.1 and §13.3 learn from.

Each sample is Algorithm 7's draw: ``theta, beta`` from the pose prior (:mod:`bodies.prior`), a random camera
``(R, t, s)`` in a stated feasible range (:class:`CameraRange`), the body rendered by vision3d's renderer and
camera module. The body stands at ``X_cam = R X + T`` in the camera's frame (OpenCV axes: x right, y down,
z forward), ``X`` the model's joints with no global rotation; the perspective projection of its keypoints is
exported, and so is the weak-perspective camera of the notes, ``x ~ s Pi(R X) + t`` with ``s = f / Z_0`` and
``Z_0`` the depth of the body's centre.

A data set folder::

    meta.json        format, count, image size, intrinsics, keypoint and joint names, skeleton, camera range
    labels.npz       keypoints2d [N, 14, 2] (pixels, origin at the top-left corner), visible [N, 14] (inside the
                     image), occluded [N, 14] (behind the body, by the depth buffer), keypoints3d [N, 14, 3] and
                     joints3d [N, 24, 3] (camera frame, metres), betas [N, 10], body_pose [N, 69],
                     R [N, 3, 3], T [N, 3], s [N], t [N, 2]
    rgb/00000.png    RGB images; mask/00000.png the body's silhouette
    coco.json        the keypoints in COCO's format (v = 2 visible, 1 occluded, 0 outside the image)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import imageio.v3 as iio
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from bodies.model import BodyModel
from bodies.prior import sample_betas, sample_poses
from bodies.skeleton import JOINT_NAMES, KEYPOINT_NAMES, KEYPOINT_PARENTS
from envs.io.arrays import read_npz
from envs.io.files import atomic_path, atomic_write_json
from vision3d.camera import Intrinsics, project

__all__ = ["FORMAT", "CameraDraw", "CameraRange", "RenderConfig", "Renders", "camera_intrinsics", "draw_cameras",
           "load_renders", "render_dataset", "sample_cameras"]

FORMAT = "machine-perception/bodies-render-1"
#: vision3d's world has +z up; the camera sits at its origin looking along +y. OpenCV camera axes in that world:
CV_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
C2W = np.eye(4)
C2W[:3, :3] = CV_TO_WORLD @ np.diag([1.0, -1.0, -1.0])  # OpenGL camera axes (y up, looking down -z)


@dataclass(frozen=True)
class CameraRange:
    """The feasible range of the random camera ``(R, t, s)``: every value is drawn uniformly within it."""

    fov_degrees: float = 30.0
    """Horizontal field of view of the pinhole camera."""
    distance: tuple[float, float] = (3.6, 5.6)
    """Depth ``Z_0`` of the body's centre in metres (a 1.7 m body then fills 55% to 85% of the image height)."""
    offset: float = 0.06
    """Largest offset of the body's centre from the image centre, as a fraction of the image size."""
    yaw: tuple[float, float] = (-math.pi, math.pi)
    """Turn of the body about its vertical axis (0 faces the camera)."""
    pitch: tuple[float, float] = (-0.25, 0.25)
    """Tilt towards or away from the camera."""
    roll: tuple[float, float] = (-0.15, 0.15)
    """Tilt sideways in the image."""


@dataclass(frozen=True)
class RenderConfig:
    """What ``python -m bodies render`` draws."""

    count: int = 100
    size: int = 128
    seed: int = 0
    shape_scale: float = 1.0
    """Standard deviation of the shape coefficients ``beta``."""
    camera: CameraRange = CameraRange()

    def __post_init__(self) -> None:
        if self.count < 1 or not 16 <= self.size <= 1024:
            raise ValueError(f"count must be >= 1 and size in 16..1024, got count={self.count}, size={self.size}")


class CameraDraw(NamedTuple):
    """Values drawn uniformly from a :class:`CameraRange` (the rendered sets and LGD's problems share them)."""

    turn: np.ndarray  # [N, 3] yaw, pitch, roll (radians)
    depth: np.ndarray  # [N] depth of the body's centre, metres
    offset: np.ndarray  # [N, 2] offset of the body's centre from the image centre, fraction of the image size

    def rotation(self) -> Rotation:
        """The body's turn: about its vertical axis (yaw), then x (pitch), then z (roll)."""
        return Rotation.from_euler("yxz", self.turn)


def draw_cameras(count: int, rng: np.random.Generator, camera: CameraRange) -> CameraDraw:
    """``count`` draws of the camera range: yaw, pitch, roll, depth, offset (in this order from ``rng``)."""
    turn = np.stack([rng.uniform(*r, count) for r in (camera.yaw, camera.pitch, camera.roll)], 1)
    depth = rng.uniform(*camera.distance, count)
    return CameraDraw(turn, depth, rng.uniform(-camera.offset, camera.offset, (count, 2)))


def camera_intrinsics(camera: CameraRange, size: int) -> Intrinsics:
    """The pinhole camera of a square ``size`` image with the range's field of view."""
    return Intrinsics.from_fov(size, size, math.radians(camera.fov_degrees))


class Cameras(NamedTuple):
    R: np.ndarray  # [N, 3, 3] body -> camera (OpenCV axes)
    T: np.ndarray  # [N, 3] camera-frame position of the body's origin
    s: np.ndarray  # [N] weak-perspective scale, pixels per metre
    t: np.ndarray  # [N, 2] weak-perspective offset, pixels


def sample_cameras(count: int, centre: np.ndarray, rng: np.random.Generator, camera: CameraRange,
                   size: int) -> Cameras:
    """Random ``R, T`` within ``camera``'s range (``centre``: the body's rest centre) and the matching ``s, t``."""
    draw = draw_cameras(count, rng, camera)
    # Body y (up) maps to camera -y (up in the image); body z (front) to camera -z (towards the camera) at yaw 0.
    R = np.diag([1.0, -1.0, -1.0]) @ draw.rotation().as_matrix()
    focal = camera_intrinsics(camera, size).fx
    offset = draw.offset * size * draw.depth[:, None] / focal
    T = np.concatenate([offset, draw.depth[:, None]], 1) - R @ centre
    s = focal / draw.depth
    t = s[:, None] * T[:, :2] + 0.5 * size
    return Cameras(R, T, s, t)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:  # [H, W, 3] float in [0, 1]
    top, bottom = rng.uniform(0.25, 0.95, 3), rng.uniform(0.25, 0.95, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    return np.broadcast_to((1 - ramp) * top + ramp * bottom, (size, size, 3))


def render_dataset(out: str | os.PathLike[str], config: RenderConfig, model_path: str | os.PathLike[str] | None = None,
                   progress: bool = False) -> dict[str, object]:
    """Render ``config.count`` posed, shaped bodies into the folder ``out`` (see the module docstring)."""
    import trimesh

    from vision3d.render import MeshRenderer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty (one data set per folder)")
    model = BodyModel.from_file(model_path, dtype=torch.float64)
    rng = np.random.default_rng(config.seed)
    N, size = config.count, config.size
    betas = sample_betas(N, rng, scale=config.shape_scale)
    body_pose = sample_poses(N, rng)
    with torch.no_grad():
        rest = model(torch.as_tensor(betas), torch.as_tensor(body_pose))
    vertices, joints = rest.vertices.numpy(), rest.joints.numpy()
    keypoints = model.keypoints(rest).numpy()
    centre = 0.5 * (vertices.min(1) + vertices.max(1))  # [N, 3] each body's bounding-box centre
    cams = [sample_cameras(1, centre[i], rng, config.camera, size) for i in range(N)]
    R, T = np.concatenate([c.R for c in cams]), np.concatenate([c.T for c in cams])
    s, t = np.concatenate([c.s for c in cams]), np.concatenate([c.t for c in cams])

    def to_camera(points: np.ndarray) -> np.ndarray:
        return np.einsum("nij,nkj->nki", R, points) + T[:, None]

    joints3d, keypoints3d = to_camera(joints), to_camera(keypoints)
    intrinsics = camera_intrinsics(config.camera, size)
    keypoints2d = project(keypoints3d.reshape(-1, 3) @ CV_TO_WORLD.T, intrinsics, C2W)[0].reshape(N, -1, 2)
    visible = np.all((keypoints2d >= 0) & (keypoints2d < size), axis=2)
    occluded = np.zeros_like(visible)
    colors = model.vertex_colors if model.vertex_colors is not None else np.full((model.num_vertices, 3), 180)
    faces = model.faces.numpy()
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "mask").mkdir(exist_ok=True)

    def mesh(i: int) -> trimesh.Trimesh:
        world = (vertices[i] @ R[i].T + T[i]) @ CV_TO_WORLD.T
        return trimesh.Trimesh(world, faces, vertex_colors=colors, process=False)

    from tqdm.auto import tqdm

    with MeshRenderer(mesh(0), intrinsics) as renderer:
        for i in tqdm(range(N), desc="render", disable=not progress):
            if i:
                renderer.set_mesh(mesh(i))
            rgba, depth = renderer.render(C2W)
            alpha = rgba[..., 3:] / 255.0
            rgb = alpha * rgba[..., :3] / 255.0 + (1 - alpha) * _background(rng, size)
            for k in np.flatnonzero(visible[i]):
                u, v = keypoints2d[i, k].astype(int)
                occluded[i, k] = 0 < depth[v, u] < keypoints3d[i, k, 2] - 0.15  # another part is well in front
            iio.imwrite(out / "rgb" / f"{i:05d}.png", np.round(255 * rgb).astype(np.uint8))
            iio.imwrite(out / "mask" / f"{i:05d}.png", ((rgba[..., 3] > 0) * 255).astype(np.uint8))
    labels = {"keypoints2d": keypoints2d, "visible": visible, "occluded": occluded, "keypoints3d": keypoints3d,
              "joints3d": joints3d, "betas": betas, "body_pose": body_pose, "R": R, "T": T, "s": s, "t": t}
    with atomic_path(out / "labels.npz") as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, **{k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in labels.items()})
    meta = {"format": FORMAT, "count": N, "size": size, "seed": config.seed, "shape_scale": config.shape_scale,
            "intrinsics": {"fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy},
            "camera": asdict(config.camera), "keypoints": list(KEYPOINT_NAMES), "joints": list(JOINT_NAMES),
            "skeleton": [[k, p] for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0],
            "model": str(model_path or "shipped")}
    atomic_write_json(out / "meta.json", meta)
    atomic_write_json(out / "coco.json", _coco(keypoints2d, visible, occluded, size))
    return {"out": str(out), "count": N, "size": size, "visible": float(visible.mean()),
            "occluded": float(occluded.sum() / max(visible.sum(), 1))}


def _coco(keypoints2d: np.ndarray, visible: np.ndarray, occluded: np.ndarray, size: int) -> dict[str, object]:
    """COCO's keypoint annotation format (one person per image, 1-based skeleton, ``v`` in 0, 1, 2)."""
    images, annotations = [], []
    for i, (points, inside, hidden) in enumerate(zip(keypoints2d, visible, occluded, strict=True)):
        v = np.where(inside, np.where(hidden, 1, 2), 0)
        flat = np.concatenate([np.where(inside[:, None], points, 0.0), v[:, None]], 1).ravel()
        xy = points[inside]
        box = [float(xy[:, 0].min()), float(xy[:, 1].min()), float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1]))] \
            if len(xy) else [0.0, 0.0, 0.0, 0.0]
        images.append({"id": i, "file_name": f"rgb/{i:05d}.png", "width": size, "height": size})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": box,
                            "area": box[2] * box[3], "num_keypoints": int(inside.sum()),
                            "keypoints": [round(float(x), 3) for x in flat]})
    category = {"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES),
                "skeleton": [[k + 1, p + 1] for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0]}
    return {"images": images, "annotations": annotations, "categories": [category]}


class Renders(NamedTuple):
    """A rendered data set in memory (see the module docstring for each array)."""

    images: np.ndarray  # [N, H, W, 3] uint8
    masks: np.ndarray  # [N, H, W] bool
    keypoints2d: np.ndarray  # [N, 14, 2]
    visible: np.ndarray  # [N, 14] bool
    occluded: np.ndarray  # [N, 14] bool
    keypoints3d: np.ndarray  # [N, 14, 3]
    joints3d: np.ndarray  # [N, 24, 3]
    betas: np.ndarray  # [N, 10]
    body_pose: np.ndarray  # [N, 69]
    R: np.ndarray  # [N, 3, 3]
    T: np.ndarray  # [N, 3]
    s: np.ndarray  # [N]
    t: np.ndarray  # [N, 2]
    meta: dict

    def subset(self, index: np.ndarray | slice) -> Renders:
        return Renders(*(a[index] for a in self[:-1]), meta=self.meta)


def load_renders(path: str | os.PathLike[str], images: bool = True) -> Renders:
    """Read a data set folder written by :func:`render_dataset` (``images=False`` skips the PNGs)."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise ValueError(f"--data {path}: no meta.json (render a data set with `python -m bodies render`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    keys = ("keypoints2d", "visible", "occluded", "keypoints3d", "joints3d", "betas", "body_pose", "R", "T", "s", "t")
    labels = read_npz(path / "labels.npz", keys)
    missing = [k for k in keys if k not in labels]
    if missing:
        raise ValueError(f"{path / 'labels.npz'}: missing {', '.join(missing)}")
    N, size = int(meta["count"]), int(meta["size"])
    if images:
        rgb = np.stack([iio.imread(path / "rgb" / f"{i:05d}.png")[..., :3] for i in range(N)])
        masks = np.stack([iio.imread(path / "mask" / f"{i:05d}.png") > 127 for i in range(N)])
    else:
        rgb, masks = np.zeros((N, 0, 0, 3), np.uint8), np.zeros((N, 0, 0), bool)
    if len(labels["keypoints2d"]) != N or (images and rgb.shape[1:3] != (size, size)):
        raise ValueError(f"{path}: labels or images do not match meta.json's count {N} and size {size}")
    return Renders(rgb, masks, *(labels[k] for k in keys), meta=meta)
