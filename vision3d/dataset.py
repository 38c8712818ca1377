"""Datasets in the NeRF "Blender" layout: export from a mesh, load any such folder.

One export serves all three regimes of notes chapter 12: ``samples.npz`` (occupancy and signed
distance, §12.1, Mescheder et al. 2019 / Park et al. 2019), ``points.ply`` (oriented point cloud,
§12.2, Gropp et al. 2020) and posed RGBA images with depth (§12.3, Niemeyer et al. 2020). The image
part follows the layout of NeRF's synthetic scenes (Mildenhall et al., 2020), so the original
scenes load with :func:`load_blender` too::

    out/
      transforms_{train,val,test}.json   camera_angle_x; frames[].file_path ("./train/r_0"),
                                         frames[].transform_matrix (c2w, OpenGL convention)
      train/r_0.png, train/r_0_depth.npy RGBA image; float32 depth along the viewing axis, 0 = background
      val/..., test/...
      mesh.ply      the normalised ground-truth mesh with vertex colours
      points.ply    surface samples with normals
      samples.npz   points [N, 3], occupancy [N], sdf [N] (uniform in the scene box + near the surface)
      dataset.json  provenance: shape name, views, size, seed, camera settings
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imageio.v2 as imageio
import numpy as np
import open3d as o3d
import trimesh

from envs.io import atomic_path, atomic_write_text
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.groundtruth import GroundTruth, Samples, sample_points, surface_samples
from vision3d.render import BLENDER_CAMERA_ANGLE_X, MeshRenderer, framing_radius
from vision3d.shapes import load_shape, normalize_mesh

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class ExportConfig:
    """What :func:`export_dataset` writes."""

    views: int = 100
    """Number of training views (camera directions uniform on the sphere)."""
    size: int = 128
    """Image width and height in pixels."""
    val_views: int | None = None
    """Validation views (random, other seed); None: max(5, views // 10)."""
    test_views: int | None = None
    """Test views on a Fibonacci spiral; None: max(5, views // 10)."""
    radius: float | None = None
    """Camera distance from the origin; None: the closest distance that frames the mesh with a 10% margin."""
    camera_angle_x: float = BLENDER_CAMERA_ANGLE_X
    """Horizontal field of view in radians (NeRF's Blender scenes use 0.6911)."""
    upper_hemisphere: bool = False
    """Place training and validation cameras above the ground plane only, like NeRF's scenes."""
    seed: int = 0
    """Seed of the camera directions and of every point sample."""
    n_uniform: int = 100_000
    """Points uniform in the scene box in samples.npz."""
    n_surface: int = 100_000
    """Near-surface points in samples.npz (surface samples plus Gaussian noise)."""
    sigmas: tuple[float, ...] = (0.005, 0.05)
    """Standard deviations of the near-surface noise, one group of points per sigma."""
    n_points: int = 100_000
    """Oriented surface points in points.ply."""


def split_sizes(config: ExportConfig) -> dict[Split, int]:
    """Number of views per split: ``views`` for train, ``max(5, views // 10)`` by default for val/test."""
    default = max(5, config.views // 10)
    return {
        "train": config.views,
        "val": default if config.val_views is None else config.val_views,
        "test": default if config.test_views is None else config.test_views,
    }


def split_poses(config: ExportConfig, radius: float) -> dict[Split, np.ndarray]:
    """Camera-to-world poses ``[n, 4, 4]`` of each split: random train and val (distinct seeds), spiral test."""
    n = split_sizes(config)
    return {
        "train": sphere_poses(n["train"], radius, "random", seed=config.seed, upper_hemisphere=config.upper_hemisphere),
        "val": sphere_poses(n["val"], radius, "random", seed=config.seed + 1, upper_hemisphere=config.upper_hemisphere),
        "test": sphere_poses(n["test"], radius, "spiral"),
    }


def transforms_json(camera_angle_x: float, file_paths: list[str], poses: np.ndarray) -> str:
    """The text of a NeRF ``transforms_<split>.json`` (float64 values, so poses round-trip exactly)."""
    frames = [
        {"file_path": p, "transform_matrix": np.asarray(c2w, dtype=np.float64).tolist()}
        for p, c2w in zip(file_paths, poses)
    ]
    return json.dumps({"camera_angle_x": float(camera_angle_x), "frames": frames}, indent=2)


def export_dataset(
    mesh: trimesh.Trimesh | str | Path,
    out: str | Path,
    *,
    config: ExportConfig | None = None,
    **overrides: object,
) -> Path:
    """Render and sample ``mesh`` (a mesh, a shape name or a mesh file) into ``out``; returns ``out``.

    Keyword ``overrides`` replace fields of ``config`` (``export_dataset(mesh, out, views=20, size=64)``).
    The mesh is normalised into ``[-0.5, 0.5]^3`` first (:func:`normalize_mesh`). A mesh that is not
    watertight still gets images and points but no ``samples.npz`` (inside/outside is undefined).
    Every file is written atomically.
    """
    config = config if config is not None else ExportConfig()
    try:
        config = dataclasses.replace(config, **overrides)
    except TypeError as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(ExportConfig))
        raise ValueError(f"unknown export option in {sorted(overrides)}; options are: {fields}") from exc
    _check_config(config)
    if isinstance(mesh, (str, Path)):
        mesh = load_shape(mesh)
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh, a shape name or a mesh path, got {type(mesh).__name__}")
    name = str(mesh.metadata.get("name", "mesh"))
    mesh = normalize_mesh(mesh)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    radius = framing_radius(mesh, config.camera_angle_x) if config.radius is None else config.radius
    intrinsics = Intrinsics.from_fov(config.size, config.size, config.camera_angle_x)
    poses = split_poses(config, radius)
    with MeshRenderer(mesh, intrinsics) as renderer:
        for split, split_pose in poses.items():
            file_paths = [f"./{split}/r_{i}" for i in range(len(split_pose))]
            for file_path, c2w in zip(file_paths, split_pose):
                rgba, depth = renderer.render(c2w)
                with atomic_path(out / f"{file_path}.png") as tmp:
                    imageio.imwrite(tmp, rgba)
                with atomic_path(out / f"{file_path}_depth.npy") as tmp:
                    np.save(tmp, depth.astype(np.float32))
            atomic_write_text(
                out / f"transforms_{split}.json", transforms_json(config.camera_angle_x, file_paths, split_pose)
            )

    with atomic_path(out / "mesh.ply") as tmp:
        mesh.export(tmp)
    points, normals = surface_samples(mesh, config.n_points, seed=config.seed)
    save_point_cloud(out / "points.ply", points, normals)
    gt = GroundTruth(mesh)
    if gt.watertight:
        samples = sample_points(
            mesh, config.n_uniform, config.n_surface, config.sigmas, seed=config.seed, ground_truth=gt
        )
        with atomic_path(out / "samples.npz") as tmp:
            np.savez(tmp, points=samples.points, occupancy=samples.occupancy, sdf=samples.sdf)
    else:
        warnings.warn(f"{name}: mesh is not watertight; samples.npz (occupancy, sdf) is not written", stacklevel=2)

    info = {"shape": name, **dataclasses.asdict(config), "radius": radius, "watertight": gt.watertight}
    info.update({f"{split}_views": n for split, n in split_sizes(config).items()})
    atomic_write_text(out / "dataset.json", json.dumps(info, indent=2))
    return out


def _check_config(config: ExportConfig) -> None:
    for key, n in split_sizes(config).items():
        if n <= 0:
            raise ValueError(f"the {key} split needs at least one view, got {n}")
    if config.size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {config.size}")
    if config.radius is not None and config.radius <= math.sqrt(3) * 0.5:
        raise ValueError(
            f"radius must put the cameras outside the object box (> {math.sqrt(3) * 0.5:.3f}), got {config.radius}"
        )
    if config.n_points <= 0:
        raise ValueError(f"n_points must be positive, got {config.n_points}")


# --- point clouds and meshes ------------------------------------------------------------------------


def save_point_cloud(path: str | Path, points: np.ndarray, normals: np.ndarray) -> None:
    """Write points ``[N, 3]`` with normals ``[N, 3]`` as a PLY file, atomically."""
    points, normals = np.asarray(points, dtype=np.float64), np.asarray(normals, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
        raise ValueError(f"points and normals must both be [N, 3]; got {points.shape} and {normals.shape}")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), cloud):
            raise OSError(f"open3d could not write {path}")


def load_point_cloud(root: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``[N, 3]`` and normals ``[N, 3]`` (float32; None when the file has none) from
    ``root/points.ply`` or a point-cloud path (PLY, PCD, XYZ: whatever open3d reads)."""
    path = Path(root)
    path = path / "points.ply" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"no point cloud at {path}")
    cloud = o3d.io.read_point_cloud(str(path))
    if not cloud.has_points():
        raise ValueError(f"{path} holds no points")
    normals = np.asarray(cloud.normals, dtype=np.float32) if cloud.has_normals() else None
    return np.asarray(cloud.points, dtype=np.float32), normals


def load_samples(root: str | Path) -> Samples:
    """The labelled points of ``root/samples.npz``: points ``[N, 3]``, occupancy ``[N]``, sdf ``[N]``."""
    path = Path(root)
    path = path / "samples.npz" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"no samples at {path} (export writes samples.npz only for watertight meshes)")
    with np.load(path) as data:
        missing = {"points", "occupancy", "sdf"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        return Samples(
            data["points"].astype(np.float32), data["occupancy"].astype(bool), data["sdf"].astype(np.float32)
        )


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """A mesh file as stored (no normalisation), or ``path/mesh.ply`` when ``path`` is a dataset folder."""
    path = Path(path)
    path = path / "mesh.ply" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(f"no mesh at {path}")
    mesh = trimesh.load(path, force="mesh", process=False)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path} holds no triangle mesh")
    return mesh


# --- loading Blender-layout images ---------------------------------------------------------------


@dataclass
class BlenderDataset:
    """One split of a Blender-layout dataset, loaded into memory."""

    images: np.ndarray  # [N, H, W, 4] float32 in [0, 1], straight (not premultiplied) alpha
    rgb: np.ndarray  # [N, H, W, 3] float32, composited on `background`
    masks: np.ndarray  # [N, H, W] bool, alpha > 0.5
    poses: np.ndarray  # [N, 4, 4] float32 camera-to-world (OpenGL convention)
    intrinsics: Intrinsics
    depths: np.ndarray | None  # [N, H, W] float32 depth along the viewing axis (0 = background), or None
    background: tuple[float, float, float]
    file_paths: list[str]

    def __len__(self) -> int:
        return len(self.poses)


def area_weights(n_in: int, n_out: int) -> np.ndarray:  # [n_out, n_in]
    """Resampling matrix of area averaging: output pixel ``i`` covers ``[i s, (i + 1) s)`` of the input
    (``s = n_in / n_out``) and averages the input pixels by their overlap with it; rows sum to 1."""
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    hi = lo + scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / scale


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:  # [H, W, C] -> [height, width, C]
    """Area-averaging resize of a float image (exact box filter for any scale factor)."""
    a_h = area_weights(image.shape[0], height)
    a_w = area_weights(image.shape[1], width)
    return np.einsum("ih,hwc,jw->ijc", a_h, image.astype(np.float64), a_w, optimize=True).astype(np.float32)


def resize_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:  # [H, W] -> [height, width]
    """Resize a depth map without mixing surfaces: min-pooling over the foreground (depth > 0) for
    integer reduction factors, nearest pixel centre otherwise."""
    h, w = depth.shape
    if h % height == 0 and w % width == 0:
        kh, kw = h // height, w // width
        blocks = np.where(depth > 0, depth, np.inf).reshape(height, kh, width, kw)
        pooled = blocks.min(axis=(1, 3))
        return np.where(np.isfinite(pooled), pooled, 0.0).astype(np.float32)
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return depth[np.ix_(rows, cols)].astype(np.float32)


def _read_rgba(path: Path) -> np.ndarray:  # -> [H, W, 4] float32 in [0, 1]
    image = np.asarray(imageio.imread(path))
    scale = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 3:
        image = np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)
    return image[..., :4]


def _image_path(root: Path, file_path: str) -> Path:
    path = root / file_path
    return path if path.suffix.lower() in (".png", ".jpg", ".jpeg") else path.with_name(path.name + ".png")


def load_blender(
    root: str | Path,
    split: Split = "train",
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    size: int | None = None,
    max_views: int | None = None,
) -> BlenderDataset:
    """Load one split of a NeRF Blender-layout folder (ours, or NeRF's original synthetic scenes).

    ``size`` resizes every image to ``size x size`` by area averaging of premultiplied colour (so the
    silhouette does not pick up the colour stored under transparent pixels); the intrinsics scale with
    it. Depth maps ``<file_path>_depth.npy`` are loaded when present and resized by min-pooling.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape != (3,) or bg.min() < 0 or bg.max() > 1:
        raise ValueError(f"background must be an RGB triple in [0, 1], got {background}")
    if size is not None and size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if max_views is not None and max_views <= 0:
        raise ValueError(f"max_views must be positive, got {max_views}")
    name = f"transforms_{split}.json"
    meta_path = root / name
    if not meta_path.is_file():
        raise ValueError(f"split {split!r}: {meta_path} does not exist (expected a NeRF Blender-layout folder)")
    meta = json.loads(meta_path.read_text())
    if "camera_angle_x" not in meta:
        raise ValueError(f"{name} has no camera_angle_x")
    frames = meta.get("frames")
    if not frames:
        raise ValueError(f"{name} has no frames")
    frames = frames[:max_views]

    images, depths, poses, file_paths = [], [], [], []
    for i, frame in enumerate(frames):
        if "file_path" not in frame:
            raise ValueError(f"{name}: frame {i} has no file_path")
        if "transform_matrix" not in frame:
            raise ValueError(f"{name}: frame {i} ({frame['file_path']}) has no transform_matrix")
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        if c2w.shape != (4, 4):
            raise ValueError(f"{name}: frame {i} transform_matrix must be 4x4, got shape {c2w.shape}")
        image_path = _image_path(root, frame["file_path"])
        if not image_path.is_file():
            raise ValueError(f"{name}: frame {i}: image file {image_path} does not exist")
        image = _read_rgba(image_path)
        if images and image.shape != images[0].shape:
            raise ValueError(f"{name}: {image_path} is {image.shape[:2]}, other images are {images[0].shape[:2]}")
        depth_path = image_path.with_name(image_path.stem + "_depth.npy")
        depths.append(np.load(depth_path).astype(np.float32) if depth_path.is_file() else None)
        images.append(image)
        poses.append(c2w)
        file_paths.append(frame["file_path"])

    height, width = images[0].shape[:2]
    intrinsics = Intrinsics.from_fov(width, height, float(meta["camera_angle_x"]))
    if size is not None and (size, size) != (height, width):
        intrinsics = intrinsics.resized(size, size)
        images = [_resize_rgba(im, size) for im in images]
        depths = [None if d is None else resize_depth(d, size, size) for d in depths]
    rgba = np.stack(images).astype(np.float32)
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + bg * (1.0 - alpha)
    has_depth = all(d is not None for d in depths)
    return BlenderDataset(
        images=rgba,
        rgb=rgb.astype(np.float32),
        masks=alpha[..., 0] > 0.5,
        poses=np.stack(poses).astype(np.float32),
        intrinsics=intrinsics,
        depths=np.stack(depths) if has_depth else None,
        background=tuple(float(c) for c in bg),
        file_paths=file_paths,
    )


def _resize_rgba(image: np.ndarray, size: int) -> np.ndarray:  # [H, W, 4] -> [size, size, 4]
    premultiplied = np.concatenate([image[..., :3] * image[..., 3:], image[..., 3:]], axis=-1)
    small = resize_area(premultiplied, size, size)
    alpha = small[..., 3:]
    rgb = np.where(alpha > 0, small[..., :3] / np.maximum(alpha, 1e-12), 0.0)
    return np.concatenate([np.clip(rgb, 0.0, 1.0), np.clip(alpha, 0.0, 1.0)], axis=-1)
