"""``python -m vision3d process-data``: your own photos as a NeRF Blender-layout dataset, posed by COLMAP.

The photos go through structure from motion (:mod:`vision3d.colmap`: SIFT features, exhaustive matching,
incremental mapping, undistortion, one camera for all photos), and come out in the layout that
:func:`vision3d.dataset.load_blender` reads, so ``fit nerf``, ``fit gaussians`` and ``fit dvr`` take them like
a rendered dataset::

    DATA/
      transforms_{train,val,test}.json  camera_angle_x; frames[].transform_matrix (c2w, OpenGL axes)
      train/<photo>.png, test/...       undistorted photos (RGBA with --mask-background)
      points.ply                        COLMAP's sparse points with their colours (fit gaussians starts there)
      process_data.json                 what was registered, the camera, and the transform from COLMAP's world
      colmap/                           database.db, sparse/ (the mapper's binary models), model/ (the largest
                                        one as text), undistorted/ (images and model), text/ (that model as
                                        text), log.txt (everything COLMAP printed)

The scene is normalised like a rendered one (nerfstudio's auto-orient and scale, in spirit): the world's
``+z`` is the mean of the cameras' up directions, and the sparse points' robust bounding box (the 1st to
99th percentile on each axis) is centred at the origin with its longest side 1, the box our methods
sample (``SCENE_BOUND``). ``process_data.json`` keeps that similarity, ``x_ours = transform @ x_colmap``.

Every ``test_every``-th registered photo, in file-name order, is a test view (as in the LLFF and nerfstudio
evaluations, every 8th); the validation split repeats the test views, so no other view is withheld.

Until the command finishes, the folder holds an in-progress record that the loaders refuse; a failed run leaves
it (and COLMAP's log) behind, and the next run wants a new or empty folder.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import open3d as o3d
from PIL import Image as PILImage
from scipy import ndimage

from envs.io import atomic_path, atomic_write_text
from vision3d.colmap import (
    CameraModel,
    Similarity,
    check_step,
    colmap_program,
    corner_distortion,
    image_angle,
    largest_model,
    opencv_to_opengl,
    pinhole,
    read_cameras_txt,
    read_images_txt,
    read_points3d_txt,
    rotation_between,
    run_colmap,
)
from vision3d.datafiles import IN_PROGRESS, read_rgba
from vision3d.dataset import SPLITS, resize_area, transforms_json
from vision3d.render import composite

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FORMAT = "vision3d-process-data"
"""The ``format`` key of ``process_data.json`` and of the in-progress record a running command leaves."""
EDGE_CROP = 1
"""Pixels cropped from every side of the undistorted images: COLMAP 3.8's undistorter leaves its first row and last
column black (their samples fall half a pixel outside the photo), even for a pinhole camera. Cropping the same on
every side keeps the principal point centred."""
BOX_QUANTILE = 0.01
"""The normalisation's bounding box spans the points from this quantile to ``1 -`` it on each axis."""


@dataclass
class ProcessData:
    """Recover the poses and intrinsics of your own photos with COLMAP (CPU) and write them as a NeRF Blender-layout
    dataset (undistorted images, transforms_*.json, points.ply) for fit nerf, gaussians and dvr."""

    images: Path
    """Folder of photos (PNG or JPEG, all the same size, from one camera), taken all around the object."""
    out: Path
    """Dataset folder to write (new or empty): transforms_*.json, train/ and test/ images, points.ply,
    process_data.json, colmap/ (COLMAP's database, models and log.txt)."""
    camera_model: CameraModel = "SIMPLE_RADIAL"
    """COLMAP's camera model: SIMPLE_PINHOLE for distortion-free images, SIMPLE_RADIAL (COLMAP's default) or RADIAL
    for most photos, PINHOLE or OPENCV for a lens with different focal lengths or tangential distortion."""
    mask_background: bool = False
    """Treat a near-uniform background as transparent: pixels within --mask-threshold of the median colour of the
    image border, and connected to the border, get alpha 0 (photograph the object before a plain wall or sheet)."""
    mask_threshold: float = 0.1
    """Largest difference in any channel (colours in [0, 1]) from the border colour that --mask-background counts as
    background."""
    test_every: int = 8
    """Every test_every-th registered photo, in file-name order and from the first, is a test view (val repeats
    them)."""
    max_image_size: int = 1600
    """Longest image side COLMAP works at (features and undistorted output); larger photos are scaled down."""
    threads: int = -1
    """CPU threads COLMAP uses (-1: all)."""
    seed: int = 0
    """COLMAP's random seed (RANSAC); its multi-threaded steps are still not bit-for-bit reproducible."""
    json: bool = False
    """Print one JSON object with the summary."""


# --- checks before any work ---------------------------------------------------------------------------------


def photo_files(folder: Path) -> list[Path]:
    """The photos of ``folder`` (PNG or JPEG, not recursive), sorted by name; a one-line ``ValueError`` unless
    there are at least 3, with distinct stems (the output names) and one image size."""
    if not folder.is_dir():
        raise ValueError(f"--images: {folder} is not a folder of photos")
    photos = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(photos) < 3:
        raise ValueError(f"--images: {folder} holds {len(photos)} PNG or JPEG files; structure from motion needs "
                         "at least 3 (a few dozen, all around the object, work best)")
    stems = [p.stem for p in photos]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise ValueError(f"--images: several photos are named {twins[0]} (with different suffixes); rename them")
    sizes = {}
    for path in photos:
        try:
            with PILImage.open(path) as image:
                sizes.setdefault(image.size, path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--images: cannot read {path} as an image: {exc}") from exc
    if len(sizes) > 1:
        (a, first), (b, other) = list(sizes.items())[:2]
        raise ValueError(f"--images: photos must share one size (one camera): {first.name} is {a[0]}x{a[1]}, "
                         f"{other.name} is {b[0]}x{b[1]}")
    return photos


def check_args(args: ProcessData) -> list[Path]:
    """Everything that would fail late, checked first; returns the photos."""
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise ValueError(f"--out: {args.out} must be a new or empty folder")
    if not 0.0 < args.mask_threshold < 1.0:
        raise ValueError(f"--mask-threshold must be in (0, 1), got {args.mask_threshold}")
    if args.test_every < 2:
        raise ValueError(f"--test-every must be at least 2 (1 would leave no training views), got {args.test_every}")
    if args.max_image_size < 32:
        raise ValueError(f"--max-image-size must be at least 32 pixels, got {args.max_image_size}")
    if args.threads == 0 or args.threads < -1:
        raise ValueError(f"--threads must be positive or -1 (all), got {args.threads}")
    photos = photo_files(args.images)
    colmap_program()
    return photos


# --- pure steps ---------------------------------------------------------------------------------------------


def background_mask(rgb: np.ndarray, threshold: float) -> np.ndarray:  # [H, W, 3] in [0, 1] -> [H, W] bool
    """The foreground of a photo before a near-uniform background: a pixel is background when every channel is
    within ``threshold`` of the median colour of the image border and a path of such pixels joins it to the
    border (so a hole of the background colour inside the object stays foreground)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be [H, W, 3], got {rgb.shape}")
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    close = np.abs(rgb - np.median(border, axis=0)).max(axis=2) <= threshold
    labels, _ = ndimage.label(close)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return ~np.isin(labels, touching[touching > 0])


def square_pixels(image: np.ndarray, fx: float, fy: float) -> np.ndarray:  # [H, W, C] -> [H', W, C]
    """Resample the rows of ``image`` so that its vertical focal length equals ``fx`` (``H' = round(H fx / fy)``);
    the Blender layout stores one field of view, so square pixels. Unchanged when ``fx`` and ``fy`` agree to 0.1%."""
    if abs(fx / fy - 1.0) < 1e-3:
        return image
    height = max(1, round(image.shape[0] * fx / fy))
    return resize_area(image, height, image.shape[1])


def split_names(names: list[str], test_every: int) -> dict[str, list[str]]:
    """``names`` sorted, every ``test_every``-th (from the first) to test, the rest to train; val repeats test."""
    ordered = sorted(names)
    test = ordered[::test_every]
    return {"train": [n for n in ordered if n not in set(test)], "val": test, "test": test}


def normalisation(c2w: np.ndarray, points: np.ndarray, quantile: float = BOX_QUANTILE) -> Similarity:
    """The similarity into our scene frame: the cameras' mean up direction (OpenGL ``+y``, ``c2w [N, 4, 4]``)
    to ``+z``, then the points' (``[M, 3]``) ``quantile``-robust bounding box centred with its longest side 1."""
    up = np.asarray(c2w)[:, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-9:
        up = np.array([0.0, 0.0, 1.0])  # the cameras disagree on up entirely: keep COLMAP's axes
    rotation = rotation_between(up, np.array([0.0, 0.0, 1.0]))
    rotated = np.asarray(points, dtype=np.float64) @ rotation.T
    lo, hi = np.quantile(rotated, quantile, axis=0), np.quantile(rotated, 1.0 - quantile, axis=0)
    scale = 1.0 / max(float(np.max(hi - lo)), 1e-12)
    return Similarity(scale, rotation, -scale * 0.5 * (lo + hi))


def write_photos(rgba: np.ndarray, out: Path, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[Path]:
    """Rendered views ``[N, H, W, 4]`` (uint8) composited on ``background`` and written as RGB PNGs
    ``out/<index:03d>.png``, without their poses: what a camera would give ``process-data`` (tests, benchmarks)."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 4 or rgba.shape[-1] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"rgba must be uint8 [N, H, W, 4], got {rgba.dtype} {list(rgba.shape)}")
    written = []
    for i, view in enumerate(rgba):
        with atomic_path(out / f"{i:03d}.png") as tmp:
            imageio.imwrite(tmp, composite(view, background))
        written.append(out / f"{i:03d}.png")
    return written


# --- the command --------------------------------------------------------------------------------------------


def run_structure_from_motion(args: ProcessData, photos: list[Path], work: Path, say: Callable[[str], None]) -> Path:
    """COLMAP's steps into ``work``: features, matches, the mapper's largest model (as text in ``work/model``),
    undistorted images and their model (as text in ``work/text``, the folder returned)."""
    log, database, sparse = work / "log.txt", work / "database.db", work / "sparse"
    program = colmap_program()
    image_list = work / "image_list.txt"
    atomic_write_text(image_list, "".join(f"{p.name}\n" for p in photos))
    common = {"random_seed": args.seed}

    def step(name: str, options: dict[str, object]) -> int:
        return run_colmap(name, {**common, **options}, log, say, program)

    check_step(step("feature_extractor", {
        "database_path": database, "image_path": args.images, "image_list_path": image_list,
        "ImageReader.single_camera": True, "ImageReader.camera_model": args.camera_model,
        "SiftExtraction.use_gpu": False, "SiftExtraction.num_threads": args.threads,
        "SiftExtraction.max_image_size": args.max_image_size}), "feature_extractor", log)
    check_step(step("exhaustive_matcher", {
        "database_path": database, "SiftMatching.use_gpu": False, "SiftMatching.num_threads": args.threads}),
        "exhaustive_matcher", log)
    sparse.mkdir(parents=True, exist_ok=True)
    status = step("mapper", {
        "database_path": database, "image_path": args.images, "output_path": sparse,
        "Mapper.num_threads": args.threads, "Mapper.ba_refine_principal_point": False})
    model = largest_model(sparse)
    if model is None:
        raise ValueError(f"COLMAP registered no model from {args.images} (mapper exit status {status}): the photos "
                         f"need texture and overlapping views; see {log}")
    (work / "model").mkdir(exist_ok=True)
    check_step(step("model_converter", {"input_path": model, "output_path": work / "model", "output_type": "TXT"}),
               "model_converter", log)
    check_step(step("image_undistorter", {
        "image_path": args.images, "input_path": model, "output_path": work / "undistorted",
        "output_type": "COLMAP", "max_image_size": args.max_image_size}), "image_undistorter", log)
    text = work / "text"
    text.mkdir(exist_ok=True)
    check_step(step("model_converter", {
        "input_path": work / "undistorted" / "sparse", "output_path": text, "output_type": "TXT"}),
        "model_converter", log)
    return text


def write_image(source: Path, target: Path, fx: float, fy: float, mask: float | None) -> tuple[int, int]:
    """An undistorted photo as PNG, ``EDGE_CROP`` pixels cropped from every side, with square pixels, its
    background transparent when ``mask`` (the threshold) is given; returns its width and height."""
    rgb = read_rgba(source, f"undistorted image {source.name}")[EDGE_CROP:-EDGE_CROP, EDGE_CROP:-EDGE_CROP, :3]
    channels = [rgb] if mask is None else [rgb, background_mask(rgb, mask)[..., None].astype(np.float32)]
    image = square_pixels(np.concatenate(channels, axis=-1), fx, fy)
    with atomic_path(target) as tmp:
        imageio.imwrite(tmp, np.round(255.0 * np.clip(image, 0.0, 1.0)).astype(np.uint8))
    return image.shape[1], image.shape[0]


def save_points(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Points ``[N, 3]`` with uint8 colours ``[N, 3]`` as a PLY file (no normals), atomically."""
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(np.asarray(rgb, dtype=np.float64) / 255.0)
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), cloud):
            raise OSError(f"open3d could not write {path}")


def process_data(args: ProcessData, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run COLMAP on ``args.images`` and write the dataset ``args.out``; returns the summary (also in
    ``process_data.json``). Progress goes to ``say`` (default: stderr)."""
    say = say if say is not None else (lambda text: print(text, file=sys.stderr))
    start = time.perf_counter()
    photos = check_args(args)
    out, work = args.out, args.out / "colmap"
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / IN_PROGRESS, json.dumps({"format": FORMAT}))  # loaders refuse the folder until done
    say(f"{len(photos)} photos from {args.images}; COLMAP's log: {work / 'log.txt'}")
    text = run_structure_from_motion(args, photos, work, say)

    cameras = read_cameras_txt(text / "cameras.txt")
    images = sorted(read_images_txt(text / "images.txt"), key=lambda image: image.name)
    points = read_points3d_txt(text / "points3D.txt")
    registered = [image.name for image in images]
    say(f"registered {len(registered)} of {len(photos)} photos, {len(points.xyz)} points")
    if len(registered) < 3:
        raise ValueError(f"COLMAP registered only {len(registered)} of {len(photos)} photos (at least 3 needed): "
                         f"the photos need more texture and overlap; see {work / 'log.txt'}")
    if len({image.camera_id for image in images}) != 1:
        raise RuntimeError(f"COLMAP's model in {text} has several cameras; process-data asked for one")
    camera = cameras[images[0].camera_id]
    fx, fy, cx, cy = pinhole(camera)
    estimated = next(iter(read_cameras_txt(work / "model" / "cameras.txt").values()))
    distortion = corner_distortion(estimated)
    if distortion > 0.05:
        say(f"note: COLMAP's {estimated.model} camera moves the image corners by {100 * distortion:.0f}% of their "
            "radius; if the photos have no such lens distortion, --camera-model SIMPLE_PINHOLE fixes the focal length")

    c2w = opencv_to_opengl(np.stack([image.c2w() for image in images]))
    similarity = normalisation(c2w, points.xyz)
    poses = dict(zip(registered, similarity.poses(c2w)))
    splits = split_names(registered, args.test_every)
    say("writing the dataset" + (" (masking the background)" if args.mask_background else ""))
    size = None
    for split in ("train", "test"):
        for name in splits[split]:
            size = write_image(work / "undistorted" / "images" / name, out / split / f"{Path(name).stem}.png",
                               fx, fy, args.mask_threshold if args.mask_background else None)
    angle = image_angle(fx, camera.width - 2 * EDGE_CROP)
    for split in SPLITS:
        names = splits[split]
        paths = [f"./{'test' if split == 'val' else split}/{Path(n).stem}" for n in names]
        atomic_write_text(out / f"transforms_{split}.json",
                          transforms_json(angle, paths, np.stack([poses[n] for n in names])))
    save_points(out / "points.ply", similarity.points(points.xyz), points.rgb)

    summary = {
        "out": str(out), "photos": len(photos), "registered": len(registered),
        "unregistered": sorted({p.name for p in photos} - set(registered)),
        **{f"{split}_views": len(splits[split]) for split in SPLITS},
        "points": len(points.xyz), "mean_reprojection_error_px": round(float(points.error.mean()), 4),
        "camera_angle_x": angle, "image_size": list(size or (camera.width, camera.height)),
        "principal_point_offset_px": [cx - 0.5 * camera.width, cy - 0.5 * camera.height],
        "seconds": round(time.perf_counter() - start, 1),
    }
    record = {
        "format": FORMAT, **summary,
        "options": {key: str(value) if isinstance(value, Path) else value for key, value in asdict(args).items()},
        "colmap_camera": {"model": estimated.model, "width": estimated.width, "height": estimated.height,
                          "params": estimated.params.tolist(), "corner_distortion": distortion},
        "undistorted_camera": {"model": camera.model, "width": camera.width, "height": camera.height,
                               "params": camera.params.tolist()},
        "transform": similarity.matrix().tolist(),
        "transform_note": "x_dataset = transform @ x_colmap (homogeneous) maps COLMAP's world (colmap/text) to this "
                          "dataset's; camera axes also turn from OpenCV's to OpenGL's (y and z negated)",
        "splits": splits,
    }
    atomic_write_text(out / "process_data.json", json.dumps(record, indent=2))
    (out / IN_PROGRESS).unlink()
    return summary
