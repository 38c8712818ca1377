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
      dataset.json  provenance: shape name, views, size, seed, camera settings, shading (lambert, or
                    phong with its k_s and shininess); the files written
                    (what the next export into the folder deletes: :func:`previous_export_files`)

Every loader checks what it reads and answers a malformed file with a one-line ``ValueError`` naming
it (and the frame, for images and poses); the file readers are in :mod:`vision3d.datafiles`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import imageio.v2 as imageio
import numpy as np
import open3d as o3d
import trimesh

from envs.io import atomic_path, atomic_write_text, remove_stale_temporaries
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.datafiles import (
    IN_PROGRESS,
    check_finished,
    check_frame,
    check_ply,
    dataset_file,
    first_line,
    load_npz,
    read_depth,
    read_rgba,
    read_transforms,
)
from vision3d.groundtruth import GroundTruth, Samples, sample_points, surface_samples
from vision3d.render import BLENDER_CAMERA_ANGLE_X, MeshRenderer, Specular, framing_radius
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
    shading: Literal["lambert", "phong"] = "lambert"
    """lambert: every surface point has one colour in all views; phong adds view-dependent highlights."""
    k_s: float = Specular.k_s
    """Specular reflectance of the phong highlights (recorded as null for lambert)."""
    shininess: float = Specular.shininess
    """Blinn-Phong exponent of the phong highlights (recorded as null for lambert)."""

    def specular(self) -> Specular | None:
        """The highlights the renderer adds: None for Lambert shading."""
        return Specular(self.k_s, self.shininess) if self.shading == "phong" else None


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

    ``out`` must be new, empty or a dataset an earlier export wrote; that dataset's files (and only
    those: :func:`previous_export_files`) are deleted first, with the temporary files a killed export's
    atomic writes left. Every file is written atomically, under an in-progress record
    (``.export-in-progress.json``) that the loaders refuse, and ``dataset.json`` comes last: an
    interrupted export never leaves a folder that looks complete.
    """
    config = config if config is not None else ExportConfig()
    try:
        config = dataclasses.replace(config, **overrides)
    except TypeError as exc:
        fields = ", ".join(f.name for f in dataclasses.fields(ExportConfig))
        raise ValueError(f"unknown export option in {sorted(overrides)}; options are: {fields}") from exc
    _check_config(config)
    out = Path(out)
    previous = previous_export_files(out)
    if isinstance(mesh, (str, Path)):
        mesh = load_shape(mesh)
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh, a shape name or a mesh path, got {type(mesh).__name__}")
    name = str(mesh.metadata.get("name", "mesh"))
    mesh = normalize_mesh(mesh)

    radius = framing_radius(mesh, config.camera_angle_x) if config.radius is None else config.radius
    intrinsics = Intrinsics.from_fov(config.size, config.size, config.camera_angle_x)
    poses = split_poses(config, radius)
    _begin_export(out, previous | set(export_files(split_sizes(config))))
    written: list[str] = []
    with MeshRenderer(mesh, intrinsics, specular=config.specular()) as renderer:
        for split, split_pose in poses.items():
            file_paths = [f"./{split}/r_{i}" for i in range(len(split_pose))]
            for i, c2w in enumerate(split_pose):
                rgba, depth = renderer.render(c2w)
                with atomic_path(out / f"{split}/r_{i}.png") as tmp:
                    imageio.imwrite(tmp, rgba)
                with atomic_path(out / f"{split}/r_{i}_depth.npy") as tmp:
                    np.save(tmp, depth.astype(np.float32))
                written += [f"{split}/r_{i}.png", f"{split}/r_{i}_depth.npy"]
            atomic_write_text(
                out / f"transforms_{split}.json", transforms_json(config.camera_angle_x, file_paths, split_pose)
            )
            written.append(f"transforms_{split}.json")

    with atomic_path(out / "mesh.ply") as tmp:
        mesh.export(tmp)
    points, normals = surface_samples(mesh, config.n_points, seed=config.seed)
    save_point_cloud(out / "points.ply", points, normals)
    written += ["mesh.ply", "points.ply"]
    gt = GroundTruth(mesh)
    if gt.watertight:
        samples = sample_points(
            mesh, config.n_uniform, config.n_surface, config.sigmas, seed=config.seed, ground_truth=gt
        )
        with atomic_path(out / "samples.npz") as tmp:
            np.savez(tmp, points=samples.points, occupancy=samples.occupancy, sdf=samples.sdf)
        written.append("samples.npz")
    else:
        warnings.warn(f"{name}: mesh is not watertight; samples.npz (occupancy, sdf) is not written", stacklevel=2)

    info = {"shape": name, **dataclasses.asdict(config), "radius": radius, "watertight": gt.watertight}
    if config.shading == "lambert":
        info.update(k_s=None, shininess=None)
    info.update({f"{split}_views": n for split, n in split_sizes(config).items()})
    info.update({"format": EXPORT_FORMAT, "files": written})
    atomic_write_text(out / DATASET_JSON, json.dumps(info, indent=2))
    (out / IN_PROGRESS).unlink()
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
    if config.shading not in ("lambert", "phong"):
        raise ValueError(f"shading must be 'lambert' or 'phong', got {config.shading!r}")
    Specular(config.k_s, config.shininess)  # checks both values, whatever the shading


# --- the dataset folder: what an export owns, deletes and leaves ----------------------------------

DATASET_JSON = "dataset.json"
EXPORT_FORMAT = "vision3d-blender-export"
"""The ``format`` key of ``dataset.json`` and of the in-progress record: what marks a folder as ours."""
_TOP_LEVEL_FILES = (DATASET_JSON, *(f"transforms_{s}.json" for s in SPLITS), "mesh.ply", "points.ply", "samples.npz")
_VIEW_FILE = re.compile(r"(train|val|test)/r_[0-9]+(\.png|_depth\.npy)")
_LEGACY_KEYS = {"shape", "views", "size", "seed", "radius", "watertight"}  # dataset.json before its file list


def export_files(counts: dict[Split, int]) -> list[str]:
    """Paths relative to the dataset folder of everything an export with ``counts`` views per split can write."""
    views = [f"{split}/r_{i}{ext}" for split in SPLITS for i in range(counts[split]) for ext in (".png", "_depth.npy")]
    return [*_TOP_LEVEL_FILES, *views]


def _is_export_file(relative: str) -> bool:
    return relative in _TOP_LEVEL_FILES or _VIEW_FILE.fullmatch(relative) is not None


def _export_record(path: Path) -> set[str] | None:
    """The files listed by an export's ``dataset.json`` or in-progress record; None if ``path`` is not one."""
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("format") == EXPORT_FORMAT and isinstance(info.get("files"), list):
        return {f for f in info["files"] if isinstance(f, str)}
    if _LEGACY_KEYS <= info.keys():  # older exports wrote the same names without listing them
        return {
            f"{split}/{p.name}" for split in SPLITS if (path.parent / split).is_dir()
            for p in (path.parent / split).iterdir() if _VIEW_FILE.fullmatch(f"{split}/{p.name}")
        }
    return None


def previous_export_files(out: str | Path) -> set[str]:
    """The files an earlier export wrote into ``out`` (relative paths), which the next export deletes.

    These are the names an export writes (``transforms_*.json``, ``mesh.ply``, ``points.ply``,
    ``samples.npz``, ``dataset.json``, ``<split>/r_<i>.png`` and ``_depth.npy``) that its
    ``dataset.json`` or in-progress record lists, plus the fixed top-level names; other files stay.
    Empty for a new or empty folder. A non-empty folder without such a record is refused with a
    ``ValueError`` (``render --out ~`` must not delete a home folder), as is a file.
    """
    out = Path(out)
    if not out.exists():
        return set()
    if not out.is_dir():
        raise ValueError(f"out: {out} is a file, expected a dataset folder")
    if not any(out.iterdir()):
        return set()
    records = [r for r in (_export_record(out / IN_PROGRESS), _export_record(out / DATASET_JSON)) if r is not None]
    if not records:
        raise ValueError(
            f"out: {out} is not empty and holds no dataset written by export (no dataset.json of ours); "
            "choose a new or empty folder"
        )
    return {f for f in set(_TOP_LEVEL_FILES).union(*records) if _is_export_file(f)}


def _begin_export(out: Path, files: set[str]) -> None:
    """Record ``files`` as in progress, then delete those that exist (``dataset.json`` first) and the
    temporary files of atomic writes that a killed export left in ``out`` and its split folders."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / IN_PROGRESS, json.dumps({"format": EXPORT_FORMAT, "files": sorted(files)}, indent=0))
    # Only the folders an export writes, not recursive: other subfolders (and split folders that link
    # elsewhere) are not ours, and a live writer's temporary file there must not vanish under it.
    for folder in (out, *(out / split for split in SPLITS if not (out / split).is_symlink())):
        remove_stale_temporaries(folder)
    root = out.resolve()
    for relative in sorted(files, key=lambda f: f != DATASET_JSON):
        path = out / relative
        if path.parent.resolve() != root / Path(relative).parent:
            continue  # a split folder that links elsewhere: not ours to empty
        if path.is_symlink() or path.is_file():
            path.unlink()
    for split in SPLITS:
        if (out / split).is_dir() and not (out / split).is_symlink() and not any((out / split).iterdir()):
            (out / split).rmdir()


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
    path = dataset_file(root, "points.ply", "point cloud")
    if path.suffix.lower() == ".ply":
        check_ply(path)  # open3d fills a truncated PLY up with zeros and carries on
    cloud = o3d.io.read_point_cloud(str(path))
    if not cloud.has_points():
        raise ValueError(f"{path} holds no points (or is not a point cloud open3d can read)")
    points = np.asarray(cloud.points, dtype=np.float32)
    normals = np.asarray(cloud.normals, dtype=np.float32) if cloud.has_normals() else None
    if not np.isfinite(points).all() or (normals is not None and not np.isfinite(normals).all()):
        raise ValueError(f"{path} holds NaN or Inf coordinates")
    return points, normals


def load_samples(root: str | Path) -> Samples:
    """The labelled points of ``root/samples.npz``: points ``[N, 3]``, occupancy ``[N]``, sdf ``[N]``."""
    path = dataset_file(root, "samples.npz", "samples", "(export writes samples.npz only for watertight meshes)")
    arrays = load_npz(path, ("points", "occupancy", "sdf"))
    points, occupancy, sdf = arrays["points"], arrays["occupancy"], arrays["sdf"]
    n = len(points) if points.ndim == 2 else -1
    if points.shape != (n, 3) or n == 0 or occupancy.shape != (n,) or sdf.shape != (n,):
        raise ValueError(
            f"{path}: expected points [N, 3], occupancy [N] and sdf [N] with N > 0, got "
            f"{list(points.shape)}, {list(occupancy.shape)} and {list(sdf.shape)}"
        )
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: {key} must hold numbers, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: {key} holds NaN or Inf")
    if occupancy.dtype != bool and not np.isin(occupancy, (0, 1)).all():
        raise ValueError(f"{path}: occupancy must be boolean (0 or 1)")
    return Samples(points.astype(np.float32), occupancy.astype(bool), sdf.astype(np.float32))


def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """A mesh file as stored (no normalisation), or ``path/mesh.ply`` when ``path`` is a dataset folder."""
    path = dataset_file(path, "mesh.ply", "mesh")
    if path.suffix.lower() == ".ply":
        check_ply(path)
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ValueError(f"{path}: cannot read a mesh: {first_line(exc)}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path} holds no triangle mesh")
    faces = np.asarray(mesh.faces)
    if not np.isfinite(mesh.vertices).all() or faces.min() < 0 or faces.max() >= len(mesh.vertices):
        raise ValueError(f"{path}: the mesh has NaN/Inf vertices or faces that index no vertex")
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
    Anything malformed (JSON, camera angle, a frame, a pose that is not rigid, an image, a depth map)
    is a one-line ``ValueError`` naming the file and, where it applies, the frame.
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
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise ValueError(f"split {split!r}: {meta_path} does not exist (expected a NeRF Blender-layout folder)")
    check_finished(root)
    angle, frames = read_transforms(meta_path)
    frames = frames[:max_views]

    images, depths, poses, file_paths = [], [], [], []
    for i, frame in enumerate(frames):
        file_path, c2w, where = check_frame(frame, f"{meta_path}: frame {i}")
        image_path = _image_path(root, file_path)
        if not image_path.is_file():
            raise ValueError(f"{where}: image file {image_path} does not exist")
        image = read_rgba(image_path, where)
        if images and image.shape[:2] != images[0].shape[:2]:
            raise ValueError(f"{where}: {image_path} is {image.shape[:2]}, other images are {images[0].shape[:2]}")
        depth_path = image_path.with_name(image_path.stem + "_depth.npy")
        depths.append(read_depth(depth_path, image.shape[:2], where) if depth_path.is_file() else None)
        images.append(image)
        poses.append(c2w)
        file_paths.append(file_path)

    height, width = images[0].shape[:2]
    intrinsics = Intrinsics.from_fov(width, height, angle)
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
