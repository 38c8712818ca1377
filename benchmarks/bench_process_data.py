"""``python -m vision3d process-data`` (COLMAP) on rendered photos, against the poses they were rendered with.

The ``spotted`` shape (a sphere under random coloured spots: texture SIFT can match) is rendered from ``--views``
cameras on a Fibonacci spiral over the upper hemisphere (NeRF's Blender field of view), composited on white and
written as plain photos, poses hidden. ``process-data`` (SIMPLE_PINHOLE camera, ``--mask-background``) recovers
poses and focal length. The recovered camera centres are aligned to the true ones by a similarity (Umeyama); the
table gives each camera's rotation error after that alignment, its centre error as a percentage of the camera
distance, and the focal length error.

Then ``fit gaussians`` runs twice with the same budget (``--steps``, the other options the defaults): on the
dataset process-data wrote, and on its twin with the true poses and focal length (the same images, masks, splits
and SfM points, the points moved into the true frame by the alignment), so only the poses differ. The issue's
acceptance: the test PSNR on recovered poses within 2 dB of the one on true poses, rotation errors < 2 degrees.

    python benchmarks/bench_process_data.py [--views 32] [--size 256] [--steps 3000] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vision3d.camera import Intrinsics, sphere_poses
from vision3d.colmap import Similarity, align_poses
from vision3d.commands import FIT_COMMANDS, fit
from vision3d.dataset import SPLITS, load_blender, load_point_cloud, transforms_json
from vision3d.process_data import ProcessData, process_data, save_points, write_photos
from vision3d.render import BLENDER_CAMERA_ANGLE_X, framing_radius, render_views
from vision3d.shapes import load_shape
from vision3d.splat_training import SplatConfig


class Result(NamedTuple):
    """The acceptance numbers."""

    views: int
    registered: int
    max_rotation_deg: float
    mean_rotation_deg: float
    max_translation_pct: float  # of the camera distance
    focal_error_pct: float
    psnr_true: float
    psnr_recovered: float
    seconds_colmap: float


def render_photos(views: int, size: int, folder: Path) -> np.ndarray:  # -> true c2w [views, 4, 4]
    """Photos ``folder/<i:03d>.png`` of the spotted sphere from a spiral of cameras over the upper hemisphere."""
    mesh = load_shape("spotted")
    poses = sphere_poses(views, framing_radius(mesh, BLENDER_CAMERA_ANGLE_X), "spiral", upper_hemisphere=True)
    write_photos(render_views(mesh, poses, Intrinsics.from_fov(size, size, BLENDER_CAMERA_ANGLE_X)).rgba, folder)
    return poses


def recovered_poses(data: Path) -> dict[str, np.ndarray]:
    """The poses of a process-data dataset by photo stem (train and test: val repeats test)."""
    poses = {}
    for split in ("train", "test"):
        views = load_blender(data, split)
        poses.update({Path(p).name: c2w for p, c2w in zip(views.file_paths, views.poses.astype(np.float64))})
    return poses


def true_twin(data: Path, true: np.ndarray, angle: float, similarity: Similarity, out: Path) -> Path:
    """A copy of ``data`` whose transforms hold the true poses and field of view ``angle``, points moved into the true
    frame."""
    for split in ("train", "test"):
        shutil.copytree(data / split, out / split)
    for split in SPLITS:
        frames = json.loads((data / f"transforms_{split}.json").read_text())["frames"]
        paths = [f["file_path"] for f in frames]
        (out / f"transforms_{split}.json").write_text(
            transforms_json(angle, paths, np.stack([true[int(Path(p).name)] for p in paths])))
    points = load_point_cloud(data)[0].astype(np.float64)
    save_points(out / "points.ply", similarity.points(points), np.full((len(points), 3), 128))
    return out


def fit_psnr(data: Path, run: Path, steps: int, threads: int) -> float:
    """Test PSNR of ``fit gaussians`` with the default options and ``steps`` steps."""
    defaults = SplatConfig()
    fit_config = dataclasses.replace(defaults.fit, steps=steps, threads=threads, progress=False, tensorboard=False)
    config = dataclasses.replace(defaults, fit=fit_config)
    return float(fit(FIT_COMMANDS["gaussians"](data=(data,), out=run, config=config, video=False))["appearance"]["psnr"])


def compare(out: Path, views: int = 32, size: int = 256, steps: int = 3000, threads: int = 2,
            say=lambda text: None) -> Result:
    """Render, process, align, fit twice; every file goes under ``out`` (which must not exist)."""
    true = render_photos(views, size, out / "photos")
    start = time.perf_counter()
    summary = process_data(ProcessData(out / "photos", out / "recovered", camera_model="SIMPLE_PINHOLE",
                                       mask_background=True, threads=threads), say=say)
    seconds = time.perf_counter() - start
    recovered = recovered_poses(out / "recovered")
    names = sorted(recovered)
    errors = align_poses(np.stack([recovered[n] for n in names]), true[[int(n) for n in names]])
    focal = 0.5 * size / np.tan(0.5 * BLENDER_CAMERA_ANGLE_X)  # the written images are cropped: same focal length
    width = summary["image_size"][0]
    focal_error = 0.5 * width / np.tan(0.5 * summary["camera_angle_x"]) / focal - 1.0
    twin = true_twin(out / "recovered", true, 2.0 * np.arctan(0.5 * width / focal), errors.similarity, out / "true")
    radius = float(np.linalg.norm(true[0, :3, 3]))
    say(f"fit gaussians, {steps} steps: true poses")
    psnr_true = fit_psnr(twin, out / "run_true", steps, threads)
    say(f"fit gaussians, {steps} steps: recovered poses")
    psnr_recovered = fit_psnr(out / "recovered", out / "run_recovered", steps, threads)
    return Result(views, summary["registered"], float(errors.rotation_deg.max()), float(errors.rotation_deg.mean()),
                  float(100 * errors.translation.max() / radius), float(100 * focal_error), psnr_true, psnr_recovered,
                  seconds)


def table(result: Result) -> str:
    """The result as a Markdown table."""
    rows = [
        ("views registered", f"{result.registered} / {result.views}"),
        ("rotation error, max / mean (deg)", f"{result.max_rotation_deg:.3f} / {result.mean_rotation_deg:.3f}"),
        ("camera centre error, max (% of distance)", f"{result.max_translation_pct:.2f}"),
        ("focal length error (%)", f"{result.focal_error_pct:+.2f}"),
        ("fit gaussians test PSNR, true poses (dB)", f"{result.psnr_true:.2f}"),
        ("fit gaussians test PSNR, recovered poses (dB)", f"{result.psnr_recovered:.2f}"),
        ("PSNR difference (dB; acceptance < 2)", f"{result.psnr_true - result.psnr_recovered:+.2f}"),
        ("process-data seconds", f"{result.seconds_colmap:.0f}"),
    ]
    return "\n".join(["| quantity | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=SplatConfig().fit.steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out if args.out is not None else Path(tmp) / "bench"
        result = compare(out, args.views, args.size, args.steps, args.threads, say=print)
    print(table(result))


if __name__ == "__main__":
    main()
