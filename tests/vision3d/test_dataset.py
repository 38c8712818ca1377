import json

import numpy as np
import pytest
import trimesh

from vision3d import SCENE_BOUND
from vision3d.camera import Intrinsics
from vision3d.dataset import (
    ExportConfig,
    area_weights,
    export_dataset,
    load_blender,
    load_mesh,
    load_point_cloud,
    load_samples,
    resize_area,
    resize_depth,
    split_poses,
)
from vision3d.render import framing_radius, render_views
from vision3d.shapes import load_shape

SMALL = {
    "views": 4,
    "size": 24,
    "val_views": 2,
    "test_views": 3,
    "n_uniform": 2000,
    "n_surface": 2000,
    "n_points": 3000,
    "seed": 7,
}


@pytest.fixture(scope="module")
def torus():
    return load_shape("torus")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, torus):
    return export_dataset(torus, tmp_path_factory.mktemp("torus") / "data", **SMALL)


def test_layout_follows_nerf_blender(exported):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        meta = json.loads((exported / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(0.6911112070083618)
        assert [f["file_path"] for f in meta["frames"]] == [f"./{split}/r_{i}" for i in range(n)]
        for frame in meta["frames"]:
            assert np.asarray(frame["transform_matrix"]).shape == (4, 4)
            assert (exported / f"{frame['file_path']}.png").is_file()
            depth = np.load(exported / f"{frame['file_path']}_depth.npy")
            assert depth.dtype == np.float32 and depth.shape == (24, 24)
    info = json.loads((exported / "dataset.json").read_text())
    assert (info["shape"], info["views"], info["size"], info["seed"]) == ("torus", 4, 24, 7)
    assert not list(exported.rglob(".*"))  # no temporary files left


def test_export_then_load_preserves_poses_intrinsics_images_and_depth(exported, torus):
    config = ExportConfig(**SMALL)
    poses = split_poses(config, framing_radius(torus, config.camera_angle_x))
    intrinsics = Intrinsics.from_fov(24, 24, config.camera_angle_x)
    for split in ("train", "val", "test"):
        data = load_blender(exported, split)
        np.testing.assert_array_equal(data.poses, poses[split].astype(np.float32))
        assert data.intrinsics == intrinsics
        rgba, depth = render_views(torus, poses[split], intrinsics)
        np.testing.assert_array_equal(data.images, rgba.astype(np.float32) / 255)
        np.testing.assert_array_equal(data.depths, depth)
        np.testing.assert_array_equal(data.masks, rgba[..., 3] > 127)
        # composited on white: background pixels are exactly the background colour
        np.testing.assert_array_equal(data.rgb[~data.masks], 1.0)
        assert data.file_paths[0] == f"./{split}/r_0"
    # val and test cameras differ from the training cameras
    assert not np.allclose(poses["val"][0], poses["train"][0])
    assert len(poses["test"]) == 3


def test_poses_sit_at_the_radius_and_the_object_stays_inside_the_frame(exported):
    info = json.loads((exported / "dataset.json").read_text())
    for split in ("train", "val", "test"):
        data = load_blender(exported, split, background=(0.0, 0.0, 0.0))
        np.testing.assert_allclose(np.linalg.norm(data.poses[:, :3, 3], axis=1), info["radius"], rtol=1e-6)
        assert data.masks.any(axis=(1, 2)).all()
        edges = np.concatenate([data.masks[:, 0], data.masks[:, -1], data.masks[:, :, 0], data.masks[:, :, -1]])
        assert not edges.any()
        np.testing.assert_array_equal(data.rgb[~data.masks], 0.0)


def test_ground_truth_files(exported):
    samples = load_samples(exported)
    assert samples.points.shape == (4000, 3) and samples.points.dtype == np.float32
    np.testing.assert_array_equal(samples.occupancy, samples.sdf < 0)
    assert np.abs(samples.points).max() <= SCENE_BOUND
    assert np.abs(samples.sdf[2000:]).mean() < np.abs(samples.sdf[:2000]).mean()  # near-surface half
    points, normals = load_point_cloud(exported)
    assert points.shape == normals.shape == (3000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    mesh = load_mesh(exported)
    assert mesh.is_watertight and mesh.visual.kind == "vertex"
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-6
    assert mesh.visual.vertex_colors[:, :3].std() > 10


def test_resized_loading_averages_area_and_min_pools_depth(exported):
    full = load_blender(exported, "train")
    half = load_blender(exported, "train", size=12, max_views=2)
    assert half.images.shape == (2, 12, 12, 4) and half.depths.shape == (2, 12, 12)
    assert half.intrinsics == full.intrinsics.resized(12, 12)
    assert half.intrinsics.camera_angle_x == pytest.approx(full.intrinsics.camera_angle_x)
    blocks = full.images[:2].reshape(2, 12, 2, 12, 2, 4)
    alpha = blocks[..., 3].mean(axis=(2, 4))
    premultiplied = (blocks[..., :3] * blocks[..., 3:]).mean(axis=(2, 4))
    np.testing.assert_allclose(half.images[..., 3], alpha, atol=1e-6)
    np.testing.assert_allclose(half.rgb, premultiplied + (1 - alpha[..., None]), atol=1e-6)
    depth_blocks = np.where(full.depths[:2] > 0, full.depths[:2], np.inf).reshape(2, 12, 2, 12, 2).min(axis=(2, 4))
    np.testing.assert_array_equal(half.depths, np.where(np.isfinite(depth_blocks), depth_blocks, 0))


def test_area_resize_conserves_the_mean_for_any_factor(rng):
    image = rng.uniform(size=(30, 21, 2))
    for height, width in [(7, 5), (10, 7), (45, 40)]:
        weights = area_weights(30, height)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0)
        np.testing.assert_allclose(
            resize_area(image, height, width).mean(axis=(0, 1)), image.mean(axis=(0, 1)), rtol=1e-5
        )
    np.testing.assert_allclose(area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(area_weights(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])


def test_resize_depth_keeps_surface_values():
    depth = np.array([[0.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(resize_depth(depth, 1, 2), [[2.0, 0.0]])  # min over foreground
    up = resize_depth(depth, 4, 8)  # nearest: every value is one of the inputs
    assert set(np.unique(up)) <= set(np.unique(depth))
    np.testing.assert_array_equal(up[::2, ::2], depth)


def _write(root, name, meta):
    (root / name).write_text(json.dumps(meta))


def test_loader_errors(tmp_path, exported):
    with pytest.raises(ValueError, match=r"'val'.*transforms_val\.json"):
        load_blender(tmp_path, "val")
    frame = {"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}
    _write(tmp_path, "transforms_train.json", {"frames": [frame]})
    with pytest.raises(ValueError, match="transforms_train.json has no camera_angle_x"):
        load_blender(tmp_path)
    _write(tmp_path, "transforms_train.json", {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0"}]})
    with pytest.raises(ValueError, match="transform_matrix"):
        load_blender(tmp_path)
    _write(tmp_path, "transforms_train.json", {"camera_angle_x": 0.7, "frames": [frame]})
    with pytest.raises(ValueError, match="r_0.png does not exist"):
        load_blender(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_blender(exported, "validation")
    with pytest.raises(ValueError, match="samples"):
        load_samples(tmp_path)


def test_original_nerf_layout_loads(tmp_path, rng):
    """NeRF's synthetic scenes: RGBA PNG beside an extension-less file_path, no depth files."""
    import imageio.v2 as imageio

    (tmp_path / "test").mkdir()
    image = rng.integers(0, 256, size=(16, 16, 4), dtype=np.uint8)
    imageio.imwrite(tmp_path / "test" / "r_0.png", image)
    pose = np.eye(4)
    pose[:3, 3] = (0.0, -4.0, 0.5)
    _write(
        tmp_path,
        "transforms_test.json",
        {
            "camera_angle_x": 0.69,
            "frames": [{"file_path": "./test/r_0", "rotation": 0.01, "transform_matrix": pose.tolist()}],
        },
    )
    data = load_blender(tmp_path, "test", background=(0.0, 0.0, 0.0))
    assert data.depths is None
    np.testing.assert_allclose(data.rgb[0], image[..., :3] / 255 * image[..., 3:] / 255, atol=1e-6)
    assert data.intrinsics.fx == pytest.approx(8.0 / np.tan(0.345))


def test_non_watertight_mesh_exports_images_without_samples(tmp_path, torus):
    open_mesh = torus.copy()
    open_mesh.update_faces(np.arange(len(open_mesh.faces)) > 10)
    with pytest.warns(UserWarning, match="watertight"):
        out = export_dataset(open_mesh, tmp_path / "open", views=2, size=16, val_views=1, test_views=1, n_points=500)
    assert (out / "transforms_train.json").is_file() and not (out / "samples.npz").exists()
    assert json.loads((out / "dataset.json").read_text())["watertight"] is False
    with pytest.raises(ValueError, match="watertight"):
        load_samples(out)


def test_export_option_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown export option"):
        export_dataset(trimesh.creation.box(), tmp_path, frames=3)
    with pytest.raises(ValueError, match="train"):
        export_dataset(trimesh.creation.box(), tmp_path, views=0)
    with pytest.raises(ValueError, match="shading must be"):
        export_dataset(trimesh.creation.box(), tmp_path, shading="gouraud")
    with pytest.raises(ValueError, match="shininess"):
        export_dataset(trimesh.creation.box(), tmp_path, shading="phong", shininess=-1.0)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_phong_export_adds_highlights_and_lambert_is_the_default(tmp_path, exported):
    """Lambert by name is the default byte for byte; Phong keeps the geometry and every diffuse colour and
    only adds light, and dataset.json says which shading (and which highlights) the images have."""
    lambert = export_dataset("torus", tmp_path / "lambert", **SMALL, shading="lambert")
    phong = export_dataset("torus", tmp_path / "phong", **SMALL, shading="phong", k_s=0.7, shininess=20.0)
    pngs = sorted(p.relative_to(exported) for p in exported.rglob("*.png"))
    assert len(pngs) == 9
    for name in pngs:
        assert (lambert / name).read_bytes() == (exported / name).read_bytes()
    brighter = 0
    for split in ("train", "val", "test"):
        diffuse, shiny = load_blender(lambert, split), load_blender(phong, split)
        np.testing.assert_array_equal(shiny.depths, diffuse.depths)
        np.testing.assert_array_equal(shiny.masks, diffuse.masks)
        added = shiny.images[..., :3] - diffuse.images[..., :3]
        assert added.min() >= 0.0
        brighter += int((added.max(axis=-1) > 20 / 255).sum())
    assert brighter > 20  # highlights, not rounding noise
    info = {k: json.loads((folder / "dataset.json").read_text()) for k, folder in (("l", lambert), ("p", phong))}
    assert (info["l"]["shading"], info["l"]["k_s"], info["l"]["shininess"]) == ("lambert", None, None)
    assert (info["p"]["shading"], info["p"]["k_s"], info["p"]["shininess"]) == ("phong", 0.7, 20.0)


def test_a_point_cloud_without_normals_loads_with_none(tmp_path):
    import open3d as o3d

    points = np.random.default_rng(0).normal(size=(50, 3))
    o3d.io.write_point_cloud(str(tmp_path / "points.ply"), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)))
    loaded, normals = load_point_cloud(tmp_path)
    assert normals is None
    np.testing.assert_allclose(loaded, points, atol=1e-6)
