"""``python -m vision3d process-data``: checks of its input, its pure steps, and COLMAP end to end on rendered photos
whose poses are hidden (recovered up to a similarity, rotation errors < 2 degrees)."""

import importlib.util
import json
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from generative.training import FitConfig
from vision3d.__main__ import main
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.colmap import align_poses, read_images_txt
from vision3d.commands import FIT_COMMANDS, fit
from vision3d.dataset import load_blender, load_point_cloud
from vision3d.process_data import (
    ProcessData,
    background_mask,
    check_args,
    normalisation,
    photo_files,
    split_names,
    square_pixels,
    write_photos,
)
from vision3d.render import BLENDER_CAMERA_ANGLE_X, framing_radius, render_views
from vision3d.shapes import load_shape
from vision3d.splat_training import SplatConfig

needs_colmap = pytest.mark.skipif(shutil.which("colmap") is None,
                                  reason="colmap is not installed (Debian/Ubuntu: apt-get install colmap)")


# --- input checks -------------------------------------------------------------------------------------------


def _photos(folder: Path, sizes: list[tuple[int, int]], suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        imageio.imwrite(folder / f"{i:02d}{suffix}", np.full((h, w, 3), 40 * i, np.uint8))


def test_bad_photo_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="--images: .* is not a folder"):
        photo_files(tmp_path / "missing")
    _photos(tmp_path / "two", [(8, 8)] * 2)
    (tmp_path / "two" / "notes.txt").write_text("not a photo")
    with pytest.raises(ValueError, match="holds 2 PNG or JPEG files"):
        photo_files(tmp_path / "two")
    _photos(tmp_path / "sizes", [(8, 8), (8, 8), (8, 6)])
    with pytest.raises(ValueError, match="one size .* 02.png is 8x6"):
        photo_files(tmp_path / "sizes")
    _photos(tmp_path / "twins", [(8, 8)] * 3)
    _photos(tmp_path / "twins", [(8, 8)], suffix=".jpg")
    with pytest.raises(ValueError, match="several photos are named 00"):
        photo_files(tmp_path / "twins")
    (tmp_path / "broken").mkdir()
    _photos(tmp_path / "broken", [(8, 8)] * 3)
    (tmp_path / "broken" / "03.JPG").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read .*03.JPG"):
        photo_files(tmp_path / "broken")
    _photos(tmp_path / "good", [(8, 8)] * 3, suffix=".JPEG")
    assert [p.name for p in photo_files(tmp_path / "good")] == ["00.JPEG", "01.JPEG", "02.JPEG"]


def test_arguments_are_checked_before_colmap_runs(tmp_path, monkeypatch):
    _photos(tmp_path / "photos", [(8, 8)] * 3)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="--out: .* new or empty"):
        check_args(ProcessData(tmp_path / "photos", tmp_path / "full"))
    for option, value, message in [("mask_threshold", 1.5, "--mask-threshold"), ("test_every", 1, "--test-every"),
                                   ("threads", 0, "--threads"), ("max_image_size", 8, "--max-image-size")]:
        with pytest.raises(ValueError, match=message):
            check_args(ProcessData(tmp_path / "photos", tmp_path / "new", **{option: value}))
    monkeypatch.setattr("vision3d.colmap.shutil.which", lambda name: None)
    with pytest.raises(ValueError, match="colmap is not on PATH: .*apt-get install colmap"):
        main(["process-data", "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()  # nothing written


# --- pure steps ---------------------------------------------------------------------------------------------


def test_background_mask_keeps_holes_of_the_background_colour_inside_the_object():
    rng = np.random.default_rng(0)
    rgb = np.clip(0.95 + 0.02 * rng.normal(size=(40, 50, 3)), 0, 1)  # a near-uniform light background
    yy, xx = np.mgrid[:40, :50]
    r = np.hypot(yy - 20, xx - 25)
    ring = (r < 14) & (r >= 5)
    rgb[ring] = [0.3, 0.5, 0.2]
    foreground = background_mask(rgb, threshold=0.1)
    np.testing.assert_array_equal(foreground, r < 14)  # the hole (r < 5) is background-coloured but enclosed
    assert not background_mask(rgb, threshold=0.9).any()  # everything within 0.9 of the border colour
    with pytest.raises(ValueError, match="rgb must be"):
        background_mask(rgb[..., 0], 0.1)


def test_square_pixels_makes_the_vertical_focal_length_equal_the_horizontal_one():
    image = np.random.default_rng(0).random((40, 30, 4)).astype(np.float32)
    assert square_pixels(image, 100.0, 100.05) is image  # within 0.1%: untouched
    taller = square_pixels(image, 125.0, 100.0)  # fy' = fy * H'/H = fx
    assert taller.shape == (50, 30, 4)
    shorter = square_pixels(image, 80.0, 100.0)
    assert shorter.shape == (32, 30, 4)
    np.testing.assert_allclose(shorter.mean(axis=(0, 1)), image.mean(axis=(0, 1)), atol=1e-6)  # area averaging


def test_split_names_every_nth_to_test_and_val_repeats_it():
    names = [f"{i:02d}.jpg" for i in range(19)][::-1]
    splits = split_names(names, 8)
    assert splits["test"] == ["00.jpg", "08.jpg", "16.jpg"] and splits["val"] == splits["test"]
    assert sorted(splits["train"] + splits["test"]) == sorted(names) and not set(splits["train"]) & set(splits["test"])


def test_normalisation_turns_the_cameras_up_to_z_and_boxes_the_points():
    rng = np.random.default_rng(0)
    up = np.array([0.3, -0.8, 0.5]) / np.linalg.norm([0.3, -0.8, 0.5])
    c2w = np.stack([np.eye(4)] * 5)
    c2w[:, :3, 1] = up + 0.05 * rng.normal(size=(5, 3))  # only the y axes (up) matter here
    points = rng.uniform(-1, 1, (2000, 3)) * [3.0, 1.0, 2.0] + [10.0, -4.0, 2.0]
    similarity = normalisation(c2w, points, quantile=0.0)
    np.testing.assert_allclose(similarity.rotation @ c2w[:, :3, 1].mean(axis=0) / np.linalg.norm(
        c2w[:, :3, 1].mean(axis=0)), [0, 0, 1], atol=1e-12)
    moved = similarity.points(points)
    lo, hi = moved.min(axis=0), moved.max(axis=0)
    np.testing.assert_allclose(lo + hi, 0.0, atol=1e-12)
    assert np.max(hi - lo) == pytest.approx(1.0)
    robust = normalisation(c2w, np.vstack([points, [[1e6, 0, 0]]]), quantile=0.01)
    assert np.quantile(np.abs(robust.points(points)), 0.9) < 0.5  # one stray point does not shrink the scene


# --- end to end ---------------------------------------------------------------------------------------------

VIEWS, SIZE = 24, 256  # 16 views, or 192 px, leave the worst camera 2-4 degrees off; 24 at 256 px: < 1


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """Photos of the spotted sphere from a spiral of cameras over the upper hemisphere, composited on white, poses
    hidden; ``process-data --mask-background`` through the command line."""
    if shutil.which("colmap") is None:
        pytest.skip("colmap is not installed (Debian/Ubuntu: apt-get install colmap)")
    root = tmp_path_factory.mktemp("process")
    mesh = load_shape("spotted")
    poses = sphere_poses(VIEWS, framing_radius(mesh, BLENDER_CAMERA_ANGLE_X), "spiral", upper_hemisphere=True)
    views = render_views(mesh, poses, Intrinsics.from_fov(SIZE, SIZE, BLENDER_CAMERA_ANGLE_X))
    write_photos(views.rgba, root / "photos")
    assert main(["process-data", "--images", str(root / "photos"), "--out", str(root / "data"), "--camera-model",
                 "SIMPLE_PINHOLE", "--mask-background", "--threads", "2", "--json"]) == 0
    return root / "data", poses, views.rgba


@needs_colmap
def test_recovers_the_hidden_poses_up_to_a_similarity(processed, measured):
    data, true, _ = processed
    summary = json.loads((data / "process_data.json").read_text())
    assert summary["photos"] == VIEWS and summary["registered"] >= VIEWS - 1  # all or nearly all
    recovered = {}
    for split in ("train", "test"):
        views = load_blender(data, split)
        recovered.update({int(Path(p).name): c2w for p, c2w in zip(views.file_paths, views.poses)})
    index = sorted(recovered)
    errors = align_poses(np.stack([recovered[i] for i in index]), true[index])
    radius = np.linalg.norm(true[0, :3, 3])
    measured(f"{summary['registered']}/{VIEWS} registered; rotation error max {errors.rotation_deg.max():.2f}, "
             f"mean {errors.rotation_deg.mean():.2f} deg; centre error max "
             f"{100 * errors.translation.max() / radius:.2f}% of the distance; {summary['seconds']} s")
    assert errors.rotation_deg.max() < 2.0
    assert errors.translation.max() < 0.03 * radius
    focal = 0.5 * summary["image_size"][0] / np.tan(0.5 * summary["camera_angle_x"])
    assert focal == pytest.approx(0.5 * SIZE / np.tan(0.5 * BLENDER_CAMERA_ANGLE_X), rel=0.01)
    # the normalisation: the object (radius 0.5 before) fills the unit box, so the similarity is nearly a rotation
    assert errors.similarity.scale == pytest.approx(1.0, abs=0.1)


@needs_colmap
def test_the_output_is_a_blender_dataset_with_masks_and_a_recorded_transform(processed):
    data, _, rgba = processed
    train, val, test = (load_blender(data, split) for split in ("train", "val", "test"))
    assert val.file_paths == test.file_paths and len(train) + len(test) >= VIEWS - 1
    assert train.images.shape[1:] == (SIZE - 2, SIZE - 2, 4) and not set(train.file_paths) & set(test.file_paths)
    for views in (train, test):  # the masks are the renders' silhouettes (one pixel cropped off every side)
        for path, mask in zip(views.file_paths, views.masks):
            silhouette = rgba[int(Path(path).name), 1:-1, 1:-1, 3] > 127
            assert (mask & silhouette).sum() / (mask | silhouette).sum() > 0.97
    up = np.concatenate([train.poses, test.poses])[:, :3, 1].mean(axis=0)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-5)  # cameras' mean up is +z
    points = load_point_cloud(data)[0]
    assert np.mean(np.abs(points).max(axis=1) <= 0.5 + 1e-6) > 0.95  # the sparse points fill the unit box
    record = json.loads((data / "process_data.json").read_text())
    transform = np.array(record["transform"])
    by_name = {Path(p).name: c2w for p, c2w in zip(train.file_paths + test.file_paths,
                                                   np.concatenate([train.poses, test.poses]))}
    for image in read_images_txt(data / "colmap" / "text" / "images.txt"):  # x_ours = transform @ x_colmap
        centre = transform @ np.append(image.c2w()[:3, 3], 1.0)
        np.testing.assert_allclose(centre[:3], by_name[Path(image.name).stem][:3, 3], atol=1e-5)
    assert (data / "colmap" / "log.txt").stat().st_size > 0


@needs_colmap
def test_fit_gaussians_accepts_the_output(processed, tmp_path):
    data = processed[0]
    config = SplatConfig(fit=FitConfig(steps=10, progress=False, tensorboard=False, log_every=5, checkpoint_every=10),
                         n_init=200, size=32)
    metrics = fit(FIT_COMMANDS["gaussians"](data=(data,), out=tmp_path / "run", config=config, video=False))
    assert metrics["appearance"]["psnr"] > 5.0 and metrics["chamfer_l1"] is None  # no mesh.ply: no geometry


def _benchmark():
    path = Path(__file__).parents[2] / "benchmarks" / "bench_process_data.py"
    spec = importlib.util.spec_from_file_location("bench_process_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@needs_colmap
def test_gaussians_on_recovered_poses_within_2_db_of_true_poses(tmp_path, measured):
    """The issue's acceptance, through benchmarks/bench_process_data.py: ``fit gaussians`` with its defaults on the
    process-data output reaches within 2 dB (test PSNR) of the same fit on the true poses."""
    bench = _benchmark()
    result = bench.compare(tmp_path / "bench", views=32, size=256)
    measured(bench.table(result).replace("\n", " "))
    assert result.max_rotation_deg < 2.0 and result.registered >= 31
    assert result.psnr_true - result.psnr_recovered < 2.0
